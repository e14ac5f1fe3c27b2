package collector

import (
	"compress/gzip"
	"context"
	"errors"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// A rotated file that the kubelet compressed while the agent was away holds
// the rest of what the checkpoint had not seen acknowledged only in its .gz.
// The kubelet compresses the content as it was, so the fingerprint of the
// first bytes still names the file: the agent resumes inside the
// decompressed stream at the checkpoint's offset. Only files the checkpoint
// knew are read this way; other .gz files are never read.

// resumeCompressed looks, at the agent's first scan of a container's
// directory, for the compressed form of checkpointed files that are gone, and
// for rotations created and compressed while the agent was away.
func (c *Collector) resumeCompressed(ctx context.Context, dir string, entries []os.DirEntry, cl *containerLogs, seen map[fileID]bool) {
	c.mu.Lock()
	var lost []*file
	for id, f := range c.files {
		if f.src == nil && f.dir == dir && !seen[id] && f.fpLen > 0 {
			lost = append(lost, f)
		}
	}
	for _, f := range c.displaced {
		if f.dir == dir && f.fpLen > 0 {
			lost = append(lost, f)
		}
	}
	c.mu.Unlock()
	for _, e := range entries {
		restart, rotated, ok := logName(strings.TrimSuffix(e.Name(), ".gz"))
		if !ok || !rotated || !strings.HasSuffix(e.Name(), ".gz") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		var f *file
		for i, l := range lost {
			if gzipMatches(path, l.fpLen, l.fp) {
				f = l
				lost = append(lost[:i], lost[i+1:]...)
				break
			}
		}
		if f == nil {
			f = c.unseenCompressed(path, dir)
		}
		if f == nil {
			continue
		}
		// From here on the entry names the .gz: its old inode is gone, and
		// may already name another file.
		gzID, ok := statIDPath(path)
		if !ok {
			continue
		}
		c.mu.Lock()
		if c.files[f.id] == f {
			delete(c.files, f.id)
		}
		f.id = gzID
		seen[f.id] = true
		f.src = newSource(path, cl.links[restart], cl.pd, cl.ids[restart], c.cfg.NodeName)
		f.path = path
		f.tailing = true
		c.files[f.id] = f
		c.mu.Unlock()
		c.m.filesTailed.Inc()
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.drainCompressed(ctx, f, path)
		}()
	}
}

// unseenCompressed returns a new entry, to be read from the start, for a
// compressed rotation of a container the previous run was reading that no
// checkpoint names and that was compressed after that run's last save: a
// file created, rotated and compressed while the agent was away. Reading it
// may repeat records; skipping it could lose them.
func (c *Collector) unseenCompressed(path, dir string) *file {
	if !c.knownDirs[dir] || c.lastSaved0.IsZero() {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.ModTime().After(c.lastSaved0) {
		return nil
	}
	id, ok := statID(fi)
	if !ok {
		return nil
	}
	fp, n, err := gzipFingerprint(path)
	if err != nil || n == 0 {
		return nil
	}
	return &file{id: id, path: path, dir: dir, fp: fp, fpLen: n, prog: newProgress(0)}
}

// gzipFingerprint is fingerprint() of the decompressed head of path.
func gzipFingerprint(path string) (uint64, int, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err != nil {
		return 0, 0, err
	}
	buf := make([]byte, fingerprintBytes)
	n, err := io.ReadFull(zr, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, 0, err
	}
	h := fnv.New64a()
	h.Write(buf[:n])
	return h.Sum64(), n, nil
}

// gzipMatches reports whether the decompressed head of path has the fingerprint.
func gzipMatches(path string, n int, want uint64) bool {
	fh, err := os.Open(path)
	if err != nil {
		return false
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err != nil {
		return false
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(zr, buf); err != nil {
		return false
	}
	h := fnv.New64a()
	h.Write(buf)
	return h.Sum64() == want
}

// drainCompressed reads a compressed rotation from the checkpoint's offset to
// its end, and keeps the file's entry until all of it is acknowledged, so a
// crash before then resumes here again.
func (c *Collector) drainCompressed(ctx context.Context, f *file, path string) {
	done := false
	defer func() {
		c.mu.Lock()
		f.tailing = false
		if done {
			delete(c.files, f.id)
		}
		c.mu.Unlock()
		c.m.filesTailed.Dec()
	}()
	off, _ := f.prog.offset()
	fh, err := os.Open(path)
	if err != nil {
		c.log.Error("open compressed rotation", "path", path, "err", err)
		return
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err == nil {
		_, err = io.CopyN(io.Discard, zr, off)
	}
	if err != nil {
		c.log.Error("read compressed rotation", "path", path, "err", err)
		return
	}
	c.log.Info("resuming a rotation compressed while the agent was away", "path", path, "offset", off)
	c.m.compressedResumed.Inc()
	t := c.newTailer(f, nil, off, false)
	for ctx.Err() == nil {
		want := c.cfg.ReadBytes
		if err := c.budget.Acquire(ctx, int64(want)); err != nil {
			return
		}
		buf := make([]byte, len(t.carry)+want)
		copy(buf, t.carry)
		n, err := io.ReadFull(zr, buf[len(t.carry):])
		if n < want {
			c.budget.Release(int64(want - n))
		}
		t.atEnd = err != nil
		t.consume(ctx, buf[:len(t.carry)+n], n)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			t.finish(ctx)
			break
		}
		if err != nil {
			c.log.Error("read compressed rotation", "path", path, "err", err)
			return
		}
	}
	// Keep the entry (and so the checkpoint) until everything is acknowledged.
	tick := time.NewTicker(c.cfg.PollInterval)
	defer tick.Stop()
	for ctx.Err() == nil {
		if acked, outstanding := f.prog.offset(); outstanding == 0 && acked >= t.off {
			done = true
			return
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

func statIDPath(path string) (fileID, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, false
	}
	return statID(fi)
}
