package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// demoPod is one container whose logs the demo writes in the kubelet layout.
type demoPod struct {
	namespace, pod, uid, container, format string
}

var demoPods = []demoPod{
	{"default", "web-7d4b9c-x2x9k", "6f1c2a4e-0b7a-4c1e-9a53-1d2e3f4a5b6c", "nginx", "cri"},
	{"payments", "api-0", "0c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f", "api", "cri"},
	{"kube-system", "dns-5f6g7", "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", "coredns", "docker"},
}

// demoCmd writes sample container logs into a temporary directory, runs the
// agent on them with the stdout output, rotates one file while it runs, waits
// until every record came out, and prints the counts from the agent's own
// /metrics endpoint.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root, err := os.MkdirTemp("", "logagent-demo-")
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	defer os.RemoveAll(root)
	want, err := writeDemoLogs(root)
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	fmt.Fprintf(stderr, "demo: wrote %d records for %d containers under %s\n", want, len(demoPods), root)

	cfg, err := loadConfig("logagent demo", append([]string{
		"--log-glob", filepath.Join(root, "containers", "*.log"),
		"--state-dir", filepath.Join(root, "state"),
		"--node-name", "demo-node", "--output", "stdout", "--enrich=false",
		"--listen", "127.0.0.1:0", "--log-format", "text", "--log-level", "warn",
	}, args...), func(string) string { return "" })
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 2
	}
	cfg.Collector.RotateWait = 200 * time.Millisecond
	log := newLogger(cfg.Log, stderr)
	a, err := newAgent(cfg, log, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	ln, err := listen(cfg.Listen)
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	base := "http://" + ln.Addr().String()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.run(runCtx, ln) }()

	// Once the agent has read what is there, rotate the first container's
	// file the way the kubelet does (rename, then a new 0.log), and keep writing.
	deadline := time.Now().Add(30 * time.Second)
	for metricSum(base, "logagent_output_stdout_records_total") < float64(want) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	more, err := rotateDemoLog(root, demoPods[0])
	if err != nil {
		stop()
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	want += more

	var got float64
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if got = metricSum(base, "logagent_output_stdout_records_total"); got >= float64(want) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	summary := []string{
		"logagent_collector_files_tailed",
		"logagent_collector_records_total",
		"logagent_collector_bytes_total",
		"logagent_collector_partial_joins_total",
		"logagent_collector_rotations_total",
		"logagent_collector_parse_errors_total",
		"logagent_output_stdout_records_total",
	}
	fmt.Fprintf(stdout, "\n--- logagent demo: counts from %s/metrics ---\n", base)
	for _, name := range summary {
		fmt.Fprintf(stdout, "%-45s %g\n", name, metricSum(base, name))
	}
	stop()
	if err := <-done; err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	if got < float64(want) {
		fmt.Fprintf(stdout, "demo: FAILED: %g of %d records came out\n", got, want)
		return 1
	}
	fmt.Fprintf(stdout, "demo: all %d records written came out, with their pod's identity\n", want)
	return 0
}

func demoLine(p demoPod, t time.Time, stream, tag, msg string) string {
	if p.format == "docker" {
		if tag == "F" {
			msg += "\n"
		}
		b, _ := json.Marshal(map[string]string{"log": msg, "stream": stream, "time": t.UTC().Format(time.RFC3339Nano)})
		return string(b) + "\n"
	}
	return fmt.Sprintf("%s %s %s %s\n", t.UTC().Format(time.RFC3339Nano), stream, tag, msg)
}

// writeDemoLogs lays out /var/log/pods and /var/log/containers under root.
func writeDemoLogs(root string) (int, error) {
	n := 0
	now := time.Now()
	for i, p := range demoPods {
		dir := filepath.Join(root, "pods", p.namespace+"_"+p.pod+"_"+p.uid, p.container)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return 0, err
		}
		var b strings.Builder
		for j := range 5 {
			t := now.Add(time.Duration(j) * time.Millisecond)
			b.WriteString(demoLine(p, t, "stdout", "F", fmt.Sprintf(`{"level":"info","msg":"request served","seq":%d}`, j)))
			n++
		}
		// A long line the runtime split into partial pieces.
		b.WriteString(demoLine(p, now, "stderr", "P", "a long stack trace, first piece; "))
		b.WriteString(demoLine(p, now, "stderr", "F", "and its last piece"))
		n++
		if err := os.WriteFile(filepath.Join(dir, "0.log"), []byte(b.String()), 0o644); err != nil {
			return 0, err
		}
		links := filepath.Join(root, "containers")
		if err := os.MkdirAll(links, 0o755); err != nil {
			return 0, err
		}
		id := fmt.Sprintf("%064x", i+1)
		link := filepath.Join(links, p.pod+"_"+p.namespace+"_"+p.container+"-"+id+".log")
		if err := os.Symlink(filepath.Join(dir, "0.log"), link); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// rotateDemoLog appends to a container's log, renames it as the kubelet does,
// and starts a new one.
func rotateDemoLog(root string, p demoPod) (int, error) {
	live := filepath.Join(root, "pods", p.namespace+"_"+p.pod+"_"+p.uid, p.container, "0.log")
	f, err := os.OpenFile(live, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	f.WriteString(demoLine(p, time.Now(), "stdout", "F", "last line before rotation"))
	f.Close()
	if err := os.Rename(live, live+"."+time.Now().UTC().Format("20060102-150405")); err != nil {
		return 0, err
	}
	if err := os.WriteFile(live, []byte(demoLine(p, time.Now(), "stdout", "F", "first line after rotation")), 0o644); err != nil {
		return 0, err
	}
	return 2, nil
}

// metricSum scrapes the agent's /metrics and sums the samples of one metric.
func metricSum(base, name string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest != "" && rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}
