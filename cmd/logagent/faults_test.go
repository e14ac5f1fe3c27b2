package main

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logagent/logagent/output/forwardtest"
)

// TestNoLossUnderFaults is the peers' fault scenario, scaled to CI: containers
// write continuously while the kubelet rotates each file about every second
// (rename, gzip the older rotations, delete beyond five); the agent is killed
// with SIGKILL three times: restarted at once, again while the Forward
// receiver is down (1.5 s), and once kept down for 2.5 s (so a file it was
// reading is rotated and compressed meanwhile).
// Every line written must arrive; duplicates may, within the unacknowledged
// window.
func TestNoLossUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault soak: builds the agent and runs ~20 s; skipped with -short")
	}
	bin := buildAgent(t)
	root := t.TempDir()
	state := t.TempDir()
	tally := &forwardtest.Tally{}
	recv, err := forwardtest.Start("127.0.0.1:0", forwardtest.Config{}, tally)
	if err != nil {
		t.Fatal(err)
	}
	addr := recv.Addr()
	var recvMu sync.Mutex
	defer func() { recvMu.Lock(); recv.Close(); recvMu.Unlock() }()

	cfg := writeConfig(t, `
collector:
  rescan_interval: 500ms
  rotate_wait: 1s
forward:
  batch_age: 200ms
  ack_timeout: 3s
  retry_min: 100ms
  retry_max: 1s
`)
	agentLog, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer agentLog.Close()
	startAgent := func() *exec.Cmd {
		cmd := exec.Command(bin, "--config", cfg, "--output", "forward", "--forward", addr,
			"--log-glob", filepath.Join(root, "containers", "*.log"), "--state-dir", state,
			"--listen", "127.0.0.1:0", "--node-name", "node-a", "--enrich=false", "--log-level", "info")
		cmd.Stdout, cmd.Stderr = agentLog, agentLog
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	const containers, perTick = 6, 10
	var wg sync.WaitGroup
	written := make([]int, containers)
	stop := make(chan struct{})
	for c := range containers {
		dir := filepath.Join(root, "pods", fmt.Sprintf("ns_pod%d_uid%d", c, c), "app")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(root, "containers"), 0o755)
		live := filepath.Join(dir, "0.log")
		appendLines(t, live, "")
		if err := os.Symlink(live, filepath.Join(root, "containers", fmt.Sprintf("pod%d_ns_app-%064x.log", c, c+1))); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { written[c] = writeAndRotate(t, live, c, perTick, stop) })
	}

	begin := time.Now()
	agent := startAgent()
	// The fault schedule, paced by the clock (it is the workload, not synchronisation).
	for _, step := range []struct {
		at   time.Duration
		what string
	}{
		{3 * time.Second, "kill"},
		{5 * time.Second, "receiver down"},
		// Killed during the outage: nothing unacknowledged was checkpointed.
		{5700 * time.Millisecond, "kill"},
		{6500 * time.Millisecond, "receiver up"},
		// Down across two rotations: the file being read at the kill is
		// renamed, then compressed, before the agent is back.
		{8 * time.Second, "kill, stay down"},
		{10500 * time.Millisecond, "start"},
		{13 * time.Second, "stop writers"},
	} {
		time.Sleep(step.at - time.Since(begin))
		switch step.what {
		case "kill":
			agent.Process.Signal(syscall.SIGKILL)
			agent.Wait()
			agent = startAgent()
		case "kill, stay down":
			agent.Process.Signal(syscall.SIGKILL)
			agent.Wait()
		case "start":
			agent = startAgent()
		case "receiver down":
			recvMu.Lock()
			recv.Close()
			recvMu.Unlock()
		case "receiver up":
			r, err := forwardtest.Start(addr, forwardtest.Config{}, tally)
			if err != nil {
				t.Fatalf("restart receiver: %v", err)
			}
			recvMu.Lock()
			recv = r
			recvMu.Unlock()
		case "stop writers":
			close(stop)
			wg.Wait()
		}
		t.Logf("%s at %s", step.what, time.Since(begin).Round(time.Millisecond))
	}
	total := 0
	for _, n := range written {
		total += n
	}
	deadline := time.Now().Add(120 * time.Second)
	caughtUp := time.Now()
	for tally.Distinct() < total && time.Now().Before(deadline) {
		select {
		case <-tally.Changed():
		case <-time.After(time.Second):
		}
	}
	t.Logf("caught up %s after the writers stopped", time.Since(caughtUp).Round(time.Millisecond))
	agent.Process.Signal(syscall.SIGTERM)
	if err := agent.Wait(); err != nil {
		t.Errorf("agent exit after SIGTERM: %v", err)
	}
	var missing []string
	for c := range containers {
		lo, hi := -1, -1
		for i := range written[c] {
			if line := soakLine(c, i); tally.Count(line) == 0 {
				missing = append(missing, line)
				if lo < 0 {
					lo = i
				}
				hi = i
			}
		}
		if lo >= 0 {
			t.Logf("container %d: lost lines between seq %d and %d of %d", c, lo, hi, written[c])
		}
	}
	dups := tally.Records() - tally.Distinct()
	t.Logf("%d lines written, %d received, %d distinct, %d duplicates", total, tally.Records(), tally.Distinct(), dups)
	if invalid, errs := tally.Invalid(); invalid > 0 {
		t.Errorf("%d invalid entries: %v", invalid, errs)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("%d of %d lines lost, e.g. %v", len(missing), total, missing[:min(5, len(missing))])
		if data, err := os.ReadFile(agentLog.Name()); err == nil {
			t.Logf("agent log (tail):\n%s", tail(string(data), 40))
		}
	}
	if tally.Distinct() > total {
		t.Errorf("%d distinct lines received, more than the %d written", tally.Distinct(), total)
	}
}

func soakLine(c, i int) string { return fmt.Sprintf("soak c%d seq=%d", c, i) }

// writeAndRotate writes perTick lines every 5 ms and rotates the file like the
// kubelet about every second, until stop; it returns the lines written.
func writeAndRotate(t *testing.T, live string, c, perTick int, stop <-chan struct{}) int {
	n, rotations := 0, 0
	next := time.Now().Add(time.Second + time.Duration(c)*97*time.Millisecond)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return n
		case <-tick.C:
		}
		var b strings.Builder
		ts := time.Now().UTC().Format(time.RFC3339Nano)
		for range perTick {
			fmt.Fprintf(&b, "%s stdout F %s\n", ts, soakLine(c, n))
			n++
		}
		appendLines(t, live, b.String())
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
