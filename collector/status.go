package collector

import (
	"path/filepath"
	"time"
)

// File states, as FileStatus.State names them (the agent's /debug/files).
const (
	// StateLive is a file under its live name (N.log), followed.
	StateLive = "live"
	// StateRotated was renamed by a rotation and is still being read (until
	// rotate_wait after it last grew).
	StateRotated = "rotated"
	// StateDraining is no longer written and was read to its end; it stays
	// until everything read from it is acknowledged.
	StateDraining = "draining"
	// StateDeletedHeld was deleted while not read to its end: held open
	// and read on (within deleted_hold_bytes) until drained.
	StateDeletedHeld = "deleted_held"
	// StateCompressed is a rotation the kubelet compressed before the agent
	// had read and delivered all of it: read from the .gz.
	StateCompressed = "compressed"
	// StateDone is a rotation read to its end with every record
	// acknowledged (or history from before the agent's first start): kept
	// only to recognise it while it is on disk.
	StateDone = "done"
)

// FileStatus is one file the collector knows, as Files reports it.
type FileStatus struct {
	Namespace, Pod, Container string
	// Path is the file's current name.
	Path string
	// Size is the file's size when a reader last looked (of a compressed
	// rotation: its content as far as read); at least ReadOffset.
	Size int64
	// ReadOffset is how far the collector has read; AckedOffset how far
	// every record is acknowledged (the checkpoint's offset).
	ReadOffset, AckedOffset int64
	// Unacked is the number of batches sent from the file and not yet
	// acknowledged.
	Unacked int
	State   string
	// LastRead is when a reader last read from the file, zero if none did
	// since the agent started.
	LastRead time.Time
}

// BytesBehind is what is written but not yet acknowledged.
func (s FileStatus) BytesBehind() int64 { return max(s.Size-s.AckedOffset, 0) }

// Files lists every file the collector knows, in no particular order. It
// holds the collector's lock while it copies a few fields per file, and
// touches no disk: cheap enough to serve on every request.
func (c *Collector) Files() []FileStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]FileStatus, 0, len(c.byPath)+len(c.byDir))
	c.forEachFile(func(f *file) { out = append(out, f.status()) })
	return out
}

// status is the file's FileStatus; Collector.mu is held.
func (f *file) status() FileStatus {
	acked, unacked := f.prog.offset()
	st := FileStatus{Path: f.path, AckedOffset: acked, Unacked: unacked, State: f.state()}
	if pd, err := parseContainerDir(f.dir); err == nil {
		st.Namespace, st.Pod, st.Container = pd.Namespace, pd.Pod, pd.Container
	}
	st.ReadOffset = max(f.read.Load(), acked)
	if f.ended {
		st.ReadOffset = max(st.ReadOffset, f.end)
	}
	st.Size = max(f.size.Load(), st.ReadOffset)
	if ns := f.lastRead.Load(); ns != 0 {
		st.LastRead = time.Unix(0, ns)
	}
	return st
}

// state is what Files says of the file; Collector.mu is held.
func (f *file) state() string {
	switch {
	case f.done():
		return StateDone
	case f.gz:
		return StateCompressed
	case f.deleted.Load():
		return StateDeletedHeld
	case f.ended:
		return StateDraining
	}
	if _, rotated, ok := logName(filepath.Base(f.path)); ok && rotated {
		return StateRotated
	}
	return StateLive
}

// Activity is a summary of the collector's progress, for the agent's
// liveness check.
type Activity struct {
	// Read and Acked are the sums of every file's read and acknowledged
	// offsets: either changing means the pipeline moves.
	Read, Acked int64
	// Files is how many files the collector knows.
	Files int
	// Unread is what files being read hold beyond their read offset;
	// Unacked the batches sent and not yet acknowledged.
	Unread  int64
	Unacked int
}

// Activity sums the collector's progress over its files.
func (c *Collector) Activity() Activity {
	c.mu.Lock()
	defer c.mu.Unlock()
	var a Activity
	c.forEachFile(func(f *file) {
		acked, unacked := f.prog.offset()
		read := f.read.Load()
		a.Files++
		a.Read += read
		a.Acked += acked
		a.Unacked += unacked
		if f.reader != nil {
			a.Unread += max(f.size.Load()-read, 0)
		}
	})
	return a
}
