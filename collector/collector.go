// Package collector finds container log files on a node, tails them across
// rotation, parses the runtime's format, and hands records on in batches,
// remembering for each file the offset up to which everything was
// acknowledged downstream.
//
// Per-container policies (policy.go, policyread.go): a multiline rule joins
// a stack trace's lines into one record, and a rate limit slows the reading
// of a noisy container. Both act in the read loop, before a batch is cut,
// for the checkpoint's sake: a file's checkpoint never moves past a record
// not yet sent whole, so it stays at the first line of a group still open
// (min of what was consumed, the oldest partial line being joined, and the
// joiner's OpenStart), and a restart in the middle of a stack trace reads
// the trace again, whole. Joining after the collector, on batches already
// cut and acknowledged in pieces, could not keep that promise. Rate
// limiting too belongs to the reader: it waits before reading (the file on
// disk is the buffer) rather than dropping what was read.
//
// Which rule and which limit apply depends on the pod: its annotations
// (logagent.io/multiline, logagent.io/rate-limit), its labels, its
// namespace's annotations. The collector knows only the path (namespace,
// pod, container); enrich has the pod metadata. So the policy flows against
// the records: the collector asks a PolicySource (SetPolicySource: the
// Enricher, set by cmd/logagent; without enrich, the configuration's
// Policies) when a reader first reads a file, and again every second. A
// file is often adopted before the informer has delivered its pod (a new
// pod's first lines, or every file at a restart while the informer lists):
// its answer is then Provisional, and the reader waits for a final one
// before its first read, a short, bounded wait (at most 10 s here; enrich
// stops calling it provisional after its miss_wait, 1 s by default), so that
// the first stack trace of a new pod, or the one a restart resumes in the
// middle of, is joined by the rule its annotations name. The wait costs
// little: enrich would hold the pod's first batch for as long anyway. A
// policy that changes later applies its rate limit at once and its rule
// from the next line that opens no group.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector tails every container log file that Config.LogGlob finds.
type Collector struct {
	cfg    Config
	sink   Sink
	log    *slog.Logger
	m      *metrics
	lock   *stateLock
	store  *checkpointStore
	budget *budget
	pools  *pools
	roots  logRoots
	pol    *policies // multiline rules and rate limits (policyread.go)

	mu     sync.Mutex
	byDir  map[string][]*file // every file known, by container log directory
	byPath map[string]*file   // current name of files being read, for inotify events
	// nsFiles counts the files of each namespace, to delete its series
	// when none is left.
	nsFiles map[string]int
	mode    startMode
	gen     uint64 // scan generation
	watched map[string]bool
	watcher *watcher
	waker   *waker
	// dirty holds the container log folders inotify saw change since the
	// last rescan: a rescan reads those, and skips the others whose
	// modification time did not move (dirScans). linksDirty: something
	// changed outside them (the glob's folder, a parent, Docker's folder of
	// a linked file): the glob is read again.
	dirty      map[string]bool
	linksDirty bool
	// fullNext: the next rescan reads every folder (an inotify queue
	// overflow lost events).
	fullNext bool
	rescans  int
	links    *linkScan           // the glob's last result, while its folder does not change
	dirScans map[string]*dirScan // per container folder, what its last complete scan saw
	// extDirs maps a folder holding linked log files (Docker's) to the
	// container folders whose files live there.
	extDirs map[string]map[string]bool
	scan    scanReport // what the last rescan could and could not read
	// globEmptySince is when the log glob began to match nothing.
	globEmptySince time.Time
	globEmptySaid  bool
	// globQuietAfter is how long the glob may match nothing before the
	// collector says so.
	globQuietAfter time.Duration
	// noWatch turns inotify off (tests of the polling fallback).
	noWatch bool

	// version counts changes of what a checkpoint holds (files added,
	// renamed, ended, acknowledged): a save with nothing changed costs nothing.
	version atomic.Uint64
	// order is every file, sorted by path, as of setVersion (files added,
	// removed or renamed; guarded by mu): a save sorts only when it moved.
	order        []*file
	orderVersion uint64
	setVersion   uint64
	saveMu       sync.Mutex // one save at a time
	savedVersion uint64
	lastSaved    []checkpoint
	saveErr      error // the last save's error, nil once one succeeds
	saveFails    int   // saves failed in a row
	saveFailing  time.Time

	wg          sync.WaitGroup // readers and the watcher
	rescanNow   chan struct{}
	deletedHeld atomic.Int64
	// readWait is the read_wait in force (readwait.go), in nanoseconds; 0
	// until first set.
	readWait  atomic.Int64
	saverStop chan struct{}
	saverDone chan struct{}
	closeOnce sync.Once

	// Reconfigure (reconfigure.go): the settings as they are now, the
	// policies compiled from them, and the loops told of new intervals.
	liveCfg     atomic.Pointer[Config]
	reconfMu    sync.Mutex
	rescanReset chan struct{}
	saveReset   chan struct{}
}

// startMode says how files with no checkpoint entry are read at the first scan.
type startMode int

const (
	// modeNormal: a file not in the checkpoint is new, read from its head.
	modeNormal startMode = iota
	// modeFirstInstall: no checkpoint file. Live files start where
	// read_from says; rotations (plain or compressed) are history from
	// before the agent, remembered as read.
	modeFirstInstall
	// modeRecover: the checkpoint file could not be read. Everything on
	// disk is read from the head: duplicates, not loss.
	modeRecover
)

// New returns a collector that sends batches to sink. reg may be nil. It
// locks the state directory: a second collector on it fails here, naming
// the holder, until Close.
func New(cfg Config, sink Sink, reg prometheus.Registerer, log *slog.Logger) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lock, warn, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if warn != nil {
		log.Warn("state directory", "err", warn)
	}
	roots := cfg.LogRoots
	if len(roots) == 0 {
		roots = defaultLogRoots(cfg.LogGlob)
	}
	pol, err := NewPolicies(cfg)
	if err != nil {
		lock.unlock()
		return nil, err
	}
	m := newMetrics(reg)
	c := &Collector{
		pol: newPolicyRuntime(pol, reg),
		cfg: cfg, sink: sink, log: log, m: m, lock: lock,
		store:          newCheckpointStore(cfg.StateDir),
		budget:         newBudget(int64(cfg.BufferBytes), m.bufferUsed),
		pools:          newPools(cfg.ReadBytes),
		roots:          resolveRoots(roots),
		byDir:          map[string][]*file{},
		byPath:         map[string]*file{},
		nsFiles:        map[string]int{},
		watched:        map[string]bool{},
		dirty:          map[string]bool{},
		dirScans:       map[string]*dirScan{},
		extDirs:        map[string]map[string]bool{},
		rescanNow:      make(chan struct{}, 1),
		waker:          newWaker(),
		globQuietAfter: 30 * time.Second,
	}
	c.initLive(cfg)
	return c, nil
}

// Run reads until ctx is done, then stops reading and returns once every
// file's reader has stopped. Batches already sent stay the sink's to
// acknowledge: checkpoints go on being saved as they are acknowledged until
// Close, which saves them one last time.
func (c *Collector) Run(ctx context.Context) error {
	c.store.removeStrayTemps()
	saved, err := c.store.load(time.Now())
	c.mu.Lock()
	switch {
	case errors.Is(err, errNoCheckpoints):
		c.mode = modeFirstInstall
		c.log.Info("no checkpoint file: first start with this state directory", "read_from", c.cfg.ReadFrom, "state_dir", c.cfg.StateDir)
	case err != nil:
		// A damaged state file must not stop log collection: read
		// everything on disk again, loudly. Records may be sent again;
		// none are lost.
		c.mode = modeRecover
		c.m.checkpointErrs.Inc()
		c.log.Error("unreadable checkpoint file: reading every log file on disk from its start, rotated and compressed ones included", "err", err)
	}
	for _, cp := range saved {
		c.addFile(fileFromCheckpoint(cp))
	}
	c.mu.Unlock()
	c.saverStop, c.saverDone = make(chan struct{}), make(chan struct{})
	go c.saveLoop()

	w, err := newWatcher()
	if err == nil && c.noWatch {
		w.close()
		err = errors.New("inotify turned off")
	}
	if err != nil {
		// Without inotify (limits reached) the periodic rescan and polling
		// still find and read everything, only later.
		c.log.Warn("file watching unavailable, relying on rescans", "err", err)
	} else {
		c.watcher = w
		c.watchGlobDir()
		c.wg.Add(2)
		go func() { defer c.wg.Done(); c.waker.run(ctx) }()
		go func() { defer c.wg.Done(); w.run(c.watchEvents) }()
	}

	c.rescan(ctx, true)
	// From now on a checkpoint file exists: a restart is no first start.
	if err := c.SaveCheckpoints(); err != nil {
		c.log.Error("saving checkpoints", "err", err)
	}
	rescan := time.NewTicker(c.live().RescanInterval)
	defer rescan.Stop()
	for {
		select {
		case <-ctx.Done():
			if c.watcher != nil {
				c.watcher.close()
			}
			// Parked readers run again, to see ctx done and end; one
			// that parks from now on sees it before parking.
			c.mu.Lock()
			c.forEachFile(func(f *file) { f.wake() })
			c.mu.Unlock()
			c.wg.Wait()
			return nil
		case <-rescan.C:
			c.m.rescans.Inc()
			c.rescans++
			c.rescan(ctx, c.rescans%fullRescanEvery == 0)
		case <-c.rescanNow:
			c.rescan(ctx, false)
		case <-c.rescanReset:
			rescan.Reset(c.live().RescanInterval)
		}
	}
}

// saveLoop persists checkpoints every checkpoint_interval until Close: also
// after Run returned, while the stages after the collector flush, so that a
// SIGKILL during the flush keeps what was acknowledged.
func (c *Collector) saveLoop() {
	defer close(c.saverDone)
	t := time.NewTicker(c.live().CheckpointInterval)
	defer t.Stop()
	var lagAt time.Time
	for {
		select {
		case <-c.saverStop:
			return
		case <-c.saveReset:
			t.Reset(c.live().CheckpointInterval)
		case now := <-t.C:
			if now.Sub(lagAt) >= time.Second {
				lagAt = now
				c.updateLag()
			}
			if err := c.SaveCheckpoints(); err != nil {
				c.log.Error("saving checkpoints", "err", err)
			}
		}
	}
}

// Close persists the checkpoints one last time and unlocks the state
// directory. Call it after Run returned and the sink has delivered what it could.
func (c *Collector) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if c.saverStop != nil {
			close(c.saverStop)
			<-c.saverDone
			err = c.SaveCheckpoints()
		}
		c.budget.close()
		c.lock.unlock()
	})
	return err
}

// SaveCheckpoints persists every file's acknowledged offset, if any changed.
func (c *Collector) SaveCheckpoints() error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.Lock()
	version := c.version.Load()
	if c.lastSaved != nil && version == c.savedVersion {
		c.mu.Unlock()
		return nil // nothing moved since the last save
	}
	if c.order == nil || c.orderVersion != c.setVersion {
		// Files came, went or were renamed: sort them again, by path.
		c.order = c.order[:0]
		c.forEachFile(func(f *file) { c.order = append(c.order, f) })
		slices.SortFunc(c.order, func(a, b *file) int { return strings.Compare(a.path, b.path) })
		c.orderVersion = c.setVersion
	}
	cps := make([]checkpoint, 0, len(c.order))
	for _, f := range c.order {
		cps = append(cps, f.checkpoint())
	}
	c.mu.Unlock()
	if c.lastSaved != nil && slices.Equal(cps, c.lastSaved) {
		c.savedVersion = version
		return nil
	}
	if cps == nil {
		cps = []checkpoint{}
	}
	err := c.store.save(cps)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.m.checkpointErrs.Inc()
		if c.saveFails == 0 {
			c.saveFailing = time.Now()
		}
		c.saveFails++
		c.saveErr = err
		return err
	}
	c.saveFails, c.saveErr = 0, nil
	c.lastSaved, c.savedVersion = cps, version
	return nil
}

// Ready is nil while the collector does its job. It fails while checkpoint
// saves keep failing (the state directory is not writable: a restart would
// send everything again), and while log files exist but none can be read
// (permissions, the log roots), with the reason.
func (c *Collector) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	if c.saveFails >= 3 {
		errs = append(errs, fmt.Errorf("checkpoints not saved for %s (%d attempts): %w",
			time.Since(c.saveFailing).Round(time.Second), c.saveFails, c.saveErr))
	}
	if s := c.scan; s.unreadable > 0 && s.readable == 0 {
		errs = append(errs, fmt.Errorf("no log file can be read (%d unreadable; e.g. %s: %s)", s.unreadable, s.example, s.exampleErr))
	}
	return errors.Join(errs...)
}

// updateLag sums, over the files being read, the bytes written but not
// read, and sets read_wait from how many were read in the last second.
func (c *Collector) updateLag() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var lag int64
	active := 0
	recent := time.Now().Add(-time.Second).UnixNano()
	c.forEachFile(func(f *file) {
		if f.reader != nil {
			if d := f.size.Load() - f.read.Load(); d > 0 {
				lag += d
			}
			if f.lastRead.Load() >= recent {
				active++
			}
		}
	})
	c.m.lagBytes.Set(float64(lag))
	c.adaptReadWait(active)
}

// watch adds an inotify watch on dir, once; c.mu is held. Directories, not
// files, are watched: one watch covers every file of a container,
// rotations included.
func (c *Collector) watch(dir string) {
	if c.watcher == nil || c.watched[dir] {
		return
	}
	if err := c.watcher.add(dir); err != nil {
		// Its files are polled (file.polled) and it is tried again at
		// the next rescan. ENOSPC: fs.inotify.max_user_watches reached.
		c.log.Debug("cannot watch", "dir", dir, "err", err)
		return
	}
	c.watched[dir] = true
}

// changed notes a change of what a checkpoint holds.
func (c *Collector) changed() { c.version.Add(1) }

// setChanged notes a file added, removed or renamed; c.mu is held.
func (c *Collector) setChanged() {
	c.setVersion++
	c.changed()
}

// unwatchExcept drops the watches of directories not in keep (gone, or no
// longer holding a tailed container's logs); c.mu is held.
func (c *Collector) unwatchExcept(keep map[string]bool) {
	for dir := range c.watched {
		if !keep[dir] {
			if c.watcher != nil {
				c.watcher.remove(dir)
			}
			delete(c.watched, dir)
		}
	}
}

// watchEvents handles a batch of inotify events: a write wakes the file's
// reader; a file created, renamed or removed marks its folder for the next
// rescan, started at once. Lost events (a queue overflow, a read error):
// every reader looks at its file again and the next rescan reads every folder.
func (c *Collector) watchEvents(evs []watchEvent, err error) {
	if err != nil {
		c.m.watchErrors.Inc()
		if errors.Is(err, errWatchOverflow) {
			c.m.watchOverflows.Inc()
			c.log.Warn("inotify event queue overflowed: events were lost; every file is looked at again (raise fs.inotify.max_queued_events)")
		} else {
			c.log.Warn("file watcher", "err", err)
		}
		c.reconcile()
		return
	}
	rescan := false
	now := time.Now().UnixNano()
	c.mu.Lock()
	for _, ev := range evs {
		if ev.op&opWrite != 0 {
			if f := c.byPath[ev.path]; f != nil {
				c.waker.notify(f, now)
			} else if _, _, ok := logName(filepath.Base(ev.path)); ok {
				// A log file no reader holds was written (a drained
				// rotation written again): the rescan resumes it.
				rescan = c.markDirty(ev.dir)
			}
		}
		if ev.op&opEntry != 0 {
			rescan = c.markDirty(ev.dir)
			if c.watched[ev.path] {
				c.linksDirty = true // a watched folder went or came back
			}
		}
		if ev.op&(opSelf|opIgnored) != 0 {
			// The folder itself went (or its watch did): what it held is
			// looked at again, and it is watched again if it comes back.
			if ev.op&opIgnored != 0 {
				delete(c.watched, ev.dir)
			}
			c.markDirty(ev.dir)
			c.linksDirty = true
			rescan = true
		}
	}
	c.mu.Unlock()
	if rescan {
		c.triggerRescan()
	}
}

// markDirty notes that dir changed: the container folders it is, or holds
// linked files of, are read at the next rescan and their readers look at
// their names again; any other folder makes the rescan read the glob
// again. It returns true. c.mu is held.
func (c *Collector) markDirty(dir string) bool {
	known := false
	mark := func(cd string) {
		known = true
		c.dirty[cd] = true
		for _, f := range c.byDir[cd] {
			if f.reader != nil {
				f.dirChanged.Store(true)
				f.wake()
			}
		}
	}
	if _, ok := c.byDir[dir]; ok {
		mark(dir)
	}
	for cd := range c.extDirs[dir] {
		mark(cd)
	}
	if !known {
		c.linksDirty = true
	}
	return true
}

// reconcile makes every reader look at its file and name again, and the next
// rescan read everything: after lost inotify events.
func (c *Collector) reconcile() {
	c.mu.Lock()
	c.fullNext = true
	c.mu.Unlock()
	c.reconcileReaders()
	c.triggerRescan()
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
