// Package e2e tests logagent's Forward output against a receiver nobody here
// wrote: the OpenTelemetry Collector's fluentforwardreceiver, run as a child
// process (otelrecv) on 127.0.0.1 whose pipeline reports every log record.
package e2e

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logagent/logagent/collector"
	"github.com/logagent/logagent/output"
	"github.com/tinylib/msgp/msgp"
)

var recvBin string

// TestMain builds otelrecv once. The receiver cannot live in the test binary:
// it and fluent-logger-golang both register msgpack extension type 0.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "logagent-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	recvBin = filepath.Join(dir, "otelrecv")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", recvBin, "./otelrecv")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build otelrecv:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// counter counts the records the receiver's pipeline reported, by body.
type counter struct {
	mu      sync.Mutex
	counts  map[string]int
	times   map[string]int64
	records int
	bad     []string
}

func (c *counter) add(line string) {
	f := strings.SplitN(line, "\t", 6)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(f) != 6 || f[0] != "L" {
		c.bad = append(c.bad, fmt.Sprintf("unexpected receiver output %q", line))
		return
	}
	if c.counts == nil {
		c.counts, c.times = make(map[string]int), make(map[string]int64)
	}
	ts, _ := strconv.ParseInt(f[1], 10, 64)
	tag, stream, pod, body := f[2], f[3], f[4], f[5]
	c.counts[body]++
	c.times[body] = ts
	c.records++
	if len(c.bad) < 5 {
		if !strings.HasPrefix(tag, "kube.var.log.containers."+pod+"_") {
			c.bad = append(c.bad, fmt.Sprintf("%.20q: fluent.tag %q for pod %q", body, tag, pod))
		}
		if stream != "stdout" && stream != "stderr" {
			c.bad = append(c.bad, fmt.Sprintf("%.20q: stream %q", body, stream))
		}
	}
}

func (c *counter) missing(fd *feeder) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for l := range fd.expected {
		if c.counts[l] == 0 {
			n++
		}
	}
	return n
}

func (c *counter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.records
}

// otelProc is a running otelrecv.
type otelProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed when its stdout is drained
}

// startOTel starts otelrecv on addr, retrying while the port (TCP, and UDP
// for heartbeats) is still held by a predecessor.
func startOTel(t *testing.T, addr string, c *counter, args ...string) *otelProc {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		p, err := tryStartOTel(addr, c, args...)
		if err == nil {
			t.Cleanup(p.kill)
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("start otelrecv on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // poll: the old sockets are being released
	}
}

func tryStartOTel(addr string, c *counter, args ...string) (*otelProc, error) {
	cmd := exec.Command(recvBin, append([]string{"-listen", addr}, args...)...)
	cmd.Stderr = io.Discard
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &otelProc{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	ready := make(chan bool, 1)
	go func() {
		defer close(p.done)
		// Only whole lines count: a SIGKILL can cut the child's write of a
		// batch of lines anywhere (pipe writes over 4 KiB are not atomic),
		// and a cut-off last line is a record it had not acknowledged.
		rd := bufio.NewReaderSize(stdout, 1<<20)
		first := true
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				break
			}
			line = strings.TrimSuffix(line, "\n")
			if first {
				first = false
				ready <- line == "READY"
				continue
			}
			c.add(line)
		}
		if first {
			ready <- false
		}
	}()
	if !<-ready {
		cmd.Wait()
		return nil, fmt.Errorf("otelrecv exited before listening (%v)", cmd.ProcessState)
	}
	return p, nil
}

// kill ends the receiver with SIGKILL (mid-stream, nothing flushed).
func (p *otelProc) kill() {
	p.cmd.Process.Kill()
	<-p.done
	p.cmd.Wait()
}

// stop shuts the receiver down cleanly (it closes every connection).
func (p *otelProc) stop() {
	io.WriteString(p.stdin, "stop\n")
	p.stdin.Close()
	<-p.done
	p.cmd.Wait()
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type feeder struct {
	srcs     []*collector.Source
	next     int
	expected map[string]int64 // log -> time
	sent     atomic.Int64
	acked    atomic.Int64
}

func newFeeder(n int) *feeder {
	fd := &feeder{expected: make(map[string]int64)}
	for i := range n {
		ns, pod := fmt.Sprintf("ns%d", i), fmt.Sprintf("pod%d", i)
		k := msgp.AppendMapHeader(nil, 3)
		k = msgp.AppendString(k, "namespace_name")
		k = msgp.AppendString(k, ns)
		k = msgp.AppendString(k, "pod_name")
		k = msgp.AppendString(k, pod)
		k = msgp.AppendString(k, "container_name")
		k = msgp.AppendString(k, "app")
		fd.srcs = append(fd.srcs, &collector.Source{Namespace: ns, Pod: pod, Container: "app",
			ContainerID: fmt.Sprintf("%064x", i), Node: "node-1", Kubernetes: k})
	}
	return fd
}

// send sends one batch of n records (only the caller's goroutine sends).
func (fd *feeder) send(ctx context.Context, f *output.Forward, n int) error {
	recs := make([]collector.Record, n)
	logs := make([]string, n)
	src := fd.srcs[fd.next%len(fd.srcs)]
	base := time.Now().UnixNano()
	for i := range recs {
		logs[i] = fmt.Sprintf("rec-%08d %s", fd.next, strings.Repeat("y", 120))
		recs[i] = collector.Record{Time: base + int64(i), Stream: collector.Stream(fd.next % 2), Log: []byte(logs[i])}
		fd.next++
	}
	b := collector.NewBatch(src, recs, n*150, func() { fd.acked.Add(1) })
	if err := f.Send(ctx, b); err != nil {
		return err
	}
	for i, l := range logs {
		fd.expected[l] = recs[i].Time
	}
	fd.sent.Add(1)
	return nil
}

// check asserts zero loss and returns the number of duplicates.
func check(t *testing.T, c *counter, fd *feeder) int {
	t.Helper()
	// Acked records are in otelrecv's stdout pipe; give the reader a moment.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && c.missing(fd) > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.bad {
		t.Error(b)
	}
	lost, dups, badTime := 0, 0, 0
	for l, ts := range fd.expected {
		n := c.counts[l]
		if n == 0 {
			lost++
			if lost <= 3 {
				t.Errorf("lost: %.20q", l)
			}
			continue
		}
		dups += n - 1
		if c.times[l] != ts {
			badTime++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d records lost", lost, len(fd.expected))
	}
	if badTime > 0 {
		t.Errorf("%d records arrived with another timestamp (EventTime nanoseconds must be kept)", badTime)
	}
	if extra := len(c.counts) - (len(fd.expected) - lost); extra != 0 {
		t.Errorf("%d records the test never sent", extra)
	}
	return dups
}

func newForward(t *testing.T, addr string, gz bool) (*output.Forward, output.ForwardConfig) {
	t.Helper()
	cfg := output.DefaultForwardConfig()
	cfg.Servers = []output.Server{{Address: addr}}
	cfg.Gzip = gz
	cfg.BatchBytes = 16 << 10
	cfg.BatchAge = 50 * time.Millisecond
	cfg.QueueBytes = 512 << 10
	cfg.WindowBytes = 4 * cfg.BatchBytes
	cfg.RetryMin = 20 * time.Millisecond
	cfg.RetryMax = 200 * time.Millisecond
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	f, err := output.NewForward(cfg, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f, cfg
}

// freeAddr returns a 127.0.0.1 address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestOTelFluentForwardReceiverAcked(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the OpenTelemetry Collector's fluentforwardreceiver: skipped with -short")
	}
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "PackedForward", true: "CompressedPackedForward"}[gz], func(t *testing.T) {
			c := &counter{}
			addr := freeAddr(t)
			startOTel(t, addr, c)
			f, _ := newForward(t, addr, gz)
			fd := newFeeder(5)
			for range 200 {
				if err := fd.send(context.Background(), f, 100); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := f.Close(ctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if fd.acked.Load() != fd.sent.Load() {
				t.Fatalf("%d of %d batches acknowledged after Close", fd.acked.Load(), fd.sent.Load())
			}
			if dups := check(t, c, fd); dups != 0 {
				t.Errorf("%d duplicates with nothing failing", dups)
			}
			t.Logf("%d records delivered and acknowledged", c.total())
		})
	}
}

func TestOTelFluentForwardReceiverRestartedMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the OpenTelemetry Collector's fluentforwardreceiver: skipped with -short")
	}
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "PackedForward", true: "CompressedPackedForward"}[gz], func(t *testing.T) {
			c := &counter{}
			addr := freeAddr(t)
			r := startOTel(t, addr, c)
			f, cfg := newForward(t, addr, gz)
			fd := newFeeder(5)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop := make(chan struct{})
			sent := make(chan error, 1)
			go func() {
				for {
					select {
					case <-stop:
						sent <- nil
						return
					default:
					}
					if err := fd.send(ctx, f, 50); err != nil {
						sent <- err
						return
					}
				}
			}()
			const restarts = 4
			for i := range restarts {
				seen := c.total()
				waitFor(t, 30*time.Second, "records flowing", func() bool { return c.total() >= seen+2000 })
				if i%2 == 0 {
					r.kill() // SIGKILL
				} else {
					r.stop() // orderly shutdown: it closes the connections
				}
				r = startOTel(t, addr, c)
			}
			seen := c.total()
			waitFor(t, 30*time.Second, "records flowing after the last restart", func() bool { return c.total() >= seen+2000 })
			close(stop)
			if err := <-sent; err != nil {
				t.Fatalf("send: %v", err)
			}
			cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer ccancel()
			if err := f.Close(cctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			dups := check(t, c, fd)
			// A restart can lose at most the acks of one window of frames: a
			// connection takes a frame while it has less than window_bytes in
			// flight, so a frame beyond it at most (entries are > 150 bytes).
			maxInFlight := (cfg.WindowBytes+cfg.BatchBytes)/150 + 1
			if limit := restarts * maxInFlight; dups > limit {
				t.Errorf("%d duplicates after %d restarts, want <= %d (one window each)", dups, restarts, limit)
			}
			t.Logf("%d records sent, %d received, %d duplicates after %d restarts (2 killed, 2 stopped)", len(fd.expected), c.total(), dups, restarts)
		})
	}
}
