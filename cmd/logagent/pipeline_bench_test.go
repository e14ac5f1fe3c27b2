package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/logagent/logagent/collector/collectortest"
	"github.com/logagent/logagent/output/forwardtest"
	"github.com/logagent/logagent/test/kubetest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkPipeline runs the agent binary as its own process on a node's worth
// of logs (genlogs.py data when GENLOGS names it: the workload of the peers'
// figures), enriched from a real kube-apiserver when the test tools are built,
// forwarding with acknowledgement to a local Forward receiver. It reports the
// agent process's CPU-seconds (user+sys) and peak RSS, as peers.md does.
func BenchmarkPipeline(b *testing.B) {
	bin := agentBinary(b)
	lines := 20000
	if os.Getenv("GENLOGS") != "" {
		lines = 50000
	}
	var cpu time.Duration
	var maxRSS int64
	var records, size int64
	enriched := false
	for range b.N {
		node, err := collectortest.Generate(b.TempDir(), 20, lines, os.Getenv("GENLOGS"))
		if err != nil {
			b.Fatal(err)
		}
		records, size = node.Records, node.Bytes
		args := []string{"--output", "forward", "--log-glob", node.Glob(), "--state-dir", b.TempDir(),
			"--listen", "127.0.0.1:0", "--node-name", "node-a", "--log-level", "warn"}
		if _, err := kubetest.Bin("kube-apiserver"); err == nil && !testing.Short() {
			kubeconfig := benchCluster(b, node)
			args = append(args, "--kubeconfig", kubeconfig)
			enriched = true
		} else {
			args = append(args, "--enrich=false")
		}
		if f := os.Getenv("BENCH_CONFIG"); f != "" {
			args = append(args, "--config", f) // to compare settings
		}
		tally := &forwardtest.Tally{CountOnly: true}
		recv, err := forwardtest.Start("127.0.0.1:0", forwardtest.Config{}, tally)
		if err != nil {
			b.Fatal(err)
		}
		args = append(args, "--forward", recv.Addr())
		cmd := exec.Command(bin, args...)
		cmd.Stderr = os.Stderr
		cmd.Env = benchEnv()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.Now().Add(10 * time.Minute)
		for int64(tally.Records()) < records {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				b.Fatalf("only %d of %d records acknowledged", tally.Records(), records)
			}
			select {
			case err := <-exited: // a configuration it refused, say: its stderr says why
				b.Fatalf("the agent exited (%v) with %d of %d records acknowledged", err, tally.Records(), records)
			case <-time.After(5 * time.Millisecond):
			}
		}
		// The agent's own peak (VmHWM), read while it runs: wait4's
		// ru_maxrss would also count this process's peak before the fork,
		// as Linux carries it across exec.
		maxRSS = max(maxRSS, procHWM(b, cmd.Process.Pid))
		cmd.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			b.Fatalf("agent: %v", err)
		}
		recv.Close()
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		if got := int64(tally.Records()); got != records {
			b.Logf("%d records received for %d written (%d duplicates)", got, records, got-records)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(records)*n/cpu.Seconds(), "records/cpu-s")
	b.ReportMetric(float64(size)*n/cpu.Seconds()/1e6, "MB/cpu-s")
	b.ReportMetric(cpu.Seconds()/n/float64(records)*1e6, "cpu-s/1M-records")
	b.ReportMetric(float64(maxRSS)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d records, %d bytes per run; enriched from a real API server: %v", records, size, enriched)
}

// benchCluster starts a real API server, creates the node's pods bound to
// node-a, moves their logs to the uids the server gave them, and returns an
// admin kubeconfig.
func benchCluster(b *testing.B, node *collectortest.Node) string {
	c := kubetest.Start(b)
	ctx := context.Background()
	made := map[string]bool{}
	for i, p := range node.Pods {
		if !made[p.Namespace] {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.Namespace, Labels: map[string]string{"team": "bench"}}}
			if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				b.Fatal(err)
			}
			made[p.Namespace] = true
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels,
				Annotations: map[string]string{"example.com/owner": "bench"}},
			Spec: corev1.PodSpec{NodeName: "node-a"},
		}
		for _, cn := range p.Containers {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: cn, Image: "registry.example/app:1.0"})
		}
		got, err := c.Client.CoreV1().Pods(p.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if err := node.SetUID(i, string(got.UID)); err != nil {
			b.Fatal(fmt.Errorf("move logs to uid %s: %w", got.UID, err))
		}
	}
	return c.Kubeconfig
}
