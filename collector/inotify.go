package collector

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watcher is inotify on the log folders, read in batches. fsnotify hands
// each event over a channel to another goroutine, one read(2) per event
// when lines arrive one at a time: on a node writing 10,000 lines a second
// that alone was a sixth of the agent's CPU. This reads whatever the
// kernel queued, at most every watchBatch, and handles the batch in one
// go under one lock.
type watcher struct {
	fd   int
	file *os.File // fd, non-blocking, on the runtime's poller: Close ends a Read

	mu   sync.Mutex
	dirs map[int]string // watch descriptor -> folder
	wds  map[string]int
	// paths interns, per watch descriptor, each entry's name and path: a
	// file written a line at a time sends an event per line, which would
	// otherwise allocate its path each time. An entry goes when its name
	// is removed or renamed away, all of a folder's with its watch.
	paths map[int]map[string]string

	// drop discards events (tests: events lost).
	drop atomic.Bool
}

// watchBatch is how long events gather between two reads once they flow.
const watchBatch = 5 * time.Millisecond

// watchMask: writes, and entries created, renamed or removed; the folder
// itself removed or renamed.
const watchMask = unix.IN_MODIFY | unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// watchOp is what happened, as the collector needs it.
type watchOp uint8

const (
	opWrite   watchOp = 1 << iota // a file was written
	opEntry                       // an entry was created, renamed or removed
	opSelf                        // the watched folder itself was removed or renamed
	opIgnored                     // the watch is gone (its folder went, or it was removed)
)

// watchEvent is one event: path is the entry's path, or the folder's.
type watchEvent struct {
	dir  string
	path string
	op   watchOp
}

// errWatchOverflow: the kernel's event queue overflowed; events were lost.
var errWatchOverflow = errors.New("inotify event queue overflow")

func newWatcher() (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	return &watcher{fd: fd, file: os.NewFile(uintptr(fd), "inotify"), dirs: map[int]string{}, wds: map[string]int{}, paths: map[int]map[string]string{}}, nil
}

// add watches dir.
func (w *watcher) add(dir string) error {
	wd, err := unix.InotifyAddWatch(w.fd, dir, watchMask)
	if err != nil {
		return fmt.Errorf("inotify_add_watch %s: %w", dir, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.dirs[wd]; ok && old != dir {
		delete(w.wds, old) // the same folder under another name: one watch
		delete(w.paths, wd)
	}
	w.dirs[wd] = dir
	w.wds[dir] = wd
	return nil
}

// remove stops watching dir.
func (w *watcher) remove(dir string) {
	w.mu.Lock()
	wd, ok := w.wds[dir]
	if ok {
		delete(w.wds, dir)
		delete(w.dirs, wd)
		delete(w.paths, wd)
	}
	w.mu.Unlock()
	if ok {
		unix.InotifyRmWatch(w.fd, uint32(wd)) // fails for a folder already gone: its watch went with it
	}
}

func (w *watcher) close() error { return w.file.Close() }

// path is the path of the entry name in dir (watch wd), interned; gone: the
// name was removed or renamed away, so it is forgotten. w.mu is held.
func (w *watcher) path(wd int, dir string, name []byte, gone bool) string {
	names := w.paths[wd]
	p, ok := names[string(name)] // no allocation to look up
	if !ok {
		p = filepath.Join(dir, string(name))
		if !gone {
			if names == nil {
				names = map[string]string{}
				w.paths[wd] = names
			}
			names[string(name)] = p
		}
	}
	if gone && ok {
		delete(names, string(name))
	}
	return p
}

// run reads events until the watcher is closed, calling handle with each
// batch (and with errWatchOverflow when events were lost).
func (w *watcher) run(handle func([]watchEvent, error)) {
	buf := make([]byte, 64<<10)
	var evs []watchEvent
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			handle(nil, fmt.Errorf("read inotify: %w", err))
			time.Sleep(watchBatch)
			continue
		}
		evs = evs[:0]
		overflow := false
		w.mu.Lock()
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameLen := int(raw.Len)
			end := off + unix.SizeofInotifyEvent + nameLen
			if end > n {
				break
			}
			var name []byte
			if nameLen > 0 {
				name = buf[off+unix.SizeofInotifyEvent : end]
				if i := bytes.IndexByte(name, 0); i >= 0 {
					name = name[:i]
				}
			}
			off = end
			mask := raw.Mask
			if mask&unix.IN_Q_OVERFLOW != 0 {
				overflow = true
				continue
			}
			wd := int(raw.Wd)
			dir, ok := w.dirs[wd]
			if !ok {
				continue // removed meanwhile
			}
			ev := watchEvent{dir: dir, path: dir}
			if len(name) > 0 {
				ev.path = w.path(wd, dir, name, mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0)
			}
			if mask&unix.IN_MODIFY != 0 {
				ev.op |= opWrite
			}
			if mask&(unix.IN_CREATE|unix.IN_DELETE|unix.IN_MOVED_FROM|unix.IN_MOVED_TO) != 0 {
				ev.op |= opEntry
			}
			if mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
				ev.op |= opSelf
			}
			if mask&unix.IN_IGNORED != 0 {
				ev.op |= opIgnored
				if w.wds[dir] == int(raw.Wd) {
					delete(w.wds, dir)
				}
				delete(w.dirs, wd)
				delete(w.paths, wd)
			}
			if ev.op != 0 {
				evs = append(evs, ev)
			}
		}
		w.mu.Unlock()
		if w.drop.Load() {
			evs, overflow = evs[:0], false
		}
		if len(evs) > 0 {
			handle(evs, nil)
		}
		if overflow {
			handle(nil, errWatchOverflow)
		}
		// Let events gather: one read for many, while lines flow.
		time.Sleep(watchBatch)
	}
}
