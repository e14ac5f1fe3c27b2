package output

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/logagent/logagent/collector"
	"github.com/logagent/logagent/output/forwardtest"
	"github.com/tinylib/msgp/msgp"
)

// repaired is the oracle: Go's conversion to runes turns each byte that is
// not part of a valid sequence into U+FFFD, as encoding/json does.
func repaired(s []byte) string { return string([]rune(string(s))) }

var utf8Cases = []struct {
	name string
	in   []byte
}{
	{"ascii", []byte("GET /healthz 200")},
	{"empty", []byte{}},
	{"multi-byte", []byte("naïve café, 日本語, 🙂")},
	{"invalid byte", []byte("a\xffb")},
	{"truncated sequence", []byte("euro \xe2\x82")},
	{"overlong", []byte("\xc0\xaf")},
	{"surrogate", []byte("\xed\xa0\x80")},
	{"latin-1", []byte("caf\xe9 cr\xe8me")},
	{"31 bytes, one invalid", append(bytes.Repeat([]byte("x"), 30), 0xff)},
	{"32 bytes, one invalid", append(bytes.Repeat([]byte("x"), 31), 0xff)},
	{"255 bytes, one invalid", append(bytes.Repeat([]byte("x"), 254), 0xff)},
	{"254 bytes, grows past 255", append(bytes.Repeat([]byte("x"), 253), 0xff)},
	{"65535 bytes, one invalid", append(bytes.Repeat([]byte("x"), 65534), 0xff)},
	{"65534 bytes, grows past 65535", append(bytes.Repeat([]byte("x"), 65533), 0xff)},
	{"70000 invalid bytes", bytes.Repeat([]byte{0x80}, 70000)},
}

func TestAppendStrIsValidUTF8(t *testing.T) {
	for _, tc := range utf8Cases {
		t.Run(tc.name, func(t *testing.T) {
			b := appendStr([]byte{0xc0}, tc.in) // after something, as in a record
			s, rest, err := msgp.ReadStringBytes(b[1:])
			if err != nil || len(rest) != 0 {
				t.Fatalf("not one msgpack str: %v, %d bytes left", err, len(rest))
			}
			if !utf8.ValidString(s) || s != repaired(tc.in) {
				t.Errorf("got %q, want %q", trim(s), trim(repaired(tc.in)))
			}
			if utf8.Valid(tc.in) && !bytes.Equal(b[1:], msgp.AppendStringFromBytes(nil, tc.in)) {
				t.Error("valid input not sent as it is")
			}
		})
	}
}

func trim(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// TestOutputsAgreeOnInvalidUTF8: the Forward output and stdout send the same
// text for a log with invalid UTF-8: each invalid byte replaced by U+FFFD.
func TestOutputsAgreeOnInvalidUTF8(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	h := startForward(t, testConfig(r.Addr()))
	var out bytes.Buffer
	st, err := NewStdout(&out, DefaultTag, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := testSource(1)
	src.Pod = "pod\xff" // a tag with invalid UTF-8, too
	var recs []collector.Record
	for _, tc := range utf8Cases {
		recs = append(recs, collector.Record{Time: time.Now().UnixNano(), Log: tc.in})
	}
	if err := st.Send(context.Background(), collector.NewBatch(src, recs, 0, nil)); err != nil {
		t.Fatal(err)
	}
	b := collector.NewBatch(src, recs, 0, nil)
	b.CaughtUp = true
	if err := h.f.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the frame", func() bool { return tally.Records() == len(recs) })
	var events []forwardtest.Event // a tag's frames arrive in order on one connection
	for _, rc := range tally.Receipts() {
		events = append(events, rc.Events...)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(recs) {
		t.Fatalf("stdout wrote %d lines for %d records", len(lines), len(recs))
	}
	for i, tc := range utf8Cases {
		var obj struct {
			Tag    string `json:"tag"`
			Record struct {
				Log string `json:"log"`
			} `json:"record"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &obj); err != nil {
			t.Fatalf("stdout line %d: %v", i, err)
		}
		want := repaired(tc.in)
		if obj.Record.Log != want || events[i].Log != want {
			t.Errorf("%s: stdout %q, forward %q, want %q", tc.name, trim(obj.Record.Log), trim(events[i].Log), trim(want))
		}
		if i == 0 && (obj.Tag != tally.Receipts()[0].Tag || !utf8.ValidString(obj.Tag)) {
			t.Errorf("tags differ or are not UTF-8: stdout %q, forward %q", obj.Tag, tally.Receipts()[0].Tag)
		}
	}
}

func TestValidUTF8(t *testing.T) {
	for _, tc := range utf8Cases {
		for cut := range min(len(tc.in), 70) { // every alignment of the 32-byte steps
			if got, want := validUTF8(tc.in[cut:]), utf8.Valid(tc.in[cut:]); got != want {
				t.Errorf("%s from %d: validUTF8 = %v, utf8.Valid = %v", tc.name, cut, got, want)
			}
		}
	}
	long := []byte(strings.Repeat("0123456789abcdef", 8) + "é" + strings.Repeat("x", 40))
	for i := range long {
		b := append([]byte(nil), long...)
		b[i] = 0xff
		if validUTF8(b) {
			t.Errorf("an invalid byte at %d not seen", i)
		}
	}
	if !validUTF8(long) {
		t.Error("valid input reported invalid")
	}
}

func BenchmarkValidUTF8(b *testing.B) {
	line := []byte(`{"level":"info","ts":"2026-11-26T10:00:00.000000Z","msg":"request served","method":"GET","path":"/api/v1/orders/1","status":200,"duration_ms":7,"bytes":1532}`)
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		validUTF8(line)
	}
}
