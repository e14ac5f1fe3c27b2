package main

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// buildAgent builds the agent binary as make build does, without the race
// detector (tests that run it as a process are about the process; the race
// detector's slowdown would only stretch them), with extra go build args.
func buildAgent(t testing.TB, extra ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "logagent")
	args := append([]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", bin}, extra...)
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}
