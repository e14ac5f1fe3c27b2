package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logagent/logagent/output/forwardtest"
)

// TestReloadUnderLoad: containers write numbered lines continuously while
// the agent binary, configured from a ConfigMap-style volume, reloads six
// times: on SIGHUP with nothing changed; the kubelet's ..data swap adding a
// second Forward server; one removing the first (drained); one changing the
// collector's limits live (a smaller buffer_bytes, other intervals and
// timeouts, a multiline rule); one invalid (the running configuration
// stays); one moving back to the first server with other batching, a debug
// log level, a larger buffer_bytes and a change that needs a restart; and
// SIGHUP again. Every line must arrive exactly once: zero lost, zero
// duplicated.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent and runs ~15 s; skipped with -short")
	}
	bin := buildAgent(t)
	root, state := t.TempDir(), t.TempDir()
	tally := &forwardtest.Tally{}
	recvA, err := forwardtest.Start("127.0.0.1:0", forwardtest.Config{}, tally)
	if err != nil {
		t.Fatal(err)
	}
	defer recvA.Close()
	recvB, err := forwardtest.Start("127.0.0.1:0", forwardtest.Config{}, tally)
	if err != nil {
		t.Fatal(err)
	}
	defer recvB.Close()

	listen := freeAddr(t)
	base := "http://" + listen
	// config is the agent's file with these servers, plus lines for the
	// top level, the collector and forward.
	config := func(servers []string, top, collector, forward string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "listen: %s\noutput: forward\nenrich: {enabled: false}\n%s", listen, top)
		fmt.Fprintf(&b, "collector:\n  log_glob: %s\n  state_dir: %s\n%s", filepath.Join(root, "containers", "*.log"), state, collector)
		b.WriteString("forward:\n  batch_age: 100ms\n  servers:\n")
		for _, s := range servers {
			fmt.Fprintf(&b, "    - address: %s\n", s)
		}
		b.WriteString(forward)
		return b.String()
	}
	vol := newConfigMapVolume(t, t.TempDir(), map[string]string{"config.yaml": config([]string{recvA.Addr()}, "", "", "")})

	agentLog, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer agentLog.Close()
	agent := exec.Command(bin, "run", "--config", vol.path("config.yaml"), "--node-name", "node-a")
	agent.Stdout, agent.Stderr = agentLog, agentLog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	stopped := false // the test took the exit status from exited
	defer func() {
		if !stopped {
			agent.Process.Kill()
			<-exited
		}
	}()
	agentTail := func() string { data, _ := os.ReadFile(agentLog.Name()); return tail(string(data), 30) }
	waitUntil(t, "the agent's /readyz", func() bool { return httpStatus(base+"/readyz") == 200 })

	const containers, perTick = 6, 10
	var wg sync.WaitGroup
	written := make([]int, containers)
	stop := make(chan struct{})
	for c := range containers {
		dir := filepath.Join(root, "pods", fmt.Sprintf("ns_pod%d_uid%d", c, c), "app")
		os.MkdirAll(dir, 0o755)
		os.MkdirAll(filepath.Join(root, "containers"), 0o755)
		live := filepath.Join(dir, "0.log")
		appendLines(t, live, "")
		if err := os.Symlink(live, filepath.Join(root, "containers", fmt.Sprintf("pod%d_ns_app-%064x.log", c, c+1))); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { written[c] = writeLinesUntil(t, live, c, perTick, stop) })
	}

	reloads := func() (ok, failed float64) {
		return metricSum(base, `logagent_config_reloads_total{result="success"}`),
			metricSum(base, `logagent_config_reloads_total{result="failure"}`)
	}
	// reload changes the ConfigMap (or, with body "", sends SIGHUP) and
	// waits for the reload's result.
	reload := func(what, body string, wantOK bool) {
		t.Helper()
		ok0, failed0 := reloads()
		if body == "" {
			agent.Process.Signal(syscall.SIGHUP)
		} else {
			vol.update(t, map[string]string{"config.yaml": body})
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			ok, failed := reloads()
			if ok+failed > ok0+failed0 {
				if (ok > ok0) != wantOK {
					t.Errorf("%s: reload succeeded %v, want %v\n%s", what, ok > ok0, wantOK, agentTail())
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no reload within 30 s\n%s", what, agentTail())
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("%s: reloaded (ok %v)", what, wantOK)
	}
	// waitServed waits until r has received records beyond n, so that each
	// step reloads while records flow through the servers it changes.
	waitServed := func(r *forwardtest.Receiver, n int) {
		t.Helper()
		waitUntil(t, "records at "+r.Addr(), func() bool { return r.Records() > n })
	}

	waitServed(recvA, 0)
	reload("SIGHUP, nothing changed", "", true)
	reload("servers A and B", config([]string{recvA.Addr(), recvB.Addr()}, "", "", ""), true)
	waitServed(recvB, 0)
	reload("server B only: A drains", config([]string{recvB.Addr()}, "", "", ""), true)
	waitServed(recvB, recvB.Records())
	collectorLive := "  buffer_bytes: 2621440\n  poll_interval: 50ms\n  rescan_interval: 2s\n  checkpoint_interval: 100ms\n" +
		"  partial_flush_timeout: 2s\n  rotate_wait: 1s\n  deleted_hold_bytes: 1048576\n" +
		"  multiline:\n    select:\n      - namespaces: [other]\n        rule: java\n"
	reload("collector limits, live", config([]string{recvB.Addr()}, "", collectorLive, ""), true)
	var st configStatus
	getJSON(t, base+"/debug/config", &st)
	if len(st.PendingRestart) != 0 || st.LastReload == nil ||
		!slices.Contains(st.LastReload.Applied, "collector.buffer_bytes") || !slices.Contains(st.LastReload.Applied, "collector.multiline.select") {
		t.Errorf("collector reload: applied %v, pending restart %v", st.LastReload, st.PendingRestart)
	}
	waitServed(recvB, recvB.Records())
	atA := recvA.Records()
	reload("invalid: unknown key", config([]string{recvA.Addr()}, "", "", "  batch_size: 1\n"), false)
	waitServed(recvB, recvB.Records())
	if recvA.Records() != atA {
		t.Errorf("server A got records after the reload that removed it (%d, then %d)", atA, recvA.Records())
	}
	reload("back to A, other batching, debug log, a restart-only key",
		config([]string{recvA.Addr()}, "log: {level: debug}\n", "  read_bytes: 65536\n  buffer_bytes: 8388608\n", "  batch_bytes: 65536\n  gzip: true\n"), true)
	getJSON(t, base+"/debug/config", &st)
	if !slices.Equal(st.PendingRestart, []string{"collector.read_bytes"}) || !slices.Contains(st.LastReload.Applied, "collector.buffer_bytes") {
		t.Errorf("after the restart-only change: applied %v, pending restart %v", st.LastReload.Applied, st.PendingRestart)
	}
	waitServed(recvA, recvA.Records())
	reload("SIGHUP again", "", true)
	waitServed(recvA, recvA.Records())
	close(stop)
	wg.Wait()

	if v := metricSum(base, "logagent_config_pending_restart"); v != 1 {
		t.Errorf("logagent_config_pending_restart = %v, want 1 (collector.read_bytes)", v)
	}
	total := 0
	for _, n := range written {
		total += n
	}
	deadline := time.Now().Add(60 * time.Second)
	for tally.Distinct() < total && time.Now().Before(deadline) {
		select {
		case <-tally.Changed():
		case <-time.After(time.Second):
		}
	}
	agent.Process.Signal(syscall.SIGTERM)
	err = <-exited
	stopped = true
	if err != nil {
		t.Errorf("agent exit after SIGTERM: %v", err)
	}
	lost, dups := 0, 0
	var examples []string
	for c := range containers {
		for i := range written[c] {
			switch n := tally.Count(lineText(c, i)); {
			case n == 0:
				lost++
				if len(examples) < 5 {
					examples = append(examples, "lost "+lineText(c, i))
				}
			case n > 1:
				dups += n - 1
				if len(examples) < 5 {
					examples = append(examples, fmt.Sprintf("%d times %s", n, lineText(c, i)))
				}
			}
		}
	}
	t.Logf("%d lines written, %d received (A %d, B %d), %d lost, %d duplicated", total, tally.Records(),
		recvA.Records(), recvB.Records(), lost, dups)
	if lost > 0 || dups > 0 || tally.Records() != total {
		t.Errorf("%d lost, %d duplicated, %d received of %d written: %v\n%s", lost, dups, tally.Records(), total, examples, agentTail())
	}
	if invalid, errs := tally.Invalid(); invalid > 0 {
		t.Errorf("%d invalid entries: %v", invalid, errs)
	}
}

func lineText(c, i int) string { return fmt.Sprintf("reload c%d seq=%d", c, i) }

// writeLinesUntil writes perTick numbered lines every 5 ms until stop and returns
// how many it wrote.
func writeLinesUntil(t *testing.T, live string, c, perTick int, stop <-chan struct{}) int {
	n := 0
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
			fmt.Fprintf(&b, "%s stdout F %s\n", ts, lineText(c, n))
			n++
		}
		appendLines(t, live, b.String())
	}
}
