package collector

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/logagent/logagent/collector/collectortest"
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
		if v := os.Getenv("BENCH_BUFFER"); v != "" { // collector.buffer_bytes, to compare
			fmt.Sscan(v, &cfg.BufferBytes)
		}
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
		c.Close() // the checkpoint saver stops before the state directory goes
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
	n, err := collectortest.Generate(b.TempDir(), 20, benchLines(), os.Getenv("GENLOGS"))
	if err != nil {
		b.Fatal(err)
	}
	return n.Root, n.Records, n.Bytes
}

// benchLines is records per container: the peers' workload (peers.md:
// 20 pods x 50,000) with genlogs data, a smaller set without.
func benchLines() int {
	if os.Getenv("GENLOGS") != "" {
		return 50000
	}
	return 20000
}
