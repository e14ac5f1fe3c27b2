package main

import (
	"compress/gzip"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNoLossUnderFaults is the peers' fault scenario, scaled to CI:
// containers write continuously while the kubelet rotates each file about
// every second (rename, gzip the older rotations, delete beyond five), and:
//
//   - the agent is SIGKILLed and restarted at once;
//   - the Forward receiver is down for 1.5 s, and the agent is SIGKILLed
//     during the outage (nothing unacknowledged was checkpointed);
//   - the agent is SIGKILLed and stays down for 2.5 s, across two rotations
//     (the file it was reading is renamed, then compressed, meanwhile);
//   - a rolling update: the agent is stopped (SIGTERM) for 3 s while three
//     new pods start, write, rotate and compress;
//   - an aggregator outage longer than two rotations (3.5 s), with a SIGKILL
//     inside it: files read but not acknowledged are rotated and compressed
//     before anything is acknowledged.
//
// Every line written must arrive; duplicates may, within what was
// unacknowledged at a kill.
func TestNoLossUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault soak: builds the agent and runs ~30 s; skipped with -short")
	}
	n := newNode(t, `
collector:
  rescan_interval: 500ms
  rotate_wait: 1s
forward:
  batch_age: 200ms
  ack_timeout: 3s
  retry_min: 100ms
  retry_max: 1s
`)
	w := newWriters(n, 10)
	for c := range 6 {
		w.start(fmt.Sprintf("pod%d", c), time.Duration(c)*97*time.Millisecond)
	}

	begin := time.Now()
	n.start()
	// The fault schedule, paced by the clock (it is the workload, not synchronisation).
	for _, step := range []struct {
		at   time.Duration
		what string
	}{
		{3 * time.Second, "kill"},
		{5 * time.Second, "receiver down"},
		{5700 * time.Millisecond, "kill"},
		{6500 * time.Millisecond, "receiver up"},
		{8 * time.Second, "kill, stay down"},
		{10500 * time.Millisecond, "start"},
		// Rolling update: stopped, new pods meanwhile.
		{12 * time.Second, "stop"},
		{12200 * time.Millisecond, "new pods"},
		{15 * time.Second, "start"},
		// An outage longer than two rotations, with a kill inside it.
		{17 * time.Second, "receiver down"},
		{18500 * time.Millisecond, "kill"},
		{20500 * time.Millisecond, "receiver up"},
		{23 * time.Second, "stop writers"},
	} {
		time.Sleep(step.at - time.Since(begin))
		switch step.what {
		case "kill":
			n.kill()
			n.start()
		case "kill, stay down":
			n.kill()
		case "stop":
			n.term(true)
		case "start":
			n.start()
		case "new pods":
			for p := range 3 {
				w.start(fmt.Sprintf("new%d", p), time.Duration(p)*131*time.Millisecond)
			}
		case "receiver down":
			n.receiverDown()
		case "receiver up":
			n.receiverUp()
		case "stop writers":
			w.stop()
		}
		t.Logf("%s at %s", step.what, time.Since(begin).Round(time.Millisecond))
	}
	written := w.written()
	want := 0
	for _, c := range written {
		want += c
	}
	caughtUp := time.Now()
	n.waitDistinct(want, 120*time.Second)
	t.Logf("caught up %s after the writers stopped", time.Since(caughtUp).Round(time.Millisecond))
	n.term(true)
	total, lost, dups := n.account(written)
	t.Logf("%d lines written by %d containers, %d lost, %d duplicates (%.1f%%)", total, len(written), lost, dups, 100*float64(dups)/float64(total))
	if n.tally.Distinct() > total {
		t.Errorf("%d distinct lines received, more than the %d written", n.tally.Distinct(), total)
	}
}

// writers are containers writing numbered lines and rotating like the kubelet.
type writers struct {
	n       *node
	perTick int
	stopCh  chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	counts  map[string]int
}

func newWriters(n *node, perTick int) *writers {
	return &writers{n: n, perTick: perTick, stopCh: make(chan struct{}), counts: map[string]int{}}
}

// start makes a new container and writes to it until stop.
func (w *writers) start(name string, phase time.Duration) {
	live := w.n.container("ns", name, "app")
	w.wg.Go(func() {
		c := writeAndRotate(w.n.t, live, name, w.perTick, phase, w.stopCh)
		w.mu.Lock()
		w.counts[name] = c
		w.mu.Unlock()
	})
}

func (w *writers) stop() {
	close(w.stopCh)
	w.wg.Wait()
}

func (w *writers) written() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.counts)
}

// writeAndRotate writes perTick lines every 5 ms and rotates the file like the
// kubelet about every second, until stop; it returns the lines written.
func writeAndRotate(t *testing.T, live, name string, perTick int, phase time.Duration, stop <-chan struct{}) int {
	n, rotations := 0, 0
	next := time.Now().Add(time.Second + phase)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return n
		case <-tick.C:
		}
		writeLines(t, live, name, n, n+perTick)
		n += perTick
		if time.Now().After(next) {
			next = time.Now().Add(time.Second)
			rotations++
			kubeletRotate(t, live, rotations)
		}
	}
}

// kubeletRotate renames the live file, starts a new one, compresses every
// older rotation and keeps at most five.
func kubeletRotate(t *testing.T, live string, n int) {
	rotated := fmt.Sprintf("%s.20261126-%06d", live, n)
	if err := os.Rename(live, rotated); err != nil {
		t.Error(err)
		return
	}
	appendLines(t, live, "")
	old, _ := filepath.Glob(live + ".2026*")
	for _, o := range old {
		if o == rotated || strings.HasSuffix(o, ".gz") {
			continue
		}
		if err := gzipFile(o); err != nil {
			t.Error(err)
		}
	}
	gz, _ := filepath.Glob(live + ".*.gz")
	sort.Strings(gz)
	for len(gz) > 4 { // four compressed + the newest rotation = five
		os.Remove(gz[0])
		gz = gz[1:]
	}
}

func gzipFile(path string) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(path + ".gz.tmp")
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	if _, err := io.Copy(zw, in); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Rename(path+".gz.tmp", path+".gz"); err != nil {
		return err
	}
	return os.Remove(path)
}

func appendLines(t *testing.T, path, s string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Error(err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
