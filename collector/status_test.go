package collector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fileIn returns the status of the one file of a container whose path
// contains part, or false.
func fileIn(c *Collector, pod, part string) (FileStatus, bool) {
	for _, f := range c.Files() {
		if f.Pod == pod && strings.Contains(filepath.Base(f.Path), part) {
			return f, true
		}
	}
	return FileStatus{}, false
}

func waitState(t *testing.T, c *Collector, pod, part, state string) FileStatus {
	t.Helper()
	var got FileStatus
	waitFor(t, pod+" "+part+" "+state, func() bool {
		f, ok := fileIn(c, pod, part)
		got = f
		return ok && f.State == state
	})
	return got
}

// Files reports each file in each state of its life, with its offsets,
// while batches are held unacknowledged and once they are acknowledged.
func TestFilesStates(t *testing.T) {
	n := newNode(t)
	cfg := n.config()
	cfg.RotateWait = 2 * time.Second // long enough to see a rotated file read
	sink := newCapture()
	sink.setHold(true)

	live := n.container("default", "live", "app")
	appendFile(t, live, numberedLines("l", 0, 100))
	rot := n.container("default", "rot", "app")
	appendFile(t, rot, numberedLines("r", 0, 100))
	del := n.container("default", "del", "app")
	appendFile(t, del, numberedLines("d", 0, 100))
	gz := n.container("default", "gz", "app")
	appendFile(t, gz, numberedLines("g", 0, 100))
	r := start(t, cfg, sink)
	waitFor(t, "every line read", func() bool { return sink.distinct() == 400 })

	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	liveSize := size(live)
	f := waitState(t, r.c, "live", "0.log", StateLive)
	if f.Namespace != "default" || f.Container != "app" || f.Path != live {
		t.Errorf("identity: %+v", f)
	}
	if f.ReadOffset != liveSize || f.Size != liveSize || f.AckedOffset != 0 || f.BytesBehind() != liveSize || f.Unacked == 0 {
		t.Errorf("live file with nothing acknowledged: %+v (size %d)", f, liveSize)
	}
	if f.LastRead.IsZero() || time.Since(f.LastRead) > time.Minute {
		t.Errorf("last read %v", f.LastRead)
	}

	rotate(t, rot, "20261127-080000")
	waitState(t, r.c, "rot", "20261127", StateRotated)
	waitState(t, r.c, "rot", "20261127", StateDraining) // past rotate_wait, unacknowledged

	if err := os.Remove(del); err != nil {
		t.Fatal(err)
	}
	waitState(t, r.c, "del", "0.log", StateDeletedHeld)

	gzRotated := rotate(t, gz, "20261127-080000")
	waitState(t, r.c, "gz", "20261127", StateDraining)
	if err := gzipFile(gzRotated); err != nil {
		t.Fatal(err)
	}
	waitState(t, r.c, "gz", ".gz", StateCompressed)

	sink.setHold(false)
	sink.release(-1)
	f = waitState(t, r.c, "rot", "20261127", StateDone)
	if f.BytesBehind() != 0 || f.AckedOffset != f.Size || f.Unacked != 0 {
		t.Errorf("rotated file acknowledged: %+v", f)
	}
	waitFor(t, "the live file acknowledged", func() bool {
		f, ok := fileIn(r.c, "live", "0.log")
		return ok && f.State == StateLive && f.AckedOffset == liveSize && f.BytesBehind() == 0
	})
	waitFor(t, "the deleted file forgotten once acknowledged", func() bool {
		_, ok := fileIn(r.c, "del", "0.log")
		return !ok
	})
	a := r.c.Activity()
	if a.Unacked != 0 || a.Unread != 0 || a.Files == 0 || a.Acked == 0 {
		t.Errorf("activity when everything is acknowledged: %+v", a)
	}
}
