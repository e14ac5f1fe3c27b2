package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logagent/logagent/output/forwardtest"
)

// BenchmarkLongRecords is the memory case of issue 14: 100 containers each
// wrote twenty records of 1,000 KiB, split by the runtime into 16 KiB partial
// pieces, all at once. The agent binary runs as its own process as the
// DaemonSet runs it (with a soft memory limit standing in for the pod's: see benchEnv), forwarding
// to a local acking receiver. It reports the agent's peak RSS (the pod's
// limit is 128 MiB) and CPU-seconds, and fails unless every record arrived
// once, whole (joined from its pieces: none split, none sent unfinished).
func BenchmarkLongRecords(b *testing.B) {
	const containers, records, recordBytes, piece = 100, 20, 1000 << 10, 16 << 10
	bin := agentBinary(b)
	var cpu time.Duration
	var maxRSS int64
	for range b.N {
		root := b.TempDir()
		if err := writeLongRecords(root, containers, records, recordBytes, piece); err != nil {
			b.Fatal(err)
		}
		tally := &forwardtest.Tally{CountOnly: true}
		recv, err := forwardtest.Start("127.0.0.1:0", forwardtest.Config{}, tally)
		if err != nil {
			b.Fatal(err)
		}
		listen := freeAddr(b)
		args := []string{"--output", "forward", "--forward", recv.Addr(), "--log-glob", filepath.Join(root, "containers", "*.log"),
			"--state-dir", b.TempDir(), "--listen", listen, "--node-name", "node-a", "--enrich=false", "--log-level", "warn"}
		if f := os.Getenv("BENCH_CONFIG"); f != "" {
			args = append(args, "--config", f)
		}
		cmd := exec.Command(bin, args...)
		cmd.Stderr = os.Stderr
		cmd.Env = benchEnv()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		want := containers * records
		deadline := time.Now().Add(10 * time.Minute)
		for tally.Records() < want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		base := "http://" + listen
		joined := metricSum(base, "logagent_collector_partial_joins_total")
		split := metricSum(base, "logagent_collector_records_split_total")
		flushed := metricSum(base, "logagent_collector_partial_flushed_total")
		read := metricSum(base, "logagent_collector_records_total")
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("agent: %v", err)
		}
		recv.Close()
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		maxRSS = max(maxRSS, ru.Maxrss*1024)
		if got := tally.Records(); got != want || int(joined) != want || split != 0 || flushed != 0 || int(read) != want {
			b.Fatalf("%d records received, %v read, %v joined whole, %v split, %v sent unfinished; want %d received, read and joined, none split or unfinished",
				got, read, joined, split, flushed, want)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(maxRSS)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(cpu.Seconds()/n, "cpu-s/op")
	b.ReportMetric(0, "ns/op")
}

// writeLongRecords lays out containers × records CRI records of recordBytes,
// each split into piece-sized P lines and a final F line.
func writeLongRecords(root string, containers, records, recordBytes, piece int) error {
	if err := os.MkdirAll(filepath.Join(root, "containers"), 0o755); err != nil {
		return err
	}
	ts := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for c := range containers {
		dir := filepath.Join(root, "pods", fmt.Sprintf("ns_pod%d_uid%d", c, c), "app")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		live := filepath.Join(dir, "0.log")
		f, err := os.Create(live)
		if err != nil {
			return err
		}
		var sb strings.Builder
		for r := range records {
			msg := fmt.Sprintf("c%03d r%02d ", c, r) + strings.Repeat(string(rune('a'+r%26)), recordBytes-9)
			stamp := ts.Add(time.Duration(c*records+r) * time.Millisecond).Format(time.RFC3339Nano)
			sb.Reset()
			for k := 0; k < len(msg); k += piece {
				tag := "P"
				if k+piece >= len(msg) {
					tag = "F"
				}
				fmt.Fprintf(&sb, "%s stdout %s %s\n", stamp, tag, msg[k:min(k+piece, len(msg))])
			}
			if _, err := f.WriteString(sb.String()); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Symlink(live, filepath.Join(root, "containers", fmt.Sprintf("pod%d_ns_app-%064x.log", c, c+1))); err != nil {
			return err
		}
	}
	return nil
}
