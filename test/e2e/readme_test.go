package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/logagent/logagent/collector/collectortest"
)

// readmeBlock returns the README's ```yaml block whose first line is heading.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1) {
		if strings.HasPrefix(m[1], heading+"\n") {
			return m[1]
		}
	}
	t.Fatalf("README.md has no ```yaml block starting with %q", heading)
	return ""
}

// TestREADMEOTelCollectorReceiver: the README's OpenTelemetry Collector
// configuration (its receivers.fluentforward, decoded as the Collector does)
// and the agent's configuration beside it, run for real: the agent binary
// tails a node's worth of logs and every record reaches the receiver.
func TestREADMEOTelCollectorReceiver(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the agent and the OpenTelemetry Collector's receiver: skipped with -short")
	}
	otelConfig := readmeBlock(t, "# otel-collector.yaml")
	agentConfig := readmeBlock(t, "# logagent.yaml, for the OpenTelemetry Collector")
	dir := t.TempDir()

	// The receiver listens on loopback, not the README's 0.0.0.0:8006.
	c := &counter{}
	addr := freeAddr(t)
	otelFile := filepath.Join(dir, "otel-collector.yaml")
	if err := os.WriteFile(otelFile, []byte(otelConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startOTel(t, addr, c, "-config", otelFile)

	// The agent's file as the README has it, with the receiver's address.
	const readmeAddr = "otel-collector.observability.svc:8006"
	if !strings.Contains(agentConfig, readmeAddr) {
		t.Fatalf("the README's agent configuration no longer names %s:\n%s", readmeAddr, agentConfig)
	}
	agentFile := filepath.Join(dir, "logagent.yaml")
	if err := os.WriteFile(agentFile, []byte(strings.Replace(agentConfig, readmeAddr, addr, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	node, err := collectortest.Generate(filepath.Join(dir, "node"), 3, 500, "")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "logagent")
	build := exec.Command("go", "build", "-o", bin, "./cmd/logagent")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the agent: %v\n%s", err, out)
	}
	agent := exec.Command(bin, "--config", agentFile, "--enrich=false", "--log-glob", node.Glob(),
		"--state-dir", filepath.Join(dir, "state"), "--listen", "127.0.0.1:0", "--log-format", "text")
	var logs strings.Builder
	agent.Stderr = &logs
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	defer func() {
		agent.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			agent.Process.Kill()
			<-exited
		}
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for int64(c.total()) < node.Records {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the agent exited (%v) after %d of %d records:\n%s", err, c.total(), node.Records, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records reached the receiver within 2m", c.total(), node.Records)
		}
		time.Sleep(50 * time.Millisecond) // poll the receiver's count
	}
	p.stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bad) > 0 {
		t.Errorf("receiver output: %v", c.bad[:min(3, len(c.bad))])
	}
	if int64(c.records) != node.Records {
		t.Errorf("the receiver got %d records, the node has %d", c.records, node.Records)
	}
}
