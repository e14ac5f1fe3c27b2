package output

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/logagent/logagent/collector"
	"github.com/logagent/logagent/output/forwardtest"
	"github.com/tinylib/msgp/msgp"
)

const receiverEnv = "LOGAGENT_FORWARDTEST_RECEIVER"

// TestMain doubles as a counting receiver process for the throughput
// benchmark, so that the benchmark's CPU time is the client's alone.
func TestMain(m *testing.M) {
	if os.Getenv(receiverEnv) == "1" {
		runReceiverProcess()
		return
	}
	os.Exit(m.Run())
}

func runReceiverProcess() {
	r, err := forwardtest.Start("127.0.0.1:0", forwardtest.Config{}, &forwardtest.Tally{CountOnly: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(r.Addr())
	io.Copy(io.Discard, os.Stdin) // until the benchmark closes stdin
	r.Close()
}

// startReceiverProcess runs a counting receiver in a child process.
func startReceiverProcess(b *testing.B) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), receiverEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("receiver process: %v", err)
	}
	return strings.TrimSpace(line)
}

// benchKube is a pod's full metadata map as enrich produces it (~420 bytes).
func benchKube(i int) []byte {
	b := msgp.AppendMapHeader(nil, 10)
	for _, kv := range [][2]string{
		{"namespace_name", fmt.Sprintf("team-%d", i)},
		{"pod_name", fmt.Sprintf("checkout-7d9f8b6c5d-%05d", i)},
		{"pod_id", "3f2a8c1e-5b7d-4e9a-8f6c-2d1b0a9e8c7f"},
		{"container_name", "checkout"},
		{"container_id", "containerd://4b9c2f1e8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c"},
		{"container_image", "registry.example.com/shop/checkout:v1.42.3"},
		{"host", "node-017"},
		{"pod_ip", "10.42.17.123"},
	} {
		b = msgp.AppendString(b, kv[0])
		b = msgp.AppendString(b, kv[1])
	}
	b = msgp.AppendString(b, "labels")
	b = msgp.AppendMapHeader(b, 3)
	for _, kv := range [][2]string{{"app", "checkout"}, {"pod-template-hash", "7d9f8b6c5d"}, {"tier", "backend"}} {
		b = msgp.AppendString(b, kv[0])
		b = msgp.AppendString(b, kv[1])
	}
	b = msgp.AppendString(b, "owner")
	b = msgp.AppendMapHeader(b, 2)
	b = msgp.AppendString(b, "kind")
	b = msgp.AppendString(b, "ReplicaSet")
	b = msgp.AppendString(b, "name")
	b = msgp.AppendString(b, "checkout-7d9f8b6c5d")
	return b
}

func benchRecords(n int) []collector.Record {
	recs := make([]collector.Record, n)
	now := time.Now().UnixNano()
	for i := range recs {
		line := fmt.Sprintf(`{"level":"info","ts":"2026-11-26T10:00:00.%06dZ","msg":"request served","method":"GET","path":"/api/v1/orders/%d","status":200,"duration_ms":%d,"bytes":1532}`, i, i, i%97)
		recs[i] = collector.Record{Time: now + int64(i), Stream: collector.Stream(i % 2), Log: []byte(line)}
	}
	return recs
}

// BenchmarkEncodeEntry: one record into a chunk buffer (the per-record cost
// of Send without locking and batching).
func BenchmarkEncodeEntry(b *testing.B) {
	recs := benchRecords(1000)
	kube := benchKube(1)
	var enc encoder
	buf := make([]byte, 0, 2<<20)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if len(buf) > 1<<20 {
			buf = buf[:0]
		}
		buf = enc.appendEntry(buf, &recs[i%len(recs)], kube)
	}
	b.SetBytes(int64(len(buf)) / int64(min(b.N, 1000)))
}

// BenchmarkSendEncode: Send's path for batches of 100 records over 20
// sources, chunks sealed at 1 MiB and released (no network).
func BenchmarkSendEncode(b *testing.B) {
	cfg := DefaultForwardConfig()
	cfg.Servers = []Server{{Address: "127.0.0.1:1"}}
	f, err := NewForward(cfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	recs := benchRecords(100)
	var srcs []*collector.Source
	for i := range 20 {
		s := testSource(i)
		s.Kubernetes = benchKube(i)
		srcs = append(srcs, s)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(recs) {
		batch := collector.NewBatch(srcs[(i/len(recs))%len(srcs)], recs, 0, nil)
		f.mu.Lock()
		f.appendBatchLocked(batch, time.Now())
		for f.ready.len() > 0 { // stand-in for delivery
			c := f.ready.pop()
			c.state = chunkDone
			f.releaseLocked(c)
			f.pendingChunks--
		}
		f.mu.Unlock()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/record")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkForwardAcked: records acknowledged by a counting receiver in
// another process, per CPU-second of this (client) process. One b.N is one record.
func BenchmarkForwardAcked(b *testing.B) {
	for _, gz := range []bool{false, true} {
		b.Run(map[bool]string{false: "packed", true: "gzip"}[gz], func(b *testing.B) {
			addr := startReceiverProcess(b)
			cfg := DefaultForwardConfig()
			cfg.Servers = []Server{{Address: addr}}
			cfg.Gzip = gz
			f, err := NewForward(cfg, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); f.Run(ctx) }()
			defer func() { cancel(); <-done }()

			recs := benchRecords(500)
			var srcs []*collector.Source
			for i := range 20 {
				s := testSource(i)
				s.Kubernetes = benchKube(i)
				srcs = append(srcs, s)
			}
			var acked atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			cpu0, t0 := cpuTime(), time.Now()
			for i := 0; i < b.N; i += len(recs) {
				n := min(len(recs), b.N-i)
				batch := collector.NewBatch(srcs[(i/len(recs))%len(srcs)], recs[:n], 0, func() { acked.Add(int64(n)) })
				if err := f.Send(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Minute)
			defer ccancel()
			if err := f.Close(cctx); err != nil {
				b.Fatal(err)
			}
			cpu, wall := cpuTime()-cpu0, time.Since(t0)
			b.StopTimer()
			if got := acked.Load(); got != int64(b.N) {
				b.Fatalf("%d of %d records acknowledged", got, b.N)
			}
			b.ReportMetric(float64(b.N)/cpu.Seconds(), "records/cpu-s")
			b.ReportMetric(float64(b.N)/wall.Seconds(), "records/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/record")
			var ru syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			b.ReportMetric(float64(ru.Maxrss)/1024, "peak-rss-MiB")
		})
	}
}
