package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is an io.Writer safe for the agent's writer and the test's reader.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// The whole agent with the stdout output: records come out with their path
// metadata, the probes answer, and a shutdown persists checkpoints at the end
// of every file, so a restart sends nothing again.
func TestAgentStdoutShutdownAndRestart(t *testing.T) {
	root := t.TempDir()
	if _, err := writeDemoLogs(root); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--log-glob", filepath.Join(root, "containers", "*.log"),
		"--state-dir", filepath.Join(root, "state"),
		"--node-name", "node-a", "--enrich=false", "--listen", "127.0.0.1:0",
	}
	runOnce := func(want int) (out string) {
		cfg, err := loadConfig("test", args, envMap(nil))
		if err != nil {
			t.Fatal(err)
		}
		var stdout syncBuffer
		a, err := newAgent(cfg, newLogger(cfg.Log, io.Discard), &stdout)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := listen(cfg.Listen)
		if err != nil {
			t.Fatal(err)
		}
		base := "http://" + ln.Addr().String()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.run(ctx, ln) }()
		waitUntil(t, "readiness", func() bool { return httpStatus(base+"/readyz") == 200 })
		if httpStatus(base+"/healthz") != 200 {
			t.Error("/healthz not OK")
		}
		waitUntil(t, "the records", func() bool {
			return metricSum(base, "logagent_collector_records_total") == metricSum(base, "logagent_output_stdout_records_total") &&
				metricSum(base, "logagent_collector_lag_bytes") == 0 && metricSum(base, "logagent_collector_files_tailed") == 3
		})
		waitUntil(t, "every record", func() bool { return strings.Count(stdout.String(), "\n") >= want })
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run: %v", err)
			}
		case <-time.After(cfg.ShutdownTimeout + 5*time.Second):
			t.Fatal("shutdown took longer than shutdown_timeout")
		}
		return stdout.String()
	}

	out := runOnce(18)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 18 {
		t.Fatalf("%d records, want 18", len(lines))
	}
	var rec struct {
		Tag    string `json:"tag"`
		Time   string `json:"time"`
		Record struct {
			Log        string            `json:"log"`
			Stream     string            `json:"stream"`
			Kubernetes map[string]string `json:"kubernetes"`
		} `json:"record"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("record is not JSON: %v: %s", err, lines[0])
	}
	if !strings.HasPrefix(rec.Tag, "kube.var.log.containers.") || rec.Record.Kubernetes["host"] != "node-a" || rec.Record.Kubernetes["namespace_name"] == "" {
		t.Errorf("record shape: %s", lines[0])
	}
	if _, err := time.Parse(time.RFC3339Nano, rec.Time); err != nil {
		t.Errorf("time %q: %v", rec.Time, err)
	}
	if _, err := os.Stat(filepath.Join(root, "state", "checkpoints.json")); err != nil {
		t.Fatalf("no checkpoint after shutdown: %v", err)
	}
	if again := runOnce(0); strings.TrimSpace(again) != "" {
		t.Errorf("restart sent records again:\n%s", again)
	}
}

func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
