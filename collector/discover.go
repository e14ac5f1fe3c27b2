package collector

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// containerLogs is one container log directory and what the links say of it.
type containerLogs struct {
	pd    podDir
	ids   map[int]string // restart count -> container ID, from the link names
	links map[int]string // restart count -> link path
}

// rescan reconciles what is on disk with what is being read: it finds new
// files (live or rotated), follows renames, and prunes files gone for good.
func (c *Collector) rescan(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	links, err := filepath.Glob(c.cfg.LogGlob)
	if err != nil {
		c.log.Error("bad log glob", "glob", c.cfg.LogGlob, "err", err)
		return
	}
	dirs := map[string]*containerLogs{}
	for _, link := range links {
		target, err := filepath.EvalSymlinks(link)
		if err != nil {
			// A link whose target is missing: made before its target, or
			// caught between a rotation's rename and the new file. Its
			// directory may still hold rotated files to read; and the
			// nearest existing directory is watched, so the target's
			// creation is noticed.
			t, rerr := os.Readlink(link)
			if rerr != nil {
				continue
			}
			if !filepath.IsAbs(t) {
				t = filepath.Join(filepath.Dir(link), t)
			}
			c.watchNearest(filepath.Dir(t))
			target = t
		}
		restart, rotated, ok := logName(filepath.Base(target))
		if !ok || rotated {
			c.log.Debug("link target is not a container log", "link", link, "target", target)
			continue
		}
		dir := filepath.Dir(target)
		cl := dirs[dir]
		if cl == nil {
			pd, err := parseContainerDir(dir)
			if err != nil {
				c.log.Debug("skipping", "link", link, "err", err)
				continue
			}
			cl = &containerLogs{pd: pd, ids: map[int]string{}, links: map[int]string{}}
			dirs[dir] = cl
		}
		if li, ok := parseLinkName(link); ok {
			cl.ids[restart] = li.ContainerID
		}
		cl.links[restart] = link
	}

	seen := map[fileID]bool{}
	scanned := map[string]bool{}
	names := make([]string, 0, len(dirs))
	for dir := range dirs {
		names = append(names, dir)
	}
	sort.Strings(names)
	for _, dir := range names {
		c.mu.Lock()
		c.watch(dir)
		c.mu.Unlock()
		if c.scanDir(ctx, dir, dirs[dir], seen) {
			scanned[dir] = true
		}
	}

	// Forget files gone for good: not found in a directory that was just
	// read, or whose directory is gone. A file in a directory this scan did
	// not read (its link missing for a moment) is kept: forgetting it would
	// make it look new, and be read again, when it is seen next.
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, f := range c.files {
		if seen[id] || f.tailing {
			continue
		}
		if scanned[f.dir] || dirGone(f.dir) {
			delete(c.files, id)
		}
	}
	c.started = true
}

func dirGone(dir string) bool {
	_, err := os.Stat(dir)
	return errors.Is(err, fs.ErrNotExist)
}

// scanDir looks at every live and rotated log file of one container.
func (c *Collector) scanDir(ctx context.Context, dir string, cl *containerLogs, seen map[fileID]bool) (ok bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	// Oldest rotation first, so a container's backlog is read in order.
	sort.Slice(entries, func(i, j int) bool { return rotationOrder(entries[i].Name()) < rotationOrder(entries[j].Name()) })
	for _, e := range entries {
		restart, rotated, ok := logName(e.Name())
		if !ok {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fh, err := os.Open(path)
		if err != nil {
			continue
		}
		fi, err := fh.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			fh.Close()
			continue
		}
		id, ok := statID(fi)
		if !ok {
			fh.Close()
			continue
		}
		seen[id] = true
		if c.adopt(ctx, fh, fi.Size(), id, path, dir, restart, rotated, cl) {
			continue
		}
		fh.Close()
	}
	c.mu.Lock()
	first := !c.started
	c.mu.Unlock()
	if first {
		c.resumeCompressed(ctx, dir, entries, cl, seen)
	}
	return true
}

// rotationOrder sorts rotated files (their timestamp suffix sorts by time)
// before the live file.
func rotationOrder(name string) string {
	if _, rotated, ok := logName(name); ok && !rotated {
		return "\xff" + name
	}
	return name
}

// adopt decides what to do with a file found on disk. It returns true when it
// kept fh (a reader now owns it).
func (c *Collector) adopt(ctx context.Context, fh *os.File, size int64, id fileID, path, dir string, restart int, rotated bool, cl *containerLogs) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.files[id]
	if f != nil && f.src != nil {
		// Known in this run: follow a rename; keep a drained file as it is,
		// unless its inode was reused for a new file.
		if f.tailing || (f.fpLen == 0 || fileMatches(fh, f.fpLen, f.fp)) {
			if f.path != path {
				if f.tailing {
					delete(c.byPath, f.path)
					c.byPath[path] = f
				}
				f.path = path
			}
			return false
		}
		f = nil
	}
	var off int64
	switch {
	case f != nil && (checkpoint{FPLen: f.fpLen, FP: f.fp}).matches(fh):
		// Known from the checkpoint: resume there.
		off, _ = f.prog.offset()
		if off > size {
			// Truncated while the agent was away.
			off = 0
		}
	case f != nil && f.src == nil && !c.started:
		// A new file took the inode of a checkpointed one that is gone:
		// keep the old entry aside for resumeCompressed, read this one whole.
		c.displaced = append(c.displaced, f)
		off = 0
	case c.started || c.knownDirs[dir]:
		// A file that appeared while running (or while the agent was
		// away from a container it was reading): all of it is new.
		off = 0
	case rotated:
		// History from before the agent was first installed: remember it as
		// read so that a later restart does not mistake it for new.
		off = size
	case c.cfg.ReadFrom == "tail":
		off = size
	}
	src := newSource(path, cl.links[restart], cl.pd, cl.ids[restart], c.cfg.NodeName)
	nf := &file{id: id, path: path, dir: dir, src: src, prog: newProgress(off), notify: make(chan struct{}, 1)}
	nf.fp, nf.fpLen, _ = fingerprint(fh, fingerprintBytes)
	c.files[id] = nf
	if rotated && off >= size {
		return false
	}
	nf.tailing = true
	c.byPath[path] = nf
	c.m.filesTailed.Inc()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.tail(ctx, nf, fh, off, !rotated)
	}()
	return true
}

func fileMatches(fh *os.File, n int, want uint64) bool {
	fp, got, err := fingerprint(fh, n)
	return err == nil && got == n && fp == want
}

// watchNearest watches the nearest existing directory on the way to dir.
func (c *Collector) watchNearest(dir string) {
	for {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			c.mu.Lock()
			c.watch(dir)
			c.mu.Unlock()
			return
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return
		}
		dir = parent
	}
}
