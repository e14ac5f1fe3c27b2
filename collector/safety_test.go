package collector

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// syncBuffer is a log destination safe for the collector and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLogged starts a collector whose log the test reads.
func startLogged(t *testing.T, cfg Config, sink Sink, setup func(*Collector)) (*running, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	c, err := New(cfg, sink, reg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			c.Close()
		})
	}
	t.Cleanup(stop)
	return &running{c: c, reg: reg, stop: stop}, logs
}

// A link in a container's log folder to a file outside the log roots (the
// agent's own ServiceAccount token, say) is not read: skipped, logged once,
// counted, however many rescans meet it.
func TestLinkOutsideLogRoots(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "evil", "app")
	appendFile(t, live, numberedLines("ok", 0, 10))
	secret := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secret, []byte("2026-11-26T12:00:00Z stdout F secret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(live)
	for _, name := range []string{"1.log", "0.log.20261126-120000"} {
		if err := os.Symlink(secret, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	// A link to another pod's log folder is under the roots: read.
	other := n.container("default", "other", "app")
	appendFile(t, other, numberedLines("other", 0, 5))
	cfg := n.config()
	cfg.LogRoots = []string{filepath.Join(n.root, "pods")}
	sink := newCapture()
	r, logs := startLogged(t, cfg, sink, nil)
	waitFor(t, "the readable lines", func() bool { return sink.distinct() == 15 })
	rescans := metricValue(t, r.reg, "logagent_collector_rescans_total", nil)
	waitFor(t, "more rescans", func() bool { return metricValue(t, r.reg, "logagent_collector_rescans_total", nil) >= rescans+3 })
	if sink.count("secret-token") != 0 {
		t.Fatal("a file outside the log roots was read")
	}
	if got := metricValue(t, r.reg, "logagent_collector_unreadable_total", map[string]string{"reason": "outside_roots"}); got != 2 {
		t.Errorf("unreadable_total{reason=outside_roots} = %v, want 2 (once per link)", got)
	}
	if got := strings.Count(logs.String(), "outside the log roots"); got != 2 {
		t.Errorf("logged %d times, want once per link:\n%s", got, logs)
	}
	if err := r.c.Ready(); err != nil {
		t.Errorf("not ready though files are read: %v", err)
	}
}

// Two collectors on one state directory: the second fails, naming the
// first's pid; once the first closes, the directory is free. The directory
// is 0700, the checkpoint file 0600.
func TestStateDirLocked(t *testing.T) {
	n := newNode(t)
	cfg := n.config()
	if err := os.Chmod(cfg.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	first := start(t, cfg, newCapture())
	_, err := New(cfg, newCapture(), nil, nil)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("in use by process %d", os.Getpid())) {
		t.Fatalf("second collector on the state directory: err = %v", err)
	}
	waitFor(t, "a checkpoint file", func() bool {
		_, err := os.Stat(filepath.Join(cfg.StateDir, checkpointFile))
		return err == nil
	})
	for path, want := range map[string]os.FileMode{cfg.StateDir: 0o700, filepath.Join(cfg.StateDir, checkpointFile): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode().Perm(), err, want)
		}
	}
	first.stop()
	second, err := New(cfg, newCapture(), nil, nil)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	second.Close()
}

// Files that exist but cannot be read (here: a FIFO with a log's name) are
// logged and counted once, and the collector is not ready while nothing at
// all can be read; it is once something can.
func TestNothingReadableIsNotReady(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "fifo", "app")
	if err := syscall.Mkfifo(live, 0o644); err != nil {
		t.Fatal(err)
	}
	sink := newCapture()
	r, logs := startLogged(t, n.config(), sink, nil)
	waitFor(t, "not ready", func() bool {
		err := r.c.Ready()
		return err != nil && strings.Contains(err.Error(), "no log file can be read") && strings.Contains(err.Error(), "not a regular file")
	})
	if got := metricValue(t, r.reg, "logagent_collector_unreadable_total", map[string]string{"reason": "not_regular"}); got != 1 {
		t.Errorf("unreadable_total{reason=not_regular} = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), live) {
		t.Errorf("the path is not in the log:\n%s", logs)
	}
	good := n.container("default", "fine", "app")
	appendFile(t, good, numberedLines("g", 0, 3))
	waitFor(t, "ready", func() bool { return r.c.Ready() == nil })
	waitFor(t, "the readable file's lines", func() bool { return sink.distinct() == 3 })
}

// Checkpoint saves that keep failing make the collector not ready, with the reason.
func TestCheckpointSavesFailingIsNotReady(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "ro", "app")
	appendFile(t, live, numberedLines("r", 0, 3))
	cfg := n.config()
	sink := newCapture()
	r, _ := startLogged(t, cfg, sink, nil)
	waitFor(t, "the lines", func() bool { return sink.distinct() == 3 })
	if err := r.c.Ready(); err != nil {
		t.Fatalf("not ready: %v", err)
	}
	// The state directory goes away (a hostPath unmounted, say): nothing
	// can be written there any more.
	if err := os.RemoveAll(cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.StateDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, numberedLines("r", 3, 4)) // a change to save
	waitFor(t, "not ready", func() bool {
		err := r.c.Ready()
		return err != nil && strings.Contains(err.Error(), "checkpoints not saved")
	})
	if got := metricValue(t, r.reg, "logagent_collector_checkpoint_errors_total", nil); got < 3 {
		t.Errorf("checkpoint_errors_total = %v, want at least 3", got)
	}
}

// A glob that matches nothing for a while says so at info level.
func TestGlobMatchingNothingIsLogged(t *testing.T) {
	n := newNode(t)
	_, logs := startLogged(t, n.config(), newCapture(), func(c *Collector) { c.globQuietAfter = 200 * time.Millisecond })
	waitFor(t, "the message", func() bool { return strings.Contains(logs.String(), "the log glob has matched no file for a while") })
	if strings.Count(logs.String(), "matched no file") != 1 {
		t.Errorf("said more than once:\n%s", logs)
	}
}

// A namespace whose last file is gone loses its series; the watch of a
// folder gone is dropped.
func TestNamespaceSeriesAndWatchesPruned(t *testing.T) {
	n := newNode(t)
	stay := n.container("prod", "api", "app")
	appendFile(t, stay, numberedLines("p", 0, 3))
	gone := n.container("ci-1234", "job", "build")
	appendFile(t, gone, numberedLines("c", 0, 3))
	sink := newCapture()
	r := start(t, n.config(), sink)
	waitFor(t, "the lines", func() bool { return sink.distinct() == 6 })
	series := func(ns string) bool {
		mfs, _ := r.reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() != "logagent_collector_records_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "namespace" && l.GetValue() == ns {
						return true
					}
				}
			}
		}
		return false
	}
	if !series("ci-1234") {
		t.Fatal("no series for the namespace")
	}
	podDir := filepath.Dir(filepath.Dir(gone))
	links, _ := filepath.Glob(filepath.Join(n.root, "containers", "job_ci-1234_*"))
	for _, l := range links {
		os.Remove(l)
	}
	if err := os.RemoveAll(podDir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the namespace's series to go", func() bool { return !series("ci-1234") })
	if !series("prod") {
		t.Error("the other namespace's series went too")
	}
	waitFor(t, "the folder's watch to go", func() bool {
		r.c.mu.Lock()
		defer r.c.mu.Unlock()
		return !r.c.watched[filepath.Dir(gone)] && r.c.watched[filepath.Dir(stay)]
	})
}
