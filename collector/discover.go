package collector

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// containerLogs is one container log directory and what the links say of it.
type containerLogs struct {
	pd    podDir
	ids   map[int]string // restart count -> container ID, from the link names
	links map[int]string // restart count -> link path
}

// fullRescanEvery: every this many periodic rescans, every folder is read
// and every reader looks at its file, whatever inotify said: the safety net
// behind the safety net (a minute at the default rescan_interval).
const fullRescanEvery = 12

// racyAge: a folder modified this recently may change again within the
// same tick of the file system's clock, unseen by its modification time;
// its scan is not remembered.
const racyAge = 2 * time.Second

// dirSig is what says a folder's entries did not change: its inode and
// modification time (a file created, renamed or removed in it moves it).
type dirSig struct {
	ino   uint64
	mtime int64
}

// statDir returns dir's signature; stable is false if it changed too
// recently to be trusted.
func statDir(dir string, now time.Time) (sig dirSig, stable bool, err error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return dirSig{}, false, err
	}
	id, _ := statID(fi)
	sig = dirSig{ino: id.Ino, mtime: fi.ModTime().UnixNano()}
	return sig, now.Sub(fi.ModTime()) >= racyAge, nil
}

// linkScan is what the glob found: reused while its folder does not change
// and inotify says nothing of it.
type linkScan struct {
	sig       dirSig
	matched   int
	dirs      map[string]*containerLogs
	keepWatch map[string]bool
}

// dirScan is what the last complete scan of a container folder saw: while
// the folder does not change, is watched, and inotify says nothing of it,
// a rescan skips it (an idle node's rescan costs a stat per folder).
type dirScan struct {
	sig    dirSig
	report scanReport
}

// watchGlobDir watches the glob's folder or, until it exists, the nearest
// folder on the way to it, so that the first files are found at once.
func (c *Collector) watchGlobDir() string {
	return c.watchNearest(filepath.Dir(c.cfg.LogGlob))
}

// rescan reconciles what is on disk with what is known: it finds new files
// (live, rotated or compressed), follows renames and compression, starts
// readers, and forgets files gone for good. Unless full, it skips the
// container folders unchanged since their last scan.
func (c *Collector) rescan(ctx context.Context, full bool) {
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	c.mu.Lock()
	full = full || c.fullNext || c.watcher == nil
	c.fullNext = false
	linksDirty := full || c.linksDirty || c.links == nil
	c.linksDirty = false
	dirty := c.dirty
	c.dirty = map[string]bool{}
	c.mu.Unlock()
	if full {
		c.reconcileReaders()
	}

	var next scanReport
	globDir := filepath.Dir(c.cfg.LogGlob)
	keepWatch := map[string]bool{}
	if w := c.watchGlobDir(); w != "" {
		keepWatch[w] = true
	}
	ls := c.links
	if !linksDirty {
		sig, _, err := statDir(globDir, now)
		c.mu.Lock()
		watched := c.watched[globDir]
		c.mu.Unlock()
		if err != nil || sig != ls.sig || !watched {
			linksDirty = true
		}
	}
	if linksDirty {
		var ok bool
		ls, ok = c.scanLinks(globDir, now, &next)
		if !ok {
			return
		}
	} else {
		c.globMatched(ls.matched, now)
	}
	for d := range ls.keepWatch {
		keepWatch[d] = true
	}

	c.mu.Lock()
	c.gen++
	gen := c.gen
	c.mu.Unlock()
	scanned := map[string]bool{}
	names := make([]string, 0, len(ls.dirs))
	for dir := range ls.dirs {
		names = append(names, dir)
	}
	sort.Strings(names)
	for _, dir := range names {
		c.mu.Lock()
		c.watch(dir)
		watched := c.watched[dir]
		prev := c.dirScans[dir]
		c.mu.Unlock()
		keepWatch[dir] = true
		sig, stable, err := statDir(dir, now)
		if !full && !dirty[dir] && watched && prev != nil && err == nil && sig == prev.sig {
			next.add(&prev.report)
			scanned[dir] = true
			continue
		}
		var rep scanReport
		ok, complete := c.scanDir(ctx, dir, ls.dirs[dir], gen, &rep)
		next.add(&rep)
		if !ok {
			continue
		}
		scanned[dir] = true
		c.mu.Lock()
		// Remembered only if nothing could slip by unseen: the scan was
		// complete, the folder old enough, watched, and none of its
		// files lives elsewhere (Docker's folder, with its own changes).
		if complete && stable && watched && !c.hasExternal(dir) {
			c.dirScans[dir] = &dirScan{sig: sig, report: rep}
		} else {
			delete(c.dirScans, dir)
		}
		c.mu.Unlock()
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	// Files in a directory this scan did not read (its link missing for a
	// moment) are kept: forgetting one would make it look new, and be read
	// again, when it is seen next. Those whose directory is gone are not.
	for dir, fs := range c.byDir {
		if !scanned[dir] && dirGone(dir) {
			for _, f := range snapshot(fs) {
				c.forgetIfGone(f, gen)
			}
		}
	}
	for dir := range c.dirScans {
		if !scanned[dir] {
			delete(c.dirScans, dir)
		}
	}
	c.watchReaders(keepWatch)
	c.unwatchExcept(keepWatch)
	c.scan = next
	c.mode = modeNormal
}

// scanLinks reads the glob and resolves its links to container folders. It
// remembers the result while the glob's folder does not change, unless a link
// could not be followed (its target may appear without the folder changing).
func (c *Collector) scanLinks(globDir string, now time.Time, next *scanReport) (*linkScan, bool) {
	sig, stable, sigErr := statDir(globDir, now)
	links, err := filepath.Glob(c.cfg.LogGlob)
	if err != nil {
		c.log.Error("bad log glob", "glob", c.cfg.LogGlob, "err", err)
		return nil, false
	}
	c.globMatched(len(links), now)
	ls := &linkScan{sig: sig, matched: len(links), dirs: map[string]*containerLogs{}, keepWatch: map[string]bool{}}
	cacheable := sigErr == nil && stable
	for _, link := range links {
		dir, restart, ok := c.linkTarget(link, next, ls.keepWatch)
		if !ok {
			cacheable = false
			continue
		}
		cl := ls.dirs[dir]
		if cl == nil {
			pd, err := parseContainerDir(dir)
			if err != nil {
				c.log.Debug("skipping", "link", link, "err", err)
				continue
			}
			cl = &containerLogs{pd: pd, ids: map[int]string{}, links: map[int]string{}}
			ls.dirs[dir] = cl
		}
		if li, ok := parseLinkName(link); ok {
			cl.ids[restart] = li.ContainerID
		}
		cl.links[restart] = link
	}
	c.mu.Lock()
	if cacheable {
		c.links = ls
	} else {
		c.links = nil
	}
	c.mu.Unlock()
	return ls, true
}

// hasExternal reports whether a file of dir being read lives in another
// folder (a link); c.mu is held.
func (c *Collector) hasExternal(dir string) bool {
	for _, f := range c.byDir[dir] {
		if f.realDir != "" {
			return true
		}
	}
	return false
}

// watchReaders keeps the folders of every file being read watched (its
// container folder, and the folder it really is in if it is a link), even
// when no link names them any more, rebuilds extDirs, and says which files
// no watch covers: those are polled. c.mu is held.
func (c *Collector) watchReaders(keep map[string]bool) {
	ext := map[string]map[string]bool{}
	polled := 0
	c.forEachFile(func(f *file) {
		if f.reader == nil {
			return
		}
		keep[f.dir] = true
		c.watch(f.dir)
		ok := c.watched[f.dir]
		if f.realDir != "" {
			keep[f.realDir] = true
			c.watch(f.realDir)
			ok = ok && c.watched[f.realDir]
			if ext[f.realDir] == nil {
				ext[f.realDir] = map[string]bool{}
			}
			ext[f.realDir][f.dir] = true
		}
		if f.polled.Swap(!ok) != !ok {
			f.wake() // let it set or drop its poll timer
		}
		if !ok {
			polled++
		}
	})
	c.extDirs = ext
	c.m.filesPolled.Set(float64(polled))
}

// reconcileReaders makes every reader look at its file and its name again.
func (c *Collector) reconcileReaders() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forEachFile(func(f *file) {
		if f.reader != nil {
			f.dirChanged.Store(true)
			f.wake()
		}
	})
}

// add merges a folder's report into the rescan's.
func (s *scanReport) add(o *scanReport) {
	s.readable += o.readable
	s.unreadable += o.unreadable
	if s.example == "" {
		s.example, s.exampleErr = o.example, o.exampleErr
	}
	for p, r := range o.said {
		if s.said == nil {
			s.said = map[string]string{}
		}
		s.said[p] = r
	}
}

func snapshot(fs []*file) []*file { return append([]*file(nil), fs...) }

// linkTarget resolves one link the glob found to its container log directory
// and restart count; ok=false if it is not to be read.
func (c *Collector) linkTarget(link string, next *scanReport, keepWatch map[string]bool) (dir string, restart int, ok bool) {
	target, err := os.Readlink(link)
	switch {
	case errors.Is(err, fs.ErrInvalid):
		target = link // not a link: the glob names the files themselves
	case err != nil:
		c.mu.Lock()
		c.cannotRead(next, link, err)
		c.mu.Unlock()
		return "", 0, false
	case !filepath.IsAbs(target):
		target = filepath.Join(filepath.Dir(link), target)
	}
	restart, rotated, ok := logName(filepath.Base(target))
	if !ok || rotated {
		c.log.Debug("link target is not a container log", "link", link, "target", target)
		return "", 0, false
	}
	dir = filepath.Dir(target)
	if err := c.roots.checkDir(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// A link made before its target, or caught between a
			// rotation's rename and the new file: watch the nearest
			// existing directory, so the target's creation is noticed.
			if w := c.watchNearest(dir); w != "" {
				keepWatch[w] = true
			}
			return "", 0, false
		}
		c.mu.Lock()
		c.cannotRead(next, link, err)
		c.mu.Unlock()
		return "", 0, false
	}
	return dir, restart, true
}

func isLink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

func dirGone(dir string) bool {
	_, err := os.Stat(dir)
	return errors.Is(err, fs.ErrNotExist)
}

// scanDir identifies every live, rotated and compressed log file of one
// container. ok is false if the directory could not be read; complete,
// if no file vanished while it was looked at.
func (c *Collector) scanDir(ctx context.Context, dir string, cl *containerLogs, gen uint64, next *scanReport) (ok, complete bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		c.mu.Lock()
		c.cannotRead(next, dir, err)
		c.mu.Unlock()
		return false, false
	}
	type name struct {
		path    string
		restart int
		rotated bool
		order   string // oldest first
	}
	var plain, gz []name
	for _, e := range entries {
		n := e.Name()
		if base, ok := strings.CutSuffix(n, ".gz"); ok {
			if restart, rotated, ok := logName(base); ok && rotated {
				gz = append(gz, name{filepath.Join(dir, n), restart, true, n})
			}
			continue
		}
		if restart, rotated, ok := logName(n); ok {
			p := filepath.Join(dir, n)
			plain = append(plain, name{p, restart, rotated, rotationOrder(p)})
			if !rotated && e.Type()&fs.ModeSymlink != 0 {
				for _, r := range dockerRotations(p) {
					if r.gz {
						gz = append(gz, name{r.path, restart, true, r.order})
					} else {
						plain = append(plain, name{r.path, restart, true, r.order})
					}
				}
			}
		}
	}
	// Oldest rotation first, so a container's backlog is read in order.
	sort.Slice(plain, func(i, j int) bool { return plain[i].order < plain[j].order })
	sort.Slice(gz, func(i, j int) bool { return gz[i].order < gz[j].order })
	complete = true
	for _, n := range gz {
		// Compressed rotations are older than plain ones: read first.
		// A .gz whose plain file is still there is the same file: it is
		// matched to the entry (and skipped) once the plain file is gone.
		if !c.examine(ctx, dir, n.path, n.restart, true, true, cl, gen, next) {
			complete = false
		}
	}
	for _, n := range plain {
		if !c.examine(ctx, dir, n.path, n.restart, n.rotated, false, cl, gen, next) {
			complete = false
		}
	}
	if complete {
		c.mu.Lock()
		for _, f := range snapshot(c.byDir[dir]) {
			c.forgetIfGone(f, gen)
		}
		c.mu.Unlock()
	}
	return true, complete
}

// forgetIfGone forgets a file that the scan of its directory did not find,
// once no reader holds it and nothing read from it is outstanding; c.mu is held.
func (c *Collector) forgetIfGone(f *file, gen uint64) {
	if f.seen == gen || f.reader != nil {
		return
	}
	if _, outstanding := f.prog.offset(); outstanding > 0 {
		return
	}
	c.removeFile(f)
}

// rotationOrder sorts rotated files (their timestamp suffix sorts by time)
// before the live file.
func rotationOrder(name string) string {
	if _, rotated, ok := logName(filepath.Base(name)); ok && !rotated {
		return "\xff" + name
	}
	return name
}

// examine identifies one file of a container directory and decides what to
// do with it. It returns false if the file vanished while being looked at
// (the scan of the directory is then not complete).
func (c *Collector) examine(ctx context.Context, dir, path string, restart int, rotated, compressed bool, cl *containerLogs, gen uint64, next *scanReport) bool {
	if !compressed && c.stillReading(dir, path, gen) {
		next.readable++
		return true
	}
	fh, fi, real, err := c.roots.openLog(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false
		}
		c.mu.Lock()
		c.cannotRead(next, path, err)
		c.mu.Unlock()
		return true
	}
	next.readable++
	id, _ := statID(fi)
	cand := &candidate{dir: dir, path: path, real: real, id: id, size: fi.Size(), gz: compressed}
	cand.load = func(n int) ([]byte, error) {
		if compressed {
			return gunzipHead(fh, n)
		}
		return readHead(fh, n)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.identify(cand, gen)
	kept := false
	switch {
	case f == nil:
		kept = c.adoptNew(ctx, cand, fh, restart, rotated, cl, gen)
	case f.reader != nil:
		// Being read: follow a rename, or its compression.
		c.follow(f, cand)
	default:
		c.follow(f, cand)
		kept = c.resume(ctx, f, cand, fh, restart, rotated, cl)
	}
	if !kept {
		fh.Close()
	}
	return true
}

// stillReading reports whether path is the file a reader already follows
// under that name (same inode: while a reader holds it open, the inode
// says it all), and marks it seen; a stat instead of opening and reading its
// head.
func (c *Collector) stillReading(dir, path string, gen uint64) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	id, ok := statID(fi)
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.byPath[path]
	if f == nil || f.reader == nil || f.gz || f.dir != dir || f.path != path || f.id != id {
		return false
	}
	f.seen = gen
	return true
}

// identify finds the entry that the candidate is (the identity rule) and
// marks it seen; c.mu is held. A compressed candidate whose plain file was
// seen in this scan is that file's entry too, but nothing more is done with it.
func (c *Collector) identify(cand *candidate, gen uint64) *file {
	for _, f := range c.byDir[cand.dir] {
		if f.identifies(cand) {
			f.seen = gen
			return f
		}
	}
	return nil
}

// follow records where the file is now: a new name, or, once the plain file
// is gone, its compressed form; c.mu is held.
func (c *Collector) follow(f *file, cand *candidate) {
	if cand.gz && !f.gz {
		if _, err := os.Stat(f.path); err == nil && f.path != cand.path {
			return // the plain file is still there: it names the entry until it goes
		}
		f.gz, f.id = true, cand.id
	}
	if cand.gz {
		f.gzSize = cand.size
	}
	c.rename(f, cand.path)
}

// resume starts reading a known file that no reader holds, if there is
// anything to read: a file from the checkpoint, a drained file that grew, a
// compressed file not read to its end. It returns true if it kept fh.
func (c *Collector) resume(ctx context.Context, f *file, cand *candidate, fh *os.File, restart int, rotated bool, cl *containerLogs) bool {
	if f.done() {
		return false
	}
	start := f.next
	if f.ended {
		if cand.gz || cand.size <= f.end {
			return false // read to its end, waiting for acknowledgements
		}
		start = f.end // a rotated file written to after it was drained
	}
	if !cand.gz && start > cand.size {
		start = 0 // truncated while the agent was away
	}
	if !cand.gz && rotated && start >= cand.size {
		return false
	}
	f.ended = false
	return c.startReader(ctx, f, cand, fh, start, restart, rotated, cl)
}

// adoptNew makes an entry for a file no entry identifies, and reads it from
// where the start mode says; c.mu is held. It returns true if it kept fh.
func (c *Collector) adoptNew(ctx context.Context, cand *candidate, fh *os.File, restart int, rotated bool, cl *containerLogs, gen uint64) bool {
	head := cand.head(fingerprintMax)
	fp := fingerprintOf(head)
	var start int64
	history := false
	switch {
	case c.mode == modeFirstInstall && (rotated || cand.gz):
		// History from before the agent was first installed: remember it
		// as read, so that a restart does not take it for new.
		history = true
	case c.mode == modeFirstInstall && c.cfg.ReadFrom == "tail":
		start = cand.size
	}
	f := newFile(cand.dir, cand.path, cand.id, fp, start)
	f.seen = gen
	if cand.gz {
		f.gzSize = cand.size
	}
	c.addFile(f)
	if history {
		f.doneAtLoad = true
		return false
	}
	return c.startReader(ctx, f, cand, fh, start, restart, rotated, cl)
}

// startReader starts a read loop on f from start; c.mu is held. It returns
// true: the reader owns fh.
func (c *Collector) startReader(ctx context.Context, f *file, cand *candidate, fh *os.File, start int64, restart int, rotated bool, cl *containerLogs) bool {
	var ct content
	var plain *os.File
	if cand.gz {
		gz, err := newGzContent(fh)
		if err != nil {
			c.log.Error("open compressed rotation", "path", cand.path, "err", err)
			return false
		}
		ct = gz
		c.m.compressedResumed.Inc()
		c.log.Info("reading a compressed rotation not read before", "path", cand.path, "offset", start)
	} else {
		ct, plain = plainContent{fh}, fh
	}
	src := newSource(cand.path, cl.links[restart], cl.pd, cl.ids[restart], c.cfg.NodeName)
	fpDone := f.fp.complete(cand.head(f.fp.Len))
	r := c.newReader(f, src, ct, plain, cand.id, f.fp, fpDone, start, !rotated && !cand.gz)
	f.reader = r
	if plain != nil {
		c.byPath[f.path] = f
		// A link to a file in another folder (cri-dockerd): inotify
		// reports its writes there, under its real name.
		if real := cand.real; real != "" && filepath.Dir(real) != filepath.Dir(cand.path) && isLink(cand.path) {
			f.realPath, f.realDir = real, filepath.Dir(real)
			c.byPath[real] = f
			c.watch(f.realDir)
		}
		f.polled.Store(!c.watched[f.dir] || (f.realDir != "" && !c.watched[f.realDir]))
	}
	c.m.filesTailed.Inc()
	// The reader counts in c.wg from its start to its end, parked or not.
	c.wg.Add(1)
	r.resume = func() { go c.runReader(ctx, r) }
	go c.runReader(ctx, r)
	return true
}

// runReader runs a read loop and records how it ended. A reader that parked
// (waiting for a write with no goroutine) is not ended: file.wake runs it
// again.
func (c *Collector) runReader(ctx context.Context, r *reader) {
	end := r.run(ctx)
	if end == endParked {
		return // r is no longer this goroutine's: it may already run in another
	}
	defer c.wg.Done()
	from := r.off
	if end != endDrained {
		from = r.resumeFrom() // the next reader starts fresh, at the oldest record held
	}
	r.close()
	f := r.f
	c.mu.Lock()
	f.reader = nil
	if c.byPath[f.path] == f {
		delete(c.byPath, f.path)
	}
	if f.realPath != "" {
		if c.byPath[f.realPath] == f {
			delete(c.byPath, f.realPath)
		}
		f.realPath, f.realDir = "", ""
	}
	c.changed()
	if end == endDrained {
		f.ended, f.end = true, r.off
	} else {
		if ctx.Err() == nil {
			c.dirty[f.dir] = true // the next rescan starts another reader
		}
		// Stopped, failed, or a deleted file left over
		// deleted_hold_bytes: a next reader (of its .gz, if the kubelet
		// compressed it) starts where this one stopped.
		f.next = from
	}
	c.mu.Unlock()
	c.m.filesTailed.Dec()
}

// watchNearest watches the nearest existing directory on the way to dir, and
// returns it.
func (c *Collector) watchNearest(dir string) string {
	for {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			c.mu.Lock()
			c.watch(dir)
			c.mu.Unlock()
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
