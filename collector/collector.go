// Package collector finds container log files on a node, tails them across
// rotation, parses the runtime's format, and hands records on in batches,
// remembering for each file the offset up to which everything was
// acknowledged downstream.
package collector

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
)

// Collector tails every container log file that Config.LogGlob finds.
type Collector struct {
	cfg    Config
	sink   Sink
	log    *slog.Logger
	m      *metrics
	store  *checkpointStore
	budget *semaphore.Weighted

	mu        sync.Mutex
	files     map[fileID]*file // every file known: being read, drained, or from the checkpoint
	knownDirs map[string]bool  // container dirs the checkpoint knew at start
	// displaced are checkpointed files whose inode number a new file took
	// while the agent was away: their rest may still be in a .gz.
	displaced []*file
	started   bool             // the first scan is done: new files are read from the head
	byPath    map[string]*file // current path of files being read, for fsnotify events
	watched   map[string]bool
	watcher   *fsnotify.Watcher
	lastSaved []checkpoint
	// lastSaved0 is when the previous run last saved its checkpoints: a
	// rotation compressed after it may hold what that run never read.
	lastSaved0 time.Time

	wg          sync.WaitGroup
	rescanNow   chan struct{}
	deletedHeld atomic.Int64
}

// file is one log file: its identity, where it is, and how far it is acknowledged.
type file struct {
	id    fileID
	path  string // the current name; a rotation renames it
	dir   string
	src   *Source // nil for a file known only from the checkpoint so far
	fpLen int
	fp    uint64
	prog  *progress

	tailing bool
	notify  chan struct{}
	size    atomic.Int64 // last size seen
	read    atomic.Int64 // offset read up to
}

// New returns a collector that sends batches to sink. reg may be nil.
func New(cfg Config, sink Sink, reg prometheus.Registerer, log *slog.Logger) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	store, err := newCheckpointStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Collector{
		cfg: cfg, sink: sink, log: log, m: newMetrics(reg), store: store,
		budget:    semaphore.NewWeighted(int64(cfg.BufferBytes)),
		files:     map[fileID]*file{},
		knownDirs: map[string]bool{},
		byPath:    map[string]*file{},
		watched:   map[string]bool{},
		rescanNow: make(chan struct{}, 1),
	}, nil
}

// Run reads until ctx is done, then stops reading and returns once every
// file's reader has stopped. Batches already sent stay the sink's to
// acknowledge; call Close after the sink has flushed to persist the final
// checkpoints.
func (c *Collector) Run(ctx context.Context) error {
	if fi, err := os.Stat(c.store.path); err == nil {
		c.lastSaved0 = fi.ModTime()
	}
	saved, err := c.store.load()
	if err != nil {
		// A damaged state file must not stop log collection: start over,
		// loudly. Records may be sent again; none are lost.
		c.log.Error("ignoring unreadable checkpoints", "err", err)
		c.m.checkpointErrs.Inc()
	}
	c.mu.Lock()
	for _, cp := range saved {
		f := &file{id: cp.ID, path: cp.Path, dir: filepath.Dir(cp.Path), fpLen: cp.FPLen, fp: cp.FP, prog: newProgress(cp.Offset)}
		c.files[cp.ID] = f
		c.knownDirs[f.dir] = true
	}
	c.lastSaved = saved
	c.mu.Unlock()

	w, err := fsnotify.NewWatcher()
	if err != nil {
		// Without inotify (limits reached) the periodic rescan and polling
		// still find and read everything, only later.
		c.log.Warn("file watching unavailable, relying on rescans", "err", err)
	} else {
		c.watcher = w
		c.watch(filepath.Dir(c.cfg.LogGlob))
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.watchEvents(ctx) }()
	}

	c.rescan(ctx)
	rescan := time.NewTicker(c.cfg.RescanInterval)
	defer rescan.Stop()
	save := time.NewTicker(c.cfg.CheckpointInterval)
	defer save.Stop()
	for {
		select {
		case <-ctx.Done():
			if c.watcher != nil {
				c.watcher.Close()
			}
			c.wg.Wait()
			return nil
		case <-rescan.C:
			c.m.rescans.Inc()
			c.rescan(ctx)
		case <-c.rescanNow:
			c.rescan(ctx)
		case <-save.C:
			c.updateLag()
			if err := c.SaveCheckpoints(); err != nil {
				c.log.Error("saving checkpoints", "err", err)
			}
		}
	}
}

// Close persists the checkpoints one last time. Call it after Run returned
// and the sink has delivered what it could.
func (c *Collector) Close() error {
	return c.SaveCheckpoints()
}

// SaveCheckpoints persists every file's acknowledged offset, if any changed.
func (c *Collector) SaveCheckpoints() error {
	c.mu.Lock()
	cps := make([]checkpoint, 0, len(c.files))
	for _, f := range c.files {
		off, _ := f.prog.offset()
		cps = append(cps, checkpoint{Path: f.path, ID: f.id, FPLen: f.fpLen, FP: f.fp, Offset: off})
	}
	slices.SortFunc(cps, func(a, b checkpoint) int {
		switch {
		case a.Path < b.Path:
			return -1
		case a.Path > b.Path:
			return 1
		}
		return 0
	})
	same := slices.Equal(cps, c.lastSaved)
	c.mu.Unlock()
	if same {
		return nil
	}
	if err := c.store.save(cps); err != nil {
		c.m.checkpointErrs.Inc()
		return err
	}
	c.mu.Lock()
	c.lastSaved = cps
	c.mu.Unlock()
	return nil
}

// updateLag sums, over the files being read, the bytes written but not read.
func (c *Collector) updateLag() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var lag int64
	for _, f := range c.files {
		if f.tailing {
			if d := f.size.Load() - f.read.Load(); d > 0 {
				lag += d
			}
		}
	}
	c.m.lagBytes.Set(float64(lag))
}

// watch adds an fsnotify watch on dir, once. Directories, not files, are
// watched: one watch covers every file of a container, rotations included.
func (c *Collector) watch(dir string) {
	if c.watcher == nil || c.watched[dir] {
		return
	}
	if err := c.watcher.Add(dir); err != nil {
		c.log.Debug("cannot watch", "dir", dir, "err", err)
		return
	}
	c.watched[dir] = true
}

// watchEvents wakes readers on writes and rescans on anything else.
func (c *Collector) watchEvents(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-c.watcher.Errors:
			if !ok {
				return
			}
			// Usually a queue overflow: events were lost, so look again.
			c.m.watchErrors.Inc()
			c.log.Warn("file watcher", "err", err)
			c.triggerRescan()
		case ev, ok := <-c.watcher.Events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Write) {
				c.mu.Lock()
				f := c.byPath[ev.Name]
				c.mu.Unlock()
				if f != nil {
					wake(f.notify)
				}
			}
			if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Remove) {
				c.triggerRescan()
			}
		}
	}
}

func (c *Collector) triggerRescan() { wake(c.rescanNow) }

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// errPath wraps err with the file it is about.
func errPath(op, path string, err error) error { return fmt.Errorf("%s %s: %w", op, path, err) }
