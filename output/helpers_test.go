package output

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logagent/logagent/collector"
	"github.com/logagent/logagent/output/forwardtest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/tinylib/msgp/msgp"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// kubeMap encodes a small path-metadata map as the collector does.
func kubeMap(ns, pod, container string) []byte {
	b := msgp.AppendMapHeader(nil, 4)
	b = msgp.AppendString(b, "namespace_name")
	b = msgp.AppendString(b, ns)
	b = msgp.AppendString(b, "pod_name")
	b = msgp.AppendString(b, pod)
	b = msgp.AppendString(b, "container_name")
	b = msgp.AppendString(b, container)
	b = msgp.AppendString(b, "host")
	b = msgp.AppendString(b, "node-1")
	return b
}

func testSource(i int) *collector.Source {
	ns, pod, ctr := fmt.Sprintf("ns%d", i), fmt.Sprintf("pod%d", i), "app"
	return &collector.Source{
		Path:        fmt.Sprintf("/var/log/pods/%s_%s_uid%d/%s/0.log", ns, pod, i, ctr),
		Namespace:   ns,
		Pod:         pod,
		PodUID:      fmt.Sprintf("uid%d", i),
		Container:   ctr,
		ContainerID: fmt.Sprintf("%064d", i),
		Node:        "node-1",
		Kubernetes:  kubeMap(ns, pod, ctr),
	}
}

// feeder makes batches of uniquely named records and counts their acks.
type feeder struct {
	sources []*collector.Source
	perLine int // filler bytes per record

	mu       sync.Mutex
	next     int
	expected []string // logs of accepted batches
	sent     int      // batches accepted
	acked    atomic.Int64
	ackedRec atomic.Int64
}

func newFeeder(sources, filler int) *feeder {
	fd := &feeder{perLine: filler}
	for i := range sources {
		fd.sources = append(fd.sources, testSource(i))
	}
	return fd
}

func (fd *feeder) batch(n int) (*collector.Batch, []string) {
	fd.mu.Lock()
	src := fd.sources[fd.next%len(fd.sources)]
	recs := make([]collector.Record, n)
	logs := make([]string, n)
	for i := range recs {
		logs[i] = fmt.Sprintf("rec-%07d %s", fd.next, strings.Repeat("x", fd.perLine))
		recs[i] = collector.Record{Time: time.Now().UnixNano(), Stream: collector.Stream(fd.next % 2), Log: []byte(logs[i])}
		fd.next++
	}
	fd.mu.Unlock()
	// The output drops b.Records once encoded: count from n.
	b := collector.NewBatch(src, recs, n*(fd.perLine+20), func() {
		fd.acked.Add(1)
		fd.ackedRec.Add(int64(n))
	})
	return b, logs
}

// send sends one batch of n records and records it as expected if accepted.
func (fd *feeder) send(ctx context.Context, t testing.TB, f *Forward, n int) error {
	b, logs := fd.batch(n)
	if err := f.Send(ctx, b); err != nil {
		return err
	}
	fd.mu.Lock()
	fd.expected = append(fd.expected, logs...)
	fd.sent++
	fd.mu.Unlock()
	return nil
}

func (fd *feeder) sendN(t testing.TB, f *Forward, batches, perBatch int) {
	t.Helper()
	for range batches {
		if err := fd.send(context.Background(), t, f, perBatch); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
}

func (fd *feeder) allAcked() bool {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	return int(fd.acked.Load()) == fd.sent
}

func (fd *feeder) want() []string {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	return append([]string(nil), fd.expected...)
}

// checkTally asserts zero loss and explained duplicates; it returns the duplicates.
func checkTally(t testing.TB, tally *forwardtest.Tally, fd *feeder) int {
	t.Helper()
	dups, problems := tally.Check(fd.want())
	for _, p := range problems {
		t.Error(p)
	}
	if got, want := fd.ackedRec.Load(), int64(len(fd.want())); got != want {
		t.Errorf("acknowledged %d records to the collector, want %d", got, want)
	}
	return dups
}

// testConfig is small and fast: tiny batches, short timeouts.
func testConfig(addrs ...string) ForwardConfig {
	cfg := DefaultForwardConfig()
	for _, a := range addrs {
		cfg.Servers = append(cfg.Servers, Server{Address: a})
	}
	cfg.BatchBytes = 4 << 10
	cfg.BatchAge = 20 * time.Millisecond
	cfg.AckTimeout = 10 * time.Second
	cfg.QueueBytes = 4 << 20
	cfg.DialTimeout = 2 * time.Second
	cfg.RetryMin = 10 * time.Millisecond
	cfg.RetryMax = 100 * time.Millisecond
	cfg.ReadyTimeout = time.Minute
	return cfg
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), substr)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type harness struct {
	f      *Forward
	reg    *prometheus.Registry
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
}

// startForward creates and runs a Forward; it is stopped at test cleanup.
func startForward(t testing.TB, cfg ForwardConfig) *harness {
	t.Helper()
	return startForwardWith(t, cfg, nil)
}

// startForwardWith is startForward with setup called before Run (to give
// the output a test resolver).
func startForwardWith(t testing.TB, cfg ForwardConfig, setup func(*Forward)) *harness {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry(), logs: &logBuffer{}, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f, err := NewForward(cfg, h.reg, log)
	if err != nil {
		t.Fatalf("NewForward: %v", err)
	}
	h.f = f
	if setup != nil {
		setup(f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return h
}

func (h *harness) metric(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

func startReceiver(t testing.TB, addr string, cfg forwardtest.Config, tally *forwardtest.Tally) *forwardtest.Receiver {
	t.Helper()
	r, err := forwardtest.Start(addr, cfg, tally)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// freeAddr returns a 127.0.0.1 address nothing listens on (right now).
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// closeForward closes f, which seals what is open and waits for every ack.
func closeForward(t testing.TB, f *Forward) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("network scenario with a live receiver: skipped with -short")
	}
}

// load sends batches from a goroutine until stopped, as a busy node does.
type load struct {
	stop chan struct{}
	done chan error
}

// startLoad sends batches of n records to f until finish.
func startLoad(t testing.TB, fd *feeder, f *Forward, n int) *load {
	l := &load{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		for {
			select {
			case <-l.stop:
				l.done <- nil
				return
			default:
			}
			if err := fd.send(context.Background(), t, f, n); err != nil {
				l.done <- err
				return
			}
		}
	}()
	return l
}

// finish stops the load and fails the test if a Send failed.
func (l *load) finish(t testing.TB) {
	t.Helper()
	close(l.stop)
	if err := <-l.done; err != nil {
		t.Fatalf("send: %v", err)
	}
}

// serverStates maps each server's address to its state.
func serverStates(f *Forward) map[string]string {
	out := map[string]string{}
	for _, s := range f.ServerStatus() {
		out[s.Address] = s.State
	}
	return out
}

// waitStates waits until the servers are exactly want (address -> state).
func waitStates(t testing.TB, f *Forward, timeout time.Duration, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := serverStates(f)
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("servers %v after %s, want %v", got, timeout, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// grows waits until count() has grown by at least n.
func grows(t testing.TB, what string, n int, count func() int) {
	t.Helper()
	start := count()
	waitFor(t, 30*time.Second, what, func() bool { return count()-start >= n })
}
