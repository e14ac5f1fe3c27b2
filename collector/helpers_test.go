package collector

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// node is a kubelet log layout in a temporary directory.
type node struct {
	t    *testing.T
	root string
}

func newNode(t *testing.T) *node {
	root := t.TempDir()
	for _, d := range []string{"pods", "containers", "state"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &node{t: t, root: root}
}

// container makes a container's log directory and its link; it returns the live file's path.
func (n *node) container(ns, pod, name string) string {
	n.t.Helper()
	uid := fmt.Sprintf("uid-%s-%s", ns, pod)
	dir := filepath.Join(n.root, "pods", ns+"_"+pod+"_"+uid, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		n.t.Fatal(err)
	}
	live := filepath.Join(dir, "0.log")
	link := filepath.Join(n.root, "containers", fmt.Sprintf("%s_%s_%s-%064x.log", pod, ns, name, len(pod)))
	if err := os.Symlink(live, link); err != nil && !os.IsExist(err) {
		n.t.Fatal(err)
	}
	return live
}

func (n *node) config() Config {
	cfg := DefaultConfig()
	cfg.LogGlob = filepath.Join(n.root, "containers", "*.log")
	cfg.StateDir = filepath.Join(n.root, "state")
	cfg.NodeName = "node-a"
	cfg.PollInterval = 20 * time.Millisecond
	cfg.RescanInterval = 100 * time.Millisecond
	cfg.RotateWait = 100 * time.Millisecond
	cfg.CheckpointInterval = 50 * time.Millisecond
	return cfg
}

// numberedLines returns CRI lines "line <prefix>-<i>" for i in [from, to).
func numberedLines(prefix string, from, to int) string {
	var b strings.Builder
	ts := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%s stdout F line %s-%d\n", ts.Add(time.Duration(i)*time.Microsecond).Format(time.RFC3339Nano), prefix, i)
	}
	return b.String()
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// capture is a sink that records every record it is sent. With hold set it
// keeps batches unacknowledged until release is called.
type capture struct {
	mu      sync.Mutex
	hold    bool
	held    []*Batch
	counts  map[string]int // log line -> times received
	order   []string
	sources []*Source
	batches int
}

func newCapture() *capture { return &capture{counts: map[string]int{}} }

func (c *capture) Send(ctx context.Context, b *Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches++
	c.sources = append(c.sources, b.Source)
	for _, r := range b.Records {
		c.counts[string(r.Log)]++
		c.order = append(c.order, string(r.Log))
	}
	if c.hold {
		c.held = append(c.held, b)
		return nil
	}
	b.Ack()
	return nil
}

// release acknowledges up to n held batches (all if n < 0), oldest first.
func (c *capture) release(n int) int {
	c.mu.Lock()
	if n < 0 || n > len(c.held) {
		n = len(c.held)
	}
	bs := c.held[:n]
	c.held = append([]*Batch(nil), c.held[n:]...)
	c.mu.Unlock()
	for _, b := range bs {
		b.Ack()
	}
	return n
}

func (c *capture) setHold(h bool) {
	c.mu.Lock()
	c.hold = h
	c.mu.Unlock()
}

func (c *capture) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.counts)
}

func (c *capture) count(line string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[line]
}

func (c *capture) heldBatches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.held)
}

// expectLines checks that every "line prefix-i" for i in [from, to) arrived
// at least once, and returns how many arrived more than once.
func (c *capture) expectLines(t *testing.T, prefix string, from, to int) (dups int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	missing := 0
	for i := from; i < to; i++ {
		n := c.counts[fmt.Sprintf("line %s-%d", prefix, i)]
		if n == 0 {
			if missing < 5 {
				t.Errorf("line %s-%d never arrived", prefix, i)
			}
			missing++
		}
		if n > 1 {
			dups += n - 1
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d lines of %s missing", missing, to-from, prefix)
	}
	return dups
}

// running is a collector running in the background.
type running struct {
	c    *Collector
	reg  *prometheus.Registry
	stop func()
}

func start(t *testing.T, cfg Config, sink Sink) *running {
	t.Helper()
	return startWith(t, cfg, sink, nil)
}

// startWith is start, with setup called on the collector before it runs.
func startWith(t *testing.T, cfg Config, sink Sink, setup func(*Collector)) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(cfg, sink, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			if err := c.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &running{c: c, reg: reg, stop: stop}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
