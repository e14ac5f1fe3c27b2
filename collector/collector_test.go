package collector

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFileAppearingAfterStart(t *testing.T) {
	n := newNode(t)
	sink := newCapture()
	r := start(t, n.config(), sink)
	live := n.container("default", "web-1", "app")
	appendFile(t, live, numberedLines("a", 0, 100))
	waitFor(t, "100 lines", func() bool { return sink.distinct() == 100 })
	appendFile(t, live, numberedLines("a", 100, 150))
	waitFor(t, "150 lines", func() bool { return sink.distinct() == 150 })
	if dups := sink.expectLines(t, "a", 0, 150); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if got := testutil.ToFloat64(r.c.m.records.WithLabelValues("default")); got != 150 {
		t.Errorf("records_total{namespace=default} = %v, want 150", got)
	}
}

func TestRecordsCarryPathMetadata(t *testing.T) {
	n := newNode(t)
	live := n.container("payments", "api-0", "server")
	appendFile(t, live, numberedLines("m", 0, 1))
	var mu sync.Mutex
	var got *Batch
	start(t, n.config(), SinkFunc(func(_ context.Context, b *Batch) error {
		mu.Lock()
		got = b
		mu.Unlock()
		b.Ack()
		return nil
	}))
	waitFor(t, "a batch", func() bool { mu.Lock(); defer mu.Unlock(); return got != nil })
	src := got.Source
	if src.Namespace != "payments" || src.Pod != "api-0" || src.Container != "server" || src.PodUID != "uid-payments-api-0" || src.Node != "node-a" {
		t.Errorf("source = %+v", src)
	}
	if len(src.ContainerID) != 64 || !strings.HasPrefix(filepath.Base(src.Link), "api-0_payments_server-") {
		t.Errorf("container id %q, link %q", src.ContainerID, src.Link)
	}
	if string(got.Kubernetes) != string(src.Kubernetes) || len(got.Kubernetes) == 0 {
		t.Errorf("batch metadata not the source's")
	}
}

// The kubelet's rotation: rename 0.log to 0.log.<timestamp>, start a new
// 0.log, compress the older rotation and delete beyond a few, while the
// container keeps writing.
func TestRenameRotationWhileWriting(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "busy", "app")
	sink := newCapture()
	r := start(t, n.config(), sink)

	// The writer appends continuously and rotates every 200 ms for 1.5 s.
	total, rotations := 0, 0
	deadline := time.Now().Add(1500 * time.Millisecond)
	nextRotation := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		appendFile(t, live, numberedLines("r", total, total+50))
		total += 50
		if time.Now().After(nextRotation) {
			nextRotation = time.Now().Add(200 * time.Millisecond)
			rotations++
			rotated := fmt.Sprintf("%s.20261126-%06d", live, rotations)
			if err := os.Rename(live, rotated); err != nil {
				t.Fatal(err)
			}
			appendFile(t, live, "")
			// Older rotations are compressed and removed, as the kubelet does.
			old, _ := filepath.Glob(live + ".2026*")
			for _, o := range old {
				if o != rotated && !strings.HasSuffix(o, ".gz") {
					os.Rename(o, o+".gz")
				}
			}
			gz, _ := filepath.Glob(live + ".*.gz")
			for len(gz) > 2 {
				os.Remove(gz[0])
				gz = gz[1:]
			}
		}
		time.Sleep(2 * time.Millisecond) // the writer's pace, not synchronisation
	}
	t.Logf("%d lines over %d rotations", total, rotations)
	waitFor(t, "every line", func() bool { return sink.distinct() == total })
	if dups := sink.expectLines(t, "r", 0, total); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	waitFor(t, "rotations counted", func() bool {
		return testutil.ToFloat64(r.c.m.rotations.WithLabelValues("rename")) >= 1
	})
}

func TestCopyTruncate(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "ct", "app")
	appendFile(t, live, numberedLines("before", 0, 200))
	sink := newCapture()
	r := start(t, n.config(), sink)
	waitFor(t, "200 lines", func() bool { return sink.distinct() == 200 })
	if err := os.Truncate(live, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, numberedLines("after", 0, 50))
	waitFor(t, "lines after truncation", func() bool { return sink.distinct() == 250 })
	sink.expectLines(t, "before", 0, 200)
	sink.expectLines(t, "after", 0, 50)
	if got := testutil.ToFloat64(r.c.m.rotations.WithLabelValues("truncate")); got != 1 {
		t.Errorf("truncate rotations = %v, want 1", got)
	}
}

// A file deleted while being read is drained through the open descriptor.
func TestFileDeletedWhileReading(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "del", "app")
	appendFile(t, live, numberedLines("d", 0, 20000))
	cfg := n.config()
	cfg.ReadBytes = 8 << 10
	cfg.BufferBytes = 16 << 10
	cfg.MaxRecordBytes = 1024
	sink := newCapture()
	sink.setHold(true)
	start(t, cfg, sink)
	waitFor(t, "the budget to fill", func() bool { return sink.heldBatches() >= 1 })
	if err := os.Remove(live); err != nil {
		t.Fatal(err)
	}
	sink.setHold(false)
	sink.release(-1)
	waitFor(t, "every line", func() bool { return sink.distinct() == 20000 })
	sink.expectLines(t, "d", 0, 20000)
}

// A symlink made before its target: the target is read when it appears.
func TestSymlinkBeforeTarget(t *testing.T) {
	n := newNode(t)
	dir := filepath.Join(n.root, "pods", "default_early_uid-1", "app")
	link := filepath.Join(n.root, "containers", fmt.Sprintf("early_default_app-%064x.log", 7))
	if err := os.Symlink(filepath.Join(dir, "0.log"), link); err != nil {
		t.Fatal(err)
	}
	sink := newCapture()
	start(t, n.config(), sink)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	appendFile(t, filepath.Join(dir, "0.log"), numberedLines("s", 0, 10))
	waitFor(t, "the target's lines", func() bool { return sink.distinct() == 10 })
}

// Kill and restart: records acknowledged before the stop are not sent again;
// the unacknowledged tail is, and nothing is lost.
func TestRestartResumesFromCheckpoint(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "cp", "app")
	appendFile(t, live, numberedLines("c", 0, 5000))
	cfg := n.config()
	cfg.ReadBytes = 16 << 10
	cfg.BufferBytes = 64 << 10
	cfg.MaxRecordBytes = 1024

	// Acknowledge the first two batches only, out of order.
	acked := runPartlyAcked(t, cfg, 3, 1, 0)

	second := newCapture()
	start(t, cfg, second)
	appendFile(t, live, numberedLines("c", 5000, 5100))
	waitFor(t, "the rest", func() bool { return second.count("line c-5099") == 1 })
	// The second run starts right after the acknowledged records.
	for i := 0; i < acked; i++ {
		if second.count(fmt.Sprintf("line c-%d", i)) != 0 {
			t.Fatalf("acknowledged line c-%d was sent again", i)
		}
	}
	for i := acked; i < 5100; i++ {
		if second.count(fmt.Sprintf("line c-%d", i)) != 1 {
			t.Fatalf("line c-%d arrived %d times after the restart", i, second.count(fmt.Sprintf("line c-%d", i)))
		}
	}
}

// A file rotated while the agent was down is drained after the restart, and
// the new live file is read from its head.
func TestRotationWhileStopped(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "down", "app")
	appendFile(t, live, numberedLines("x", 0, 100))
	cfg := n.config()
	sink := newCapture()
	r := start(t, cfg, sink)
	waitFor(t, "100 lines", func() bool { return sink.distinct() == 100 })
	waitFor(t, "a checkpoint at the end", func() bool {
		f := r.c.fileAt(live)
		off, _ := f.prog.offset()
		return off == fileSize(t, live)
	})
	r.stop()

	appendFile(t, live, numberedLines("x", 100, 150)) // written while the agent is down
	if err := os.Rename(live, live+".20261126-120000"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, numberedLines("x", 150, 200))

	second := newCapture()
	start(t, cfg, second)
	waitFor(t, "the missed lines", func() bool { return second.distinct() == 100 })
	if dups := second.expectLines(t, "x", 100, 200); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if second.count("line x-99") != 0 {
		t.Error("a line acknowledged before the stop was sent again")
	}
}

// An inode reused by a new file at the same path is not mistaken for the old one.
func TestInodeReuse(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "reuse", "app")
	appendFile(t, live, numberedLines("old", 0, 300))
	cfg := n.config()
	sink := newCapture()
	r := start(t, cfg, sink)
	waitFor(t, "old lines", func() bool { return sink.distinct() == 300 })
	r.stop()
	oldID := mustID(t, live)

	if err := os.Remove(live); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, numberedLines("new", 0, 400)) // longer than the old file, so an offset would fit
	if mustID(t, live) != oldID {
		t.Logf("the file system gave a new inode; the test still checks the new file is read whole")
	}
	second := newCapture()
	start(t, cfg, second)
	waitFor(t, "new lines", func() bool { return second.distinct() == 400 })
	second.expectLines(t, "new", 0, 400)
}

func TestReadFromTail(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "tail", "app")
	appendFile(t, live, numberedLines("old", 0, 50))
	cfg := n.config()
	cfg.ReadFrom = "tail"
	sink := newCapture()
	r := start(t, cfg, sink)
	waitFor(t, "the file to be tailed", func() bool { return testutil.ToFloat64(r.c.m.filesTailed) == 1 })
	appendFile(t, live, numberedLines("new", 0, 10))
	waitFor(t, "new lines", func() bool { return sink.distinct() == 10 })
	if sink.count("line old-0") != 0 {
		t.Error("read_from tail read old lines")
	}
}

// A container writing far more than its neighbour does not starve it: with the
// budget full of the noisy file's batches, the quiet file's batch is next in line.
func TestFairness(t *testing.T) {
	n := newNode(t)
	noisy := n.container("default", "noisy", "app")
	quiet := n.container("default", "quiet", "app")
	appendFile(t, noisy, numberedLines("n", 0, 100000))
	cfg := n.config()
	cfg.ReadBytes = 16 << 10
	cfg.BufferBytes = 32 << 10
	cfg.MaxRecordBytes = 1024
	sink := newCapture()
	sink.setHold(true)
	r := start(t, cfg, sink)
	waitFor(t, "the budget to fill", func() bool {
		return testutil.ToFloat64(r.c.m.inflightBytes) > float64(cfg.BufferBytes-2*cfg.ReadBytes)
	})
	appendFile(t, quiet, numberedLines("q", 0, 5))
	waitFor(t, "the quiet file to be tailed", func() bool { return testutil.ToFloat64(r.c.m.filesTailed) == 2 })
	// Release one batch at a time; the quiet file must get a turn within a few.
	for i := 0; i < 10 && sink.count("line q-4") == 0; i++ {
		before := sink.heldBatches()
		sink.release(1)
		waitFor(t, "a new batch", func() bool { return sink.heldBatches() >= before || sink.count("line q-4") > 0 })
	}
	if sink.count("line q-4") == 0 {
		t.Fatal("the quiet container's lines waited behind the noisy one's backlog")
	}
	if sink.distinct() > 60000 {
		t.Fatalf("reading did not pause while batches were unacknowledged: %d records read", sink.distinct())
	}
}

// fileAt is the entry of the file now at path, nil if none.
func (c *Collector) fileAt(path string) *file {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.byDir[filepath.Dir(path)] {
		if f.path == path {
			return f
		}
	}
	return nil
}

func mustID(t *testing.T, path string) fileID {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := statID(fi)
	return id
}

func fileSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// runPartlyAcked runs a collector until it has sent at least held batches,
// acknowledges the batches at the given indices in that order, stops it, and
// returns how many records it acknowledged.
func runPartlyAcked(t *testing.T, cfg Config, held int, ack ...int) (records int) {
	t.Helper()
	sink := newCapture()
	sink.setHold(true)
	r := start(t, cfg, sink)
	waitFor(t, "some batches", func() bool { return sink.heldBatches() >= held })
	sink.mu.Lock()
	batches := append([]*Batch(nil), sink.held...)
	sink.mu.Unlock()
	for _, i := range ack {
		batches[i].Ack()
		records += len(batches[i].Records)
	}
	r.stop()
	return records
}
