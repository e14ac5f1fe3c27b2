package output

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"

	"github.com/fluent/fluent-logger-golang/fluent"
	"github.com/logagent/logagent/collector"
	"github.com/tinylib/msgp/msgp"
)

// TestFrameLayout decodes a frame with plain msgp reads, independently of the
// test receiver: [tag, bin(entries), {size, chunk, compressed}].
func TestFrameLayout(t *testing.T) {
	for _, gz := range []bool{false, true} {
		var enc encoder
		kube := kubeMap("ns", "pod", "c")
		recs := []collector.Record{
			{Time: 1700000000000000001, Stream: collector.Stdout, Log: []byte("hello")},
			{Time: 1700000000000000002, Stream: collector.Stderr, Log: []byte("")},
		}
		c := &chunk{id: newChunkID(), tag: "kube.x", records: len(recs)}
		for i := range recs {
			c.entries = enc.appendEntry(c.entries, &recs[i], kube)
		}
		c.payload = c.entries
		if gz {
			var err error
			if c.payload, err = gzipInto(nil, c.entries); err != nil {
				t.Fatal(err)
			}
		}
		c.frame(true, gz)
		frame := append(append(append([]byte(nil), c.head...), c.payload...), c.opt...)

		n, rest, err := msgp.ReadArrayHeaderBytes(frame)
		if err != nil || n != 3 {
			t.Fatalf("frame array: %d %v", n, err)
		}
		tag, rest, err := msgp.ReadStringBytes(rest)
		if err != nil || tag != "kube.x" {
			t.Fatalf("tag %q %v", tag, err)
		}
		if msgp.NextType(rest) != msgp.BinType {
			t.Fatalf("entries are a %s, want bin (PackedForward)", msgp.NextType(rest))
		}
		payload, rest, err := msgp.ReadBytesBytes(rest, nil)
		if err != nil {
			t.Fatal(err)
		}
		opts, rest, err := msgp.ReadMapStrIntfBytes(rest, nil)
		if err != nil || len(rest) != 0 {
			t.Fatalf("options: %v, %d bytes left", err, len(rest))
		}
		if opts["size"] != int64(2) || opts["chunk"] != c.id || len(c.id) != 24 {
			t.Errorf("options %v", opts)
		}
		if gz {
			if opts["compressed"] != "gzip" {
				t.Errorf("options %v: no compressed=gzip", opts)
			}
			zr, err := gzip.NewReader(bytes.NewReader(payload))
			if err != nil {
				t.Fatal(err)
			}
			if payload, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		} else if _, ok := opts["compressed"]; ok {
			t.Errorf("options %v: compressed without gzip", opts)
		}
		// Entries: plain [EventTime, record], not [[time, metadata], record].
		for i, r := range recs {
			n, payload, err = msgp.ReadArrayHeaderBytes(payload)
			if err != nil || n != 2 {
				t.Fatalf("entry %d: %d %v", i, n, err)
			}
			var et fluent.EventTime
			if payload, err = msgp.ReadExtensionBytes(payload, &et); err != nil {
				t.Fatalf("entry %d time: %v", i, err)
			}
			var rec map[string]any
			if rec, payload, err = msgp.ReadMapStrIntfBytes(payload, nil); err != nil {
				t.Fatalf("entry %d record: %v", i, err)
			}
			if rec["log"] != string(r.Log) || rec["stream"] != r.Stream.String() {
				t.Errorf("entry %d = %v", i, rec)
			}
			if k, ok := rec["kubernetes"].(map[string]any); !ok || k["pod_name"] != "pod" {
				t.Errorf("entry %d kubernetes = %v", i, rec["kubernetes"])
			}
		}
		if len(payload) != 0 {
			t.Errorf("%d bytes after the entries", len(payload))
		}
	}
}

func TestEntryWithoutKubernetes(t *testing.T) {
	var enc encoder
	b := enc.appendEntry(nil, &collector.Record{Time: 1, Log: []byte("x")}, nil)
	_, b, _ = msgp.ReadArrayHeaderBytes(b)
	b, _ = msgp.Skip(b)
	rec, _, err := msgp.ReadMapStrIntfBytes(b, nil)
	if err != nil || len(rec) != 2 {
		t.Fatalf("record %v (%v), want log and stream only", rec, err)
	}
}

func TestEncodeAllocatesNothing(t *testing.T) {
	var enc encoder
	kube := kubeMap("ns", "pod", "c")
	r := collector.Record{Time: 1700000000000000001, Log: []byte("a log line")}
	buf := make([]byte, 0, 1<<20)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = enc.appendEntry(buf[:0], &r, kube)
	})
	if allocs != 0 {
		t.Errorf("appendEntry allocates %v times per record", allocs)
	}
}

func TestChunkIDsUnique(t *testing.T) {
	seen := make(map[string]bool)
	for range 10000 {
		id := newChunkID()
		if seen[id] || len(id) != 24 {
			t.Fatalf("chunk id %q repeated or not base64 of 16 bytes", id)
		}
		seen[id] = true
	}
}

func TestBackoff(t *testing.T) {
	f := &Forward{cfg: testConfig("x:1")}
	f.cfg.RetryMin, f.cfg.RetryMax = 100, 1000
	for attempt, want := range []int64{100, 200, 400, 800, 1000, 1000} {
		for range 50 {
			d := int64(f.backoffLocked(attempt))
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %d, want in [%d, %d]", attempt, d, want/2, want)
			}
		}
	}
	if d := f.backoffLocked(1000); d > f.cfg.RetryMax {
		t.Errorf("backoff overflowed: %v", d)
	}
}
