package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logagent/logagent/collector"
)

// The decision, probe by probe: a stall fails liveness only with input
// pending, the output accepting and no server error since the last move,
// for the whole timeout.
func TestLivenessDecision(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	stuck := collector.Activity{Read: 100, Acked: 50, Files: 1, Unacked: 2}
	idle := collector.Activity{Read: 100, Acked: 100, Files: 1}
	unread := collector.Activity{Read: 100, Acked: 100, Files: 1, Unread: 4096}
	type probe struct {
		at     time.Duration
		s      livenessSample
		failed bool
	}
	ok := func(a collector.Activity) livenessSample { return livenessSample{progress: a, accepting: true} }
	for _, tc := range []struct {
		name   string
		probes []probe
	}{
		{"stuck with batches unacknowledged", []probe{
			{0, ok(stuck), false}, {time.Minute, ok(stuck), false}, {4*time.Minute + 59*time.Second, ok(stuck), false},
			{5 * time.Minute, ok(stuck), true}, {6 * time.Minute, ok(stuck), true}}},
		{"stuck with bytes unread", []probe{{0, ok(unread), false}, {5 * time.Minute, ok(unread), true}}},
		{"idle: nothing pending", []probe{{0, ok(idle), false}, {time.Hour, ok(idle), false}}},
		{"moving slowly", []probe{
			{0, ok(stuck), false}, {4 * time.Minute, ok(collector.Activity{Read: 100, Acked: 60, Files: 1, Unacked: 1}), false},
			{8 * time.Minute, ok(collector.Activity{Read: 100, Acked: 60, Files: 1, Unacked: 1}), false},
			{9 * time.Minute, ok(collector.Activity{Read: 100, Acked: 60, Files: 1, Unacked: 1}), true}}},
		{"a file growing is not movement", []probe{
			{0, ok(unread), false}, {3 * time.Minute, ok(collector.Activity{Read: 100, Acked: 100, Files: 1, Unread: 9000}), false},
			{5 * time.Minute, ok(collector.Activity{Read: 100, Acked: 100, Files: 1, Unread: 9000}), true}}},
		{"outage: no server connected", []probe{
			{0, ok(stuck), false}, {4 * time.Minute, livenessSample{progress: stuck}, false},
			// The clock runs from the last probe that saw the outage.
			{8 * time.Minute, ok(stuck), false}, {8*time.Minute + 59*time.Second, ok(stuck), false}, {9 * time.Minute, ok(stuck), true}}},
		{"server errors since the last move", []probe{
			{0, ok(stuck), false},
			{4 * time.Minute, livenessSample{progress: stuck, accepting: true, outputErrAt: t0.Add(3 * time.Minute)}, false},
			{8 * time.Minute, livenessSample{progress: stuck, accepting: true, outputErrAt: t0.Add(3 * time.Minute)}, false},
			{9 * time.Minute, livenessSample{progress: stuck, accepting: true, outputErrAt: t0.Add(3 * time.Minute)}, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l liveness
			for _, p := range tc.probes {
				err := l.check(t0.Add(p.at), p.s, 5*time.Minute)
				if (err != nil) != p.failed {
					t.Errorf("at %s: err = %v, want failed=%v", p.at, err, p.failed)
				}
			}
		})
	}
	var off liveness
	off.check(t0, ok(stuck), 0)
	if err := off.check(t0.Add(24*time.Hour), ok(stuck), 0); err != nil {
		t.Errorf("liveness_timeout 0: %v", err)
	}
}

func healthz(base string) (int, string) {
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A real wedge: the stdout output writing to a pipe nobody reads blocks the
// whole pipeline. /healthz fails after liveness_timeout, naming why, and
// answers ok again once the pipe is read.
func TestLivenessFailsWhenWedged(t *testing.T) {
	bin := buildAgent(t)
	root := t.TempDir()
	live := filepath.Join(root, "pods", "ns_wedge_uid-1", "app", "0.log")
	if err := os.MkdirAll(filepath.Dir(live), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "containers"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(live, filepath.Join(root, "containers", fmt.Sprintf("wedge_ns_app-%064x.log", 1))); err != nil {
		t.Fatal(err)
	}
	writeLines(t, live, "w", 0, 20000) // megabytes: far more than a pipe holds
	listen := freeAddr(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd := exec.Command(bin, "--config", writeConfig(t, "liveness_timeout: 2s\n"), "--output", "stdout",
		"--log-glob", filepath.Join(root, "containers", "*.log"), "--state-dir", filepath.Join(root, "state"),
		"--listen", listen, "--enrich=false")
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = pw, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("agent log:\n%s", tail(stderr.String(), 20))
		}
	})
	base := "http://" + listen
	waitUntil(t, "the agent to answer", func() bool { c, _ := healthz(base); return c == 200 })
	var body string
	waitUntil(t, "/healthz to fail", func() bool {
		var code int
		code, body = healthz(base)
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "pipeline stuck") || !strings.Contains(body, "liveness_timeout 2s") {
		t.Errorf("body: %q", body)
	}
	go io.Copy(io.Discard, pr) // the reader of stdout comes back
	waitUntil(t, "/healthz to recover", func() bool { c, _ := healthz(base); return c == 200 })
}

// With Forward: a pipeline that delivers keeps /healthz ok under load, and an
// outage (the receiver down, input piling up) does not fail it however long
// it lasts: the aggregator's fault, not the agent's. /readyz says so instead.
func TestLivenessHealthyAndOutage(t *testing.T) {
	n := newNode(t, "liveness_timeout: 1s\nforward:\n  ready_timeout: 1s\n")
	n.listen = freeAddr(t)
	base := "http://" + n.listen
	n.start()
	live := n.container("default", "busy", "app")
	written := 0
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		writeLines(t, live, "busy", written, written+200)
		written += 200
		if code, body := healthz(base); code != 200 && code != 0 {
			t.Fatalf("under load: /healthz %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond) // pacing the writer, not synchronisation
	}
	if !n.waitDistinct(written, 20*time.Second) {
		t.Fatalf("%d of %d lines delivered", n.tally.Distinct(), written)
	}

	n.receiverDown()
	writeLines(t, live, "busy", written, written+5000)
	written += 5000
	waitUntil(t, "/readyz to report the outage", func() bool { return httpStatus(base+"/readyz") == 503 })
	// Several liveness_timeouts of outage, probed as the kubelet does.
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if code, body := healthz(base); code != 200 {
			t.Fatalf("during an outage: /healthz %d %s", code, body)
		}
	}
	n.receiverUp()
	if !n.waitDistinct(written, 30*time.Second) {
		t.Fatalf("%d of %d lines delivered after the outage", n.tally.Distinct(), written)
	}
	if code, body := healthz(base); code != 200 {
		t.Errorf("after the outage: /healthz %d %s", code, body)
	}
	n.term(true)
	if _, lost, _ := n.account(map[string]int{"busy": written}); lost != 0 {
		t.Errorf("%d lost", lost)
	}
}
