package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// buildAgent builds the agent binary as make build does (static: without
// cgo the C library and its loader are not mapped, 1.6 MiB less resident),
// without the race detector (tests that run it as a process are about the
// process; the race detector's slowdown would only stretch them), with extra
// go build args.
func buildAgent(t testing.TB, extra ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "logagent")
	args := append([]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", bin}, extra...)
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// benchEnv is the environment of an agent a benchmark runs as the DaemonSet
// would. In a pod the agent sets its own soft memory limit from its cgroup
// (memory_limit_ratio 0.3 of the DaemonSet's 128 MiB: 38.4 MiB, see
// memlimit.go); a benchmark's agent has no container limit, so GOMEMLIMIT
// stands in for it, a little above (40 MiB), unless GOMEMLIMIT is set.
func benchEnv() []string {
	env := os.Environ()
	if os.Getenv("GOMEMLIMIT") == "" {
		env = append(env, "GOMEMLIMIT=40MiB")
	}
	return env
}

// startProcess starts cmd (the agent as its own process) and returns a
// channel closed once it has exited, and stop, which sends SIGTERM and waits
// for it to exit (killing it after 30 s).
func startProcess(tb testing.TB, cmd *exec.Cmd) (exited <-chan struct{}, stop func()) {
	tb.Helper()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	return done, func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
}
