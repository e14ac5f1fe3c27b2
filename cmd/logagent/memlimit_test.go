package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// TestMemoryLimitHelper is the child of TestMemoryLimitFromCgroup: it sets
// the limit as run does and prints it.
func TestMemoryLimitHelper(t *testing.T) {
	if os.Getenv("LOGAGENT_MEMLIMIT_HELPER") == "" {
		t.Skip("run by TestMemoryLimitFromCgroup")
	}
	setMemoryLimit(defaultConfig().MemoryLimitRatio, os.Getenv, slog.New(slog.NewTextHandler(io.Discard, nil)))
	fmt.Printf("soft limit %d\n", debug.SetMemoryLimit(-1))
}

// TestMemoryLimitFromCgroup runs a process in a new memory cgroup with a
// 256 MiB limit (cgroup v1 or v2; needs root and a writable cgroup
// filesystem, else skips) and checks that its Go soft limit is
// memory_limit_ratio of it; with GOMEMLIMIT set, that it is left alone.
func TestMemoryLimitFromCgroup(t *testing.T) {
	if testing.Short() {
		t.Skip("creates a cgroup: skipped with -short")
	}
	dir, limitFile := "", ""
	name := fmt.Sprintf("logagent-test-%d", os.Getpid())
	switch {
	case fileExists("/sys/fs/cgroup/memory/memory.limit_in_bytes"): // v1
		dir, limitFile = filepath.Join("/sys/fs/cgroup/memory", name), "memory.limit_in_bytes"
	case fileExists("/sys/fs/cgroup/cgroup.subtree_control"): // v2
		ctl, _ := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control")
		if !strings.Contains(string(ctl), "memory") {
			t.Skip("cgroup v2 without the memory controller delegated")
		}
		dir, limitFile = filepath.Join("/sys/fs/cgroup", name), "memory.max"
	default:
		t.Skip("no cgroup memory controller here")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot create a cgroup: %v", err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	const limit = 256 << 20
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.Itoa(limit)), 0o644); err != nil {
		t.Skipf("cannot set the cgroup's limit: %v", err)
	}
	ratio := defaultConfig().MemoryLimitRatio
	for _, tc := range []struct {
		env  string
		want int64
	}{
		{"", int64(limit * ratio)},
		{"GOMEMLIMIT=100MiB", 100 << 20},
	} {
		// The shell moves itself into the cgroup, then becomes the test binary.
		cmd := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && shift && exec "$@"`, "sh", dir,
			os.Args[0], "-test.run=^TestMemoryLimitHelper$", "-test.v")
		cmd.Env = append(os.Environ(), "LOGAGENT_MEMLIMIT_HELPER=1", "GOMEMLIMIT=")
		if tc.env != "" {
			cmd.Env = append(cmd.Env, tc.env)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper: %v\n%s", err, out)
		}
		if want := fmt.Sprintf("soft limit %d\n", tc.want); !strings.Contains(string(out), want) {
			t.Errorf("%s: want %q in\n%s", tc.env, want, out)
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
