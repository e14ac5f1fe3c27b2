package collector

import (
	"path/filepath"
	"strings"
	"sync/atomic"
)

// file is one log file the collector knows: from the checkpoint, or found on
// disk. Its life, whatever happens to it on disk (renamed by a rotation,
// compressed, truncated, deleted):
//
//   - found (or loaded from the checkpoint): identified by the identity rule
//     (identity.go) each time a scan meets it, under whatever name;
//   - read by a reader (one at a time) from where everything before was
//     sent; the live file is followed, a rotated or deleted one drained and
//     left (ended), a compressed one read to its end (ended);
//   - kept, and saved in the checkpoint, for as long as it is on disk in any
//     form (so that a restart does not take it, or its .gz, for new) and
//     until every record read from it is acknowledged;
//   - forgotten once it is gone from disk and nothing of it is outstanding.
//
// Fields are guarded by Collector.mu, except the atomics and prog (its own lock).
type file struct {
	dir  string // the container log directory: part of its identity
	ns   string // namespace, from dir
	path string // current name: N.log, N.log.<time>, or N.log.<time>.gz
	id   fileID // of what is on disk at path
	gz   bool   // on disk as a compressed rotation (since the plain file went)
	// gzSize is the size of the .gz, to recognise it again without
	// decompressing it (a compressed rotation never changes).
	gzSize int64
	fp     fingerprint
	prog   *progress

	reader *reader // the read loop owning the file, nil if none
	// next is where a new reader starts: everything before it was sent
	// (for a file from the checkpoint: acknowledged).
	next int64
	// ended: a reader read the file to its end for good (rotated and quiet,
	// deleted and drained, or compressed); end is the content's size.
	ended bool
	end   int64
	// doneAtLoad: the checkpoint said nothing is left to read.
	doneAtLoad bool
	seen       uint64 // the scan generation that last found it on disk

	// realDir is the folder the live file really is in, when its name in
	// dir is a link to another folder (cri-dockerd: 0.log links to
	// Docker's <id>-json.log): watched too, since inotify reports writes
	// there. Set while a reader holds the file.
	realDir  string
	realPath string

	notify chan struct{} // wakes the reader: the file was written
	// parked is how to start the reader again while it waits with no
	// goroutine (reader.park); nil while it runs. Use wake.
	parked atomic.Pointer[func()]
	// dirChanged: a file was created, renamed or removed in its folder
	// since the reader last looked at its name (inotify).
	dirChanged atomic.Bool
	// polled: no inotify watch covers the file; its reader polls.
	polled atomic.Bool
	// notBefore is when the reader may be woken for a write (its last read
	// plus read_wait, unix nanoseconds); deferred: a wake-up is due then.
	notBefore atomic.Int64
	deferred  atomic.Bool
	size      atomic.Int64 // last size a reader saw, for the lag gauge
	read      atomic.Int64 // offset read up to
	// lastRead (Unix nanoseconds) and deleted are for Files (status.go):
	// when a reader last read from the file, and whether it saw it deleted.
	lastRead atomic.Int64
	deleted  atomic.Bool
}

func newFile(dir, path string, id fileID, fp fingerprint, acked int64) *file {
	return &file{
		dir: dir, ns: namespaceOf(dir), path: path, id: id, gz: strings.HasSuffix(path, ".gz"), fp: fp,
		prog: newProgress(acked), next: acked, notify: make(chan struct{}, 1),
	}
}

func namespaceOf(dir string) string {
	pd, err := parseContainerDir(dir)
	if err != nil {
		return ""
	}
	return pd.Namespace
}

// done reports whether nothing is left to read of the file and everything
// read was acknowledged.
func (f *file) done() bool {
	if f.doneAtLoad {
		return true
	}
	if !f.ended {
		return false
	}
	acked, outstanding := f.prog.offset()
	return outstanding == 0 && acked >= f.end
}

// checkpoint is what is saved of the file.
func (f *file) checkpoint() checkpoint {
	acked, _ := f.prog.offset()
	return checkpoint{Path: f.path, ID: f.id, FPLen: f.fp.Len, FP: f.fp.Sum, Offset: acked, Done: f.done()}
}

// fileFromCheckpoint is the entry of a file the previous run knew.
func fileFromCheckpoint(cp checkpoint) *file {
	f := newFile(filepath.Dir(cp.Path), cp.Path, cp.ID, fingerprint{Len: cp.FPLen, Sum: cp.FP}, cp.Offset)
	f.doneAtLoad = cp.Done
	return f
}

// wake wakes the file's reader: it looks at the file again. A parked reader
// (waiting for a write, with no goroutine) is started again.
func (f *file) wake() {
	wake(f.notify)
	if resume := f.parked.Swap(nil); resume != nil {
		(*resume)()
	}
}

// addFile records a new entry; c.mu is held.
func (c *Collector) addFile(f *file) {
	c.setChanged()
	f.prog.mu.Lock()
	f.prog.changed = &c.version
	f.prog.mu.Unlock()
	c.byDir[f.dir] = append(c.byDir[f.dir], f)
	c.nsFiles[f.ns]++
}

// removeFile forgets an entry; c.mu is held. A namespace with no file left
// loses its series, so short-lived namespaces do not pile up.
func (c *Collector) removeFile(f *file) {
	fs := c.byDir[f.dir]
	for i, g := range fs {
		if g == f {
			fs = append(fs[:i], fs[i+1:]...)
			break
		}
	}
	if len(fs) == 0 {
		delete(c.byDir, f.dir)
	} else {
		c.byDir[f.dir] = fs
	}
	if c.byPath[f.path] == f {
		delete(c.byPath, f.path)
	}
	if f.realPath != "" && c.byPath[f.realPath] == f {
		delete(c.byPath, f.realPath)
	}
	c.setChanged()
	if c.nsFiles[f.ns]--; c.nsFiles[f.ns] <= 0 {
		delete(c.nsFiles, f.ns)
		c.m.records.DeleteLabelValues(f.ns)
		c.m.bytes.DeleteLabelValues(f.ns)
	}
}

// rename follows a file to its new name; c.mu is held.
func (c *Collector) rename(f *file, path string) {
	if f.path == path {
		return
	}
	c.setChanged()
	if c.byPath[f.path] == f {
		delete(c.byPath, f.path)
		c.byPath[path] = f
	}
	f.path = path
}

// forEachFile calls fn for every entry; c.mu is held.
func (c *Collector) forEachFile(fn func(*file)) {
	for _, fs := range c.byDir {
		for _, f := range fs {
			fn(f)
		}
	}
}
