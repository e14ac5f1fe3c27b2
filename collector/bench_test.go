package collector

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkTailParse reads a node's worth of logs through discovery, tailing,
// parsing and batching into a sink that acknowledges at once. It uses
// ../shared/bench/genlogs.py data when GENLOGS names the script, else writes
// its own. Reported per CPU-second of the process (user+sys), since the
// machine may be shared.
func BenchmarkTailParse(b *testing.B) {
	root, records, size := benchLogs(b)
	b.SetBytes(size)
	b.ReportAllocs()
	var cpu time.Duration
	for i := 0; b.Loop(); i++ {
		state := b.TempDir()
		var got atomic.Int64
		cfg := DefaultConfig()
		cfg.LogGlob = filepath.Join(root, "containers", "*.log")
		cfg.StateDir = state
		cfg.PollInterval = 10 * time.Millisecond
		c, err := New(cfg, SinkFunc(func(_ context.Context, bt *Batch) error {
			got.Add(int64(len(bt.Records)))
			bt.Ack()
			return nil
		}), nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		before := cpuTime()
		go func() { defer close(done); c.Run(ctx) }()
		for got.Load() < records {
			time.Sleep(time.Millisecond)
		}
		cpu += cpuTime() - before
		cancel()
		<-done
		if got.Load() != records {
			b.Fatalf("got %d records, want %d", got.Load(), records)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(records)*n/cpu.Seconds(), "records/cpu-s")
	b.ReportMetric(float64(size)*n/cpu.Seconds()/1e6, "MB/cpu-s")
	b.ReportMetric(0, "ns/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchLogs returns a kubelet-layout log tree, its record count and size.
func benchLogs(b *testing.B) (string, int64, int64) {
	b.Helper()
	root := b.TempDir()
	if script := os.Getenv("GENLOGS"); script != "" {
		args := []string{script, root, "--pods", "20", "--lines", envOr("GENLOGS_LINES", "50000")}
		if out, err := exec.Command("python3", args...).CombinedOutput(); err != nil {
			b.Fatalf("genlogs: %v\n%s", err, out)
		}
		var m struct{ Records, Bytes int64 }
		data, err := os.ReadFile(filepath.Join(root, "manifest.json"))
		if err != nil {
			b.Fatal(err)
		}
		if err := json.Unmarshal(data, &m); err != nil {
			b.Fatal(err)
		}
		return root, m.Records, m.Bytes
	}
	// Without genlogs: 20 containers of mixed plain and JSON lines with a
	// long record split into 16 KiB pieces every 200 lines.
	var records, size int64
	long := strings.Repeat("x", 40000)
	ts := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for p := range 20 {
		dir := filepath.Join(root, "pods", fmt.Sprintf("ns%d_pod%d_uid%d", p%5, p, p), "main")
		os.MkdirAll(dir, 0o755)
		os.MkdirAll(filepath.Join(root, "containers"), 0o755)
		var sb strings.Builder
		for i := range 20000 {
			stamp := ts.Add(time.Duration(i) * time.Microsecond).Format(time.RFC3339Nano)
			switch {
			case i%200 == 199:
				for k := 0; k < len(long); k += 16384 {
					tag := "P"
					if k+16384 >= len(long) {
						tag = "F"
					}
					fmt.Fprintf(&sb, "%s stdout %s %s\n", stamp, tag, long[k:min(k+16384, len(long))])
				}
			case i%2 == 0:
				fmt.Fprintf(&sb, `%s stdout F {"level":"info","msg":"request served","latency_ms":%d,"status":200,"trace_id":"%032x","seq":%d}`+"\n", stamp, i%900, i, i)
			default:
				fmt.Fprintf(&sb, "%s stderr F connection pool worker queue shard replica leader follower commit seq=%d\n", stamp, i)
			}
			records++
		}
		path := filepath.Join(dir, "0.log")
		os.WriteFile(path, []byte(sb.String()), 0o644)
		size += int64(sb.Len())
		os.Symlink(path, filepath.Join(root, "containers", fmt.Sprintf("pod%d_ns%d_main-%064x.log", p, p%5, p)))
	}
	return root, records, size
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
