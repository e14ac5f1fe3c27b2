package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The most common DaemonSet mistake, an agent that may not read the log
// files, is loud (issue 13): run as an unprivileged user on root's 0600
// files, the agent logs the path and the error, counts it with
// reason="permission", and /readyz fails saying why.
func TestUnreadableLogsFailReadiness(t *testing.T) {
	a := startAsNobody(t, 0o600, true)
	body := a.waitNotReady(t, "no log file can be read")
	if !strings.Contains(body, "permission denied") {
		t.Errorf("/readyz does not give the error: %s", body)
	}
	waitUntil(t, "the counter", func() bool {
		return metricSum(a.base, `logagent_collector_unreadable_total{reason="permission"}`) == 1
	})
	if !strings.Contains(a.log.String(), a.live) || !strings.Contains(a.log.String(), "permission denied") {
		t.Errorf("the agent's log does not name the file and the error:\n%s", a.log.String())
	}
}

// A state directory the agent cannot write (a read-only or root-owned
// mount) does not stop it shipping logs, but /readyz fails saying why: a
// restart would send everything again.
func TestUnwritableStateDirFailsReadiness(t *testing.T) {
	a := startAsNobody(t, 0o644, false)
	waitUntil(t, "the record shipped", func() bool { return metricSum(a.base, "logagent_output_stdout_records_total") == 1 })
	body := a.waitNotReady(t, "checkpoints not saved")
	if !strings.Contains(body, "permission denied") {
		t.Errorf("/readyz does not give the error: %s", body)
	}
}

type nobodyAgent struct {
	base, live string
	log        *syncBuffer
}

// startAsNobody runs the agent as uid 65534 on one root-owned log file of
// the given mode, with a state directory it owns or not.
func startAsNobody(t *testing.T, logMode os.FileMode, stateWritable bool) *nobodyAgent {
	if testing.Short() {
		t.Skip("builds and runs the agent")
	}
	if os.Getuid() != 0 {
		t.Skip("needs root, to run the agent as another user on root's files")
	}
	const nobody = 65534
	bin := buildAgent(t)
	root := t.TempDir()
	state := t.TempDir()
	for _, d := range []string{filepath.Dir(root), root, state, filepath.Dir(bin)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if stateWritable {
		if err := os.Chown(state, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(root, "pods", "ns_web_uid-1", "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "0.log")
	if err := os.WriteFile(live, []byte("2026-11-26T12:00:00Z stdout F private\n"), logMode); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "containers"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(live, filepath.Join(root, "containers", "web_ns_app-0123.log")); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	a := &nobodyAgent{base: "http://" + addr, live: live, log: &syncBuffer{}}
	cmd := exec.Command(bin, "--log-glob", filepath.Join(root, "containers", "*.log"), "--state-dir", state,
		"--listen", addr, "--node-name", "node-a", "--enrich=false")
	cmd.Stdout, cmd.Stderr = io.Discard, a.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("agent log:\n%s", a.log.String())
		}
	})
	return a
}

// waitNotReady waits for /readyz to fail with want in its body, and returns the body.
func (a *nobodyAgent) waitNotReady(t *testing.T, want string) string {
	t.Helper()
	var body string
	waitUntil(t, "/readyz to fail with "+want, func() bool {
		resp, err := http.Get(a.base + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, want)
	})
	return body
}
