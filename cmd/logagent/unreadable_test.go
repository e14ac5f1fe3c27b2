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
	if err := os.Chown(state, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "pods", "ns_web_uid-1", "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "0.log")
	if err := os.WriteFile(live, []byte("2026-11-26T12:00:00Z stdout F private\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "containers"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(live, filepath.Join(root, "containers", "web_ns_app-0123.log")); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	var log syncBuffer
	cmd := exec.Command(bin, "--log-glob", filepath.Join(root, "containers", "*.log"), "--state-dir", state,
		"--listen", addr, "--node-name", "node-a", "--enrich=false")
	cmd.Stdout, cmd.Stderr = io.Discard, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("agent log:\n%s", log.String())
		}
	}()
	var body string
	waitUntil(t, "/readyz to say why it fails", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, "no log file can be read")
	})
	if !strings.Contains(body, "permission denied") {
		t.Errorf("/readyz does not give the error: %s", body)
	}
	base := "http://" + addr
	waitUntil(t, "the counter", func() bool {
		return metricSum(base, `logagent_collector_unreadable_total{reason="permission"}`) == 1
	})
	if !strings.Contains(log.String(), live) || !strings.Contains(log.String(), "permission denied") {
		t.Errorf("the agent's log does not name the file and the error:\n%s", log.String())
	}
}
