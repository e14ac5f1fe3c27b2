package collector

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// While the agent is down a read file is rotated and compressed, and a new
// file may take its inode number; the compressed file is still recognised by
// its content, so it is neither read again nor taken for new, and every file
// written meanwhile is read once.
func TestCompressedWhileStoppedWithInodeReuse(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "gz", "app")
	appendFile(t, live, numberedLines("z", 0, 3000))
	cfg := n.config()
	first := newCapture()
	r := start(t, cfg, first)
	waitFor(t, "all", func() bool { return first.distinct() == 3000 })
	r.stop()

	rotated := live + ".20261126-120000"
	if err := os.Rename(live, rotated); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, numberedLines("z", 3000, 5000))
	y := live + ".20261126-120100"
	if err := os.Rename(live, y); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, numberedLines("z", 5000, 5200))
	if err := gzipFile(rotated); err != nil { // frees the first file's inode
		t.Fatal(err)
	}

	second := newCapture()
	start(t, cfg, second)
	// Rotate again right away: the next new file may reuse the freed inode.
	appendFile(t, live, numberedLines("z", 5200, 5300))
	if err := os.Rename(live, live+".20261126-120200"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, numberedLines("z", 5300, 5400))
	if err := gzipFile(y); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every new line", func() bool { return second.distinct() >= 2400 })
	if dups := second.expectLines(t, "z", 3000, 5400); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	for i := 0; i < 3000; i += 500 {
		if second.count(fmt.Sprintf("line z-%d", i)) != 0 {
			t.Fatalf("line z-%d, acknowledged before the stop, was read again", i)
		}
	}
}

// A rotation that the kubelet renamed and then compressed while the agent was
// down, with records not yet acknowledged: they are read from the .gz, from
// the checkpoint on, exactly once.
func TestRotationCompressedWhileStopped(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "gz", "app")
	appendFile(t, live, numberedLines("z", 0, 3000))
	cfg := n.config()
	cfg.ReadBytes = 16 << 10
	cfg.BufferBytes = 64 << 10
	cfg.MaxRecordBytes = 1024

	acked := runPartlyAcked(t, cfg, 2, 0)

	// While the agent is down: two rotations; the older one is compressed
	// (and its original removed), as the kubelet does.
	rotated := live + ".20261126-120000"
	if err := os.Rename(live, rotated); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, numberedLines("z", 3000, 3100))
	if err := os.Rename(live, live+".20261126-120100"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, numberedLines("z", 3100, 3200))
	if err := gzipFile(rotated); err != nil {
		t.Fatal(err)
	}

	second := newCapture()
	r2 := start(t, cfg, second)
	waitFor(t, "every unacknowledged line", func() bool { return second.distinct() == 3200-acked })
	if dups := second.expectLines(t, "z", acked, 3200); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if second.count(fmt.Sprintf("line z-%d", acked-1)) != 0 {
		t.Error("an acknowledged line was sent again")
	}
	if got := testutil.ToFloat64(r2.c.m.compressedResumed); got != 1 {
		t.Errorf("compressed_resumed_total = %v, want 1", got)
	}
	// Once acknowledged, the compressed file is done (its entry stays while it is on disk).
	waitFor(t, "the entry to go", func() bool {
		r2.c.mu.Lock()
		defer r2.c.mu.Unlock()
		done := true
		r2.c.forEachFile(func(f *file) {
			if strings.HasSuffix(f.path, ".gz") && !f.done() {
				done = false
			}
		})
		return done
	})
}

func gzipFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(path+".gz", b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Remove(path)
}
