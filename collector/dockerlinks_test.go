package collector

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// numberedDockerLines returns Docker json-file lines "line <prefix>-<i>".
func numberedDockerLines(prefix string, from, to int) string {
	var b strings.Builder
	ts := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, `{"log":"line %s-%d\n","stream":"stdout","time":%q}`+"\n", prefix, i, ts.Add(time.Duration(i)*time.Microsecond).Format(time.RFC3339Nano))
	}
	return b.String()
}

// TestCriDockerdLinks: on a node with cri-dockerd the kubelet's
// /var/log/pods/<ns>_<pod>_<uid>/<container>/0.log is itself a link to
// Docker's /var/lib/docker/containers/<id>/<id>-json.log. Every line written
// there, before and after the agent started, and across Docker's own
// rotation (id-json.log renamed to id-json.log.1, a new id-json.log), arrives,
// found and read by inotify alone (Docker's folders are watched too).
func TestCriDockerdLinks(t *testing.T) {
	n := newNode(t)
	docker := filepath.Join(n.root, "docker", "containers")
	const containers = 3
	var jsonLogs []string
	for i := range containers {
		id := fmt.Sprintf("%064x", 0xd0c0+i)
		ddir := filepath.Join(docker, id)
		if err := os.MkdirAll(ddir, 0o755); err != nil {
			t.Fatal(err)
		}
		jl := filepath.Join(ddir, id+"-json.log")
		appendFile(t, jl, numberedDockerLines(fmt.Sprint("c", i), 0, 100))
		podDir := filepath.Join(n.root, "pods", fmt.Sprintf("default_pod%d_uid-%d", i, i), "app")
		if err := os.MkdirAll(podDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(jl, filepath.Join(podDir, "0.log")); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(n.root, "containers", fmt.Sprintf("pod%d_default_app-%s.log", i, id))
		if err := os.Symlink(filepath.Join(podDir, "0.log"), link); err != nil {
			t.Fatal(err)
		}
		jsonLogs = append(jsonLogs, jl)
	}
	cfg := eventDriven(n)
	cfg.LogRoots = []string{filepath.Join(n.root, "pods"), docker}
	sink := newCapture()
	start(t, cfg, sink)
	waitFor(t, "the lines written before start", func() bool { return sink.distinct() >= containers*100 })
	for i, jl := range jsonLogs {
		appendFile(t, jl, numberedDockerLines(fmt.Sprint("c", i), 100, 200))
	}
	waitFor(t, "every line", func() bool { return sink.distinct() >= containers*200 })
	for i, jl := range jsonLogs {
		if err := os.Rename(jl, jl+".1"); err != nil {
			t.Fatal(err)
		}
		appendFile(t, jl, numberedDockerLines(fmt.Sprint("c", i), 200, 300))
	}
	waitFor(t, "the lines after Docker's rotation", func() bool { return sink.distinct() >= containers*300 })
	for i := range containers {
		if dups := sink.expectLines(t, fmt.Sprint("c", i), 0, 300); dups > 0 {
			t.Errorf("container %d: %d duplicates", i, dups)
		}
	}
}
