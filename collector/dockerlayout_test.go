package collector

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dockerJSONLines returns json-file lines "line <prefix>-<i>" for i in [from, to).
func dockerJSONLines(prefix string, from, to int) string {
	var b strings.Builder
	ts := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for i := from; i < to; i++ {
		line, _ := json.Marshal(map[string]string{
			"log":    fmt.Sprintf("line %s-%d\n", prefix, i),
			"stream": "stdout",
			"time":   ts.Add(time.Duration(i) * time.Microsecond).Format(time.RFC3339Nano),
		})
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestDockerCRIDockerdLayout: on a Docker node (cri-dockerd), the kubelet's
// /var/log/containers link points at /var/log/pods/<ns>_<pod>_<uid>/<c>/0.log,
// itself a link to Docker's /var/lib/docker/containers/<id>/<id>-json.log;
// Docker rotates that file itself (renamed to <id>-json.log.1). Every line
// is read, across a rotation, with the pod identity from the pod folder.
func TestDockerCRIDockerdLayout(t *testing.T) {
	n := newNode(t)
	id := fmt.Sprintf("%064x", 7)
	docker := filepath.Join(n.root, "docker", "containers", id)
	if err := os.MkdirAll(docker, 0o755); err != nil {
		t.Fatal(err)
	}
	jsonLog := filepath.Join(docker, id+"-json.log")
	appendFile(t, jsonLog, dockerJSONLines("d", 0, 100))
	podLog := n.container("shop", "web", "app") // .../0.log, the link's target
	if err := os.Symlink(jsonLog, podLog); err != nil {
		t.Fatal(err)
	}
	cfg := n.config()
	cfg.LogRoots = []string{filepath.Join(n.root, "pods"), filepath.Join(n.root, "docker", "containers")}
	sink := newCapture()
	r := start(t, cfg, sink)
	waitFor(t, "the first 100 lines", func() bool { return sink.distinct() >= 100 })

	// Docker's rotation: rename, then a new file under the old name.
	appendFile(t, jsonLog, dockerJSONLines("d", 100, 150))
	if err := os.Rename(jsonLog, jsonLog+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, jsonLog, dockerJSONLines("d", 150, 300))
	waitFor(t, "300 lines", func() bool { return sink.distinct() >= 300 })
	if dups := sink.expectLines(t, "d", 0, 300); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	r.stop()

	// Down while Docker rotates: the lines written before the rotation are
	// in <id>-json.log.1, beside the live file in Docker's folder.
	appendFile(t, jsonLog, dockerJSONLines("d", 300, 400))
	os.Remove(jsonLog + ".1")
	if err := os.Rename(jsonLog, jsonLog+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, jsonLog, dockerJSONLines("d", 400, 450))
	r = start(t, cfg, sink)
	waitFor(t, "450 lines", func() bool { return sink.distinct() >= 450 })
	if dups := sink.expectLines(t, "d", 0, 450); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	r.stop()

	// The pod's identity comes from the pod folder, not Docker's.
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.sources) == 0 {
		t.Fatal("no sources recorded")
	}
	for _, s := range sink.sources {
		if s.Namespace != "shop" || s.Pod != "web" || s.Container != "app" {
			t.Errorf("source %+v, want shop/web/app", *s)
		}
	}
}
