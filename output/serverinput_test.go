package output

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// ack encodes {"ack": id}, as Fluentd sends it.
func ack(id string) []byte {
	b := msgp.AppendMapHeader(nil, 1)
	b = msgp.AppendString(b, "ack")
	return msgp.AppendString(b, id)
}

// hugeStr is a str32 header claiming 4 GiB, and nothing after it.
var hugeStr = []byte{0xdb, 0xff, 0xff, 0xff, 0xff}

// hugeBin is a bin32 header claiming 4 GiB.
var hugeBin = []byte{0xc6, 0xff, 0xff, 0xff, 0xff}

func TestReadAckWithinLimits(t *testing.T) {
	deep := msgp.AppendMapHeader(nil, 2)
	deep = msgp.AppendString(deep, "x")
	for range 20 {
		deep = msgp.AppendArrayHeader(deep, 1)
	}
	deep = append(deep, 0xc0)
	deep = msgp.AppendString(deep, "ack")
	deep = msgp.AppendString(deep, "id")

	for _, tc := range []struct {
		name    string
		in      []byte
		want    string // the id; "" with wantErr
		wantErr error  // errors.Is target; nil: no error
	}{
		{"ack", ack("QUJDREVGR0hJSktMTU5PUA=="), "QUJDREVGR0hJSktMTU5PUA==", nil},
		{"extra keys are skipped", append(append(msgp.AppendMapHeader(nil, 2), msgp.AppendString(msgp.AppendString(nil, "other"), "v")...), msgp.AppendString(msgp.AppendString(nil, "ack"), "id1")...), "id1", nil},
		{"no ack key", msgp.AppendString(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "x"), "y"), "", nil},
		{"id claims 4 GiB", append(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "ack"), hugeStr...), "", errServerLimit},
		{"key claims 4 GiB", append(msgp.AppendMapHeader(nil, 1), hugeStr...), "", errServerLimit},
		{"skipped value claims 4 GiB", append(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "x"), hugeBin...), "", errServerLimit},
		{"skipped str claims 4 GiB", append(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "x"), hugeStr...), "", errServerLimit},
		{"map of 4G entries", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, "", errServerLimit},
		{"skipped array of 4G elements", append(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "x"), 0xdd, 0xff, 0xff, 0xff, 0xff), "", errServerLimit},
		{"nested too deep", deep, "", errServerLimit},
		{"not a map", msgp.AppendString(nil, "ack"), "", nil}, // a type error, checked below
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			before := ms.TotalAlloc
			id, err := readAck(newServerReader(bytes.NewReader(tc.in)), nil)
			runtime.ReadMemStats(&ms)
			if grew := ms.TotalAlloc - before; grew > 1<<20 {
				t.Errorf("reading the ack allocated %d bytes", grew)
			}
			switch {
			case tc.name == "not a map":
				var te msgp.TypeError
				if !errors.As(err, &te) || classify(err, reasonRead) != reasonProtocol {
					t.Errorf("err = %v, want a type error classified as %q", err, reasonProtocol)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) || classify(err, reasonRead) != reasonProtocol {
					t.Errorf("err = %v (reason %q), want %v (reason %q)", err, classify(err, reasonRead), tc.wantErr, reasonProtocol)
				}
			case err != nil || string(id) != tc.want:
				t.Errorf("readAck = %q, %v; want %q", id, err, tc.want)
			}
		})
	}
}

// FuzzReadAck: whatever a server sends, reading acks neither panics nor
// returns an id beyond the limits. The seeds run with every go test.
func FuzzReadAck(f *testing.F) {
	f.Add(ack("QUJDREVGR0hJSktMTU5PUA=="))
	f.Add(append(ack("a"), ack("b")...))
	f.Add(append(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "ack"), hugeStr...))
	f.Add(append(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "x"), hugeBin...))
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0xa1, 'x', 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0xc0})
	f.Add([]byte{0x81, 0xa3, 'a', 'c', 'k', 0xc7, 0x03, 0x01, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newServerReader(bytes.NewReader(data))
		for range len(data) + 1 { // each ack consumes at least one byte
			id, err := readAck(r, nil)
			if err != nil {
				return
			}
			if len(id) > maxServerString {
				t.Fatalf("id of %d bytes", len(id))
			}
		}
		t.Fatal("more acks than bytes")
	})
}

// helo encodes the server's HELO with the given options.
func helo(opts ...[]byte) []byte {
	b := msgp.AppendArrayHeader(nil, 2)
	b = msgp.AppendString(b, "HELO")
	b = msgp.AppendMapHeader(b, uint32(len(opts)/2))
	for _, o := range opts {
		b = append(b, o...)
	}
	return b
}

// FuzzHandshake: whatever a server sends in the handshake, the client neither
// panics nor succeeds (the server cannot know the shared key's digest of a
// salt the client made up).
func FuzzHandshake(f *testing.F) {
	pong := msgp.AppendArrayHeader(nil, 5)
	pong = msgp.AppendString(pong, "PONG")
	pong = msgp.AppendBool(pong, true)
	pong = msgp.AppendString(pong, "")
	pong = msgp.AppendString(pong, "server")
	pong = msgp.AppendString(pong, strings.Repeat("0", 128))
	good := helo(msgp.AppendString(nil, "nonce"), msgp.AppendBytes(nil, []byte("0123456789abcdef")),
		msgp.AppendString(nil, "auth"), msgp.AppendBytes(nil, nil),
		msgp.AppendString(nil, "keepalive"), msgp.AppendBool(nil, true))
	f.Add(append(append([]byte(nil), good...), pong...))
	f.Add(helo(msgp.AppendString(nil, "nonce"), hugeBin))
	f.Add(helo(msgp.AppendString(nil, "nonce"), hugeStr))
	f.Add(helo(msgp.AppendString(nil, "other"), []byte{0xdf, 0xff, 0xff, 0xff, 0xff}))
	f.Add(append(append([]byte(nil), good...), 0x95, 0xa4, 'P', 'O', 'N', 'G', 0xc3, 0xdb, 0xff, 0xff, 0xff, 0xff))
	f.Add([]byte{0x92, 0xa4, 'H', 'E', 'L', 'O', 0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		err := sharedKeyHandshake(newServerReader(bytes.NewReader(data)), io.Discard, "client", "key", "user", "pass")
		if err == nil {
			t.Fatal("handshake succeeded without the shared key")
		}
	})
}

// hostileServer accepts connections, reads and discards what the client
// sends, and answers with reply once the client has sent at least first
// bytes. It reports each connection's end on closed.
func hostileServer(t *testing.T, first int, reply []byte) (addr string, closed <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan struct{}, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if first == 0 {
					c.Write(reply)
				}
				buf := make([]byte, 64<<10)
				got := 0
				for {
					n, err := c.Read(buf)
					if err != nil {
						select {
						case ch <- struct{}{}:
						default:
						}
						return
					}
					if got < first && got+n >= first {
						c.Write(reply)
					}
					got += n
				}
			}()
		}
	}()
	return ln.Addr().String(), ch
}

// TestHostileServerCannotMakeTheAgentAllocate: a server answering a frame
// with an ack whose id claims 4 GiB, or a handshake whose nonce does, gets
// its connection closed with a counted error, and the agent's memory does
// not grow by it (issue 14).
func TestHostileServerCannotMakeTheAgentAllocate(t *testing.T) {
	skipShort(t)
	for _, tc := range []struct {
		name      string
		sharedKey string
		first     int
		reply     []byte
		reason    string
	}{
		{"ack id of 4 GiB", "", 1, append(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "ack"), hugeStr...), reasonProtocol},
		{"ack with a 4 GiB bin", "", 1, append(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "x"), hugeBin...), reasonProtocol},
		{"HELO nonce of 4 GiB", "key", 0, helo(msgp.AppendString(nil, "nonce"), hugeBin), reasonHandshake},
		{"HELO with 4G options", "key", 0, []byte{0x92, 0xa4, 'H', 'E', 'L', 'O', 0xdf, 0xff, 0xff, 0xff, 0xff}, reasonHandshake},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, closed := hostileServer(t, tc.first, tc.reply)
			cfg := testConfig(addr)
			cfg.SharedKey = tc.sharedKey
			cfg.SelfHostname = "agent"
			cfg.RetryMin, cfg.RetryMax = time.Hour, time.Hour // one connection is enough
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			before := ms.TotalAlloc
			h := startForward(t, cfg)
			fd := newFeeder(1, 10)
			fd.sendN(t, h.f, 1, 5)
			go h.f.Close(context.Background()) // seal now: the frame goes out
			errs := h.f.m.errors.WithLabelValues(addr, tc.reason)
			waitFor(t, 10*time.Second, "the error counted", func() bool { return h.metric(errs) >= 1 })
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("the agent did not close the connection")
			}
			runtime.ReadMemStats(&ms)
			if grew := ms.TotalAlloc - before; grew > 64<<20 {
				t.Errorf("the agent allocated %d MiB meanwhile", grew>>20)
			}
			if fd.acked.Load() != 0 {
				t.Error("a batch was acknowledged by a hostile server's garbage")
			}
			if n := h.logs.count("reason=" + tc.reason); n < 1 {
				t.Errorf("no log line with reason=%s:\n%s", tc.reason, h.logs)
			}
		})
	}
}
