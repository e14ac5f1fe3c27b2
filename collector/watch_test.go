package collector

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

// eventDriven is a configuration where nothing is found or read unless
// inotify says so: no polling, no periodic rescan within a test's time.
func eventDriven(n *node) Config {
	cfg := n.config()
	cfg.PollInterval = time.Hour
	cfg.RescanInterval = time.Hour
	return cfg
}

// TestInotifyDrivesReading: with polling and periodic rescans out of the
// way, inotify alone finds a new container, reads what it writes, follows a
// rename rotation to the new live file and drains the rotated one, and
// counts no file as polled.
func TestInotifyDrivesReading(t *testing.T) {
	n := newNode(t)
	sink := newCapture()
	r := start(t, eventDriven(n), sink)
	live := n.container("default", "web-1", "app")
	appendFile(t, live, numberedLines("a", 0, 100))
	waitFor(t, "100 lines", func() bool { return sink.distinct() == 100 })
	for i := 100; i < 200; i++ {
		appendFile(t, live, numberedLines("a", i, i+1)) // a line at a time
	}
	waitFor(t, "200 lines", func() bool { return sink.distinct() == 200 })
	if err := os.Rename(live, live+".20261126-120000"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live+".20261126-120000", numberedLines("a", 200, 250)) // written after the rename
	appendFile(t, live, numberedLines("a", 250, 300))
	waitFor(t, "300 lines", func() bool { return sink.distinct() == 300 })
	if dups := sink.expectLines(t, "a", 0, 300); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	waitFor(t, "the rotated file drained and left", func() bool { return testutil.ToFloat64(r.c.m.filesTailed) == 1 })
	if got := testutil.ToFloat64(r.c.m.filesPolled); got != 0 {
		t.Errorf("files_polled = %v, want 0", got)
	}
	if got := testutil.ToFloat64(r.c.m.rescans); got != 0 {
		t.Errorf("periodic rescans = %v, want 0 (inotify found everything)", got)
	}
}

// TestGlobFolderAppearsAfterStart: the glob's folder does not exist when the
// agent starts; its first files are found as soon as they appear, not at
// the next periodic rescan.
func TestGlobFolderAppearsAfterStart(t *testing.T) {
	root := t.TempDir()
	n := &node{t: t, root: filepath.Join(root, "log")}
	cfg := eventDriven(n)
	cfg.StateDir = filepath.Join(root, "state")
	cfg.LogRoots = []string{filepath.Join(n.root, "pods")}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sink := newCapture()
	start(t, cfg, sink)
	for _, d := range []string{"pods", "containers"} {
		if err := os.MkdirAll(filepath.Join(n.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	live := n.container("default", "early", "app")
	appendFile(t, live, numberedLines("e", 0, 50))
	waitFor(t, "the first file's lines", func() bool { return sink.distinct() == 50 })
	sink.expectLines(t, "e", 0, 50)
}

// TestPollingWithoutInotify: without inotify (its limits reached) every
// file is still found by the rescans and read by polling, and counted as
// polled.
func TestPollingWithoutInotify(t *testing.T) {
	n := newNode(t)
	sink := newCapture()
	r := startWith(t, n.config(), sink, func(c *Collector) { c.noWatch = true })
	lives := []string{n.container("default", "p-1", "app"), n.container("default", "p-2", "app")}
	for i, live := range lives {
		appendFile(t, live, numberedLines(fmt.Sprint("p", i), 0, 100))
	}
	waitFor(t, "200 lines", func() bool { return sink.distinct() == 200 })
	for i, live := range lives {
		appendFile(t, live, numberedLines(fmt.Sprint("p", i), 100, 150))
	}
	waitFor(t, "300 lines", func() bool { return sink.distinct() == 300 })
	for i := range lives {
		sink.expectLines(t, fmt.Sprint("p", i), 0, 150)
	}
	waitFor(t, "both files counted as polled", func() bool { return testutil.ToFloat64(r.c.m.filesPolled) == 2 })
}

// TestWatchOverflowReconciles: events lost in an inotify queue overflow
// (here: read and dropped) are made up for: the overflow is
// counted, and every reader looks at its file again.
func TestWatchOverflowReconciles(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "lossy", "app")
	appendFile(t, live, numberedLines("o", 0, 10))
	sink := newCapture()
	r := start(t, eventDriven(n), sink)
	waitFor(t, "10 lines", func() bool { return sink.distinct() == 10 })
	r.c.watcher.drop.Store(true)
	appendFile(t, live, numberedLines("o", 10, 60)) // their events are lost
	waitFor(t, "the events read and dropped", func() bool { return inotifyQueueEmpty(t, r.c.watcher) })
	r.c.watcher.drop.Store(false)
	r.c.watchEvents(nil, errWatchOverflow) // what the watcher says on IN_Q_OVERFLOW
	waitFor(t, "60 lines", func() bool { return sink.distinct() == 60 })
	sink.expectLines(t, "o", 0, 60)
	if got := testutil.ToFloat64(r.c.m.watchOverflows); got != 1 {
		t.Errorf("watch_overflows_total = %v, want 1", got)
	}
}

// TestCheckpointsSavedOnlyWhenChanged: a save with nothing acknowledged,
// added or moved since the last one writes nothing; one after a change does.
func TestCheckpointsSavedOnlyWhenChanged(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "quiet", "app")
	appendFile(t, live, numberedLines("q", 0, 10))
	sink := newCapture()
	r := start(t, eventDriven(n), sink)
	waitFor(t, "10 lines", func() bool { return sink.distinct() == 10 })
	path := filepath.Join(n.root, "state", "checkpoints.json")
	waitFor(t, "the checkpoint at the file's end", func() bool {
		return r.c.SaveCheckpoints() == nil && checkpointOffset(t, path, live) == int64(len(numberedLines("q", 0, 10)))
	})
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := r.c.SaveCheckpoints(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("checkpoints written again with nothing changed (stat: %v)", err)
	}
	appendFile(t, live, numberedLines("q", 10, 20))
	waitFor(t, "the new lines checkpointed", func() bool {
		return checkpointOffset(t, path, live) == int64(len(numberedLines("q", 0, 20)))
	})
}

// checkpointOffset is the offset the checkpoint file holds for path, -1 if none.
func checkpointOffset(t *testing.T, file, path string) int64 {
	t.Helper()
	cps, err := newCheckpointStore(filepath.Dir(file)).load(time.Now())
	if err != nil {
		return -1
	}
	for _, cp := range cps {
		if cp.Path == path {
			return cp.Offset
		}
	}
	return -1
}

// inotifyQueueEmpty reports whether the watcher has read every queued event.
func inotifyQueueEmpty(t *testing.T, w *watcher) bool {
	n, err := unix.IoctlGetInt(w.fd, unix.TIOCINQ)
	if err != nil {
		t.Fatal(err)
	}
	return n == 0
}

// TestEventDrivenReadingAfterMemoryStall: a reader that read its file to the
// end, then found it grown but had to wait for memory (the buffer full of
// unacknowledged batches), reads the rest once there is room, with no new
// write to wake it.
func TestEventDrivenReadingAfterMemoryStall(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "stalled", "app")
	cfg := eventDriven(n)
	cfg.MaxRecordBytes = 1024
	cfg.ReadBytes = 4096
	cfg.BufferBytes = 2*cfg.MaxRecordBytes + cfg.ReadBytes
	sink := newCapture()
	sink.setHold(true)
	r := start(t, cfg, sink)
	first := numberedLines("m", 0, 40) // under read_bytes: read to the end in one go
	appendFile(t, live, first)
	waitFor(t, "the first lines, held", func() bool { return sink.distinct() == 40 })
	const total = 400
	appendFile(t, live, numberedLines("m", 40, total))
	size := int64(len(numberedLines("m", 0, total)))
	waitFor(t, "the reader to see the growth and wait for memory", func() bool {
		r.c.mu.Lock()
		f := r.c.byPath[live]
		r.c.mu.Unlock()
		return f != nil && f.size.Load() == size && f.read.Load() == int64(len(first))
	})
	waitFor(t, "every line", func() bool {
		sink.release(-1) // acknowledge what was sent, so reading goes on
		return sink.distinct() == total
	})
	if dups := sink.expectLines(t, "m", 0, total); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

// TestBlindReadFillsItsBuffer: the read after a write, made without a stat
// and sized by the last read, that fills its buffer has not reached the
// end: the reader reads on to the end with no further write to wake it.
func TestBlindReadFillsItsBuffer(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "burst", "app")
	sink := newCapture()
	start(t, eventDriven(n), sink)
	appendFile(t, live, numberedLines("b", 0, 1))
	waitFor(t, "the first line", func() bool { return sink.distinct() == 1 })
	const total = 5000 // one write, far more than twice the first read
	appendFile(t, live, numberedLines("b", 1, total))
	waitFor(t, "every line", func() bool { return sink.distinct() == total })
	if dups := sink.expectLines(t, "b", 0, total); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}
