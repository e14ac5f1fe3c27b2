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
// found and read by inotify alone (Docker's folders are watched too); and
// across a rotation while the agent is down, whose older lines are only in
// Docker's id-json.log.1 beside the live file (dockerfiles.go). Records carry
// the pod's identity from its pod folder.
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
	r := start(t, cfg, sink)
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
	r.stop()

	// Down while Docker rotates again: lines 300-399 are only in .1.
	for i, jl := range jsonLogs {
		appendFile(t, jl, numberedDockerLines(fmt.Sprint("c", i), 300, 400))
		os.Remove(jl + ".1")
		if err := os.Rename(jl, jl+".1"); err != nil {
			t.Fatal(err)
		}
		appendFile(t, jl, numberedDockerLines(fmt.Sprint("c", i), 400, 450))
	}
	r = start(t, cfg, sink)
	waitFor(t, "the lines of a rotation while the agent was down", func() bool { return sink.distinct() >= containers*450 })
	r.stop()
	for i := range containers {
		if dups := sink.expectLines(t, fmt.Sprint("c", i), 0, 450); dups > 0 {
			t.Errorf("container %d: %d duplicates", i, dups)
		}
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, s := range sink.sources {
		if s.Namespace != "default" || !strings.HasPrefix(s.Pod, "pod") || s.Container != "app" {
			t.Errorf("source %s/%s/%s, want default/pod<i>/app (from the pod folder)", s.Namespace, s.Pod, s.Container)
		}
	}
}
