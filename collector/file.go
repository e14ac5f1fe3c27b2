package collector

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// tailer reads one file from an offset to its end, then follows it: it waits
// for writes, notices truncation (copytruncate), rename (the kubelet's
// rotation) and deletion, and drains a rotated or deleted file before leaving it.
type tailer struct {
	c     *Collector
	f     *file
	fh    *os.File
	dec   *decoder
	live  bool  // opened under its live name N.log
	off   int64 // offset of the next byte to read
	carry []byte

	atEnd bool // the last read reached the file's size as last seen

	rotatedAt time.Time // when the live name was found to name another file
	lastGrow  time.Time
	deleted   bool
	held      int64 // unread bytes counted in Collector.deletedHeld
	fpDone    bool  // the file's fingerprint covers fingerprintBytes

	records, bytes prometheus.Counter
}

// newTailer reads f from off; fh is nil for a compressed rotation, which is
// read as a stream instead.
func (c *Collector) newTailer(f *file, fh *os.File, off int64, live bool) *tailer {
	f.read.Store(off)
	return &tailer{
		c: c, f: f, fh: fh, off: off, live: live,
		dec:      newDecoder(c.cfg.MaxRecordBytes, c.m),
		lastGrow: time.Now(),
		records:  c.m.records.WithLabelValues(f.src.Namespace),
		bytes:    c.m.bytes.WithLabelValues(f.src.Namespace),
	}
}

func (c *Collector) tail(ctx context.Context, f *file, fh *os.File, off int64, live bool) {
	t := c.newTailer(f, fh, off, live)
	gone := t.run(ctx)
	fh.Close()
	if t.held > 0 {
		c.deletedHeld.Add(-t.held)
	}
	c.mu.Lock()
	f.tailing = false
	delete(c.byPath, f.path)
	if gone {
		// Deleted and drained: nothing on disk to resume, so nothing to keep.
		delete(c.files, f.id)
	}
	c.mu.Unlock()
	c.m.filesTailed.Dec()
}

// run reads until the file is finished (drained after rotation or deletion:
// returns true if deleted) or ctx is done.
func (t *tailer) run(ctx context.Context) (deleted bool) {
	cfg := &t.c.cfg
	poll := time.NewTimer(cfg.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		fi, err := t.fh.Stat()
		if err != nil {
			t.c.log.Error("stat", "path", t.f.path, "err", err)
			return false
		}
		size := fi.Size()
		t.f.size.Store(size)
		if size < t.off {
			t.truncated()
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 && !t.deleted {
			t.deleted = true
			if !t.holdDeleted(size - t.off) {
				return true
			}
		}
		if size > t.off {
			if err := t.readSome(ctx, size); err != nil {
				if ctx.Err() == nil {
					t.c.log.Error("read", "path", t.f.path, "err", err)
				}
				return false
			}
			t.lastGrow = time.Now()
			continue
		}
		// At the end of the file.
		if t.deleted {
			t.finish(ctx)
			return true
		}
		if t.live && t.rotatedAt.IsZero() && t.renamed() {
			t.rotatedAt = time.Now()
			t.c.m.rotations.WithLabelValues("rename").Inc()
		}
		if !t.live || !t.rotatedAt.IsZero() {
			// A rotated file: the runtime reopens the live name soon after
			// the rename; leave once the file has been quiet for RotateWait.
			if time.Since(t.lastGrow) >= cfg.RotateWait {
				t.finish(ctx)
				return false
			}
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-t.f.notify:
		case <-poll.C:
		}
	}
	return false
}

// renamed reports whether the name the file was opened under now names
// another file or nothing: the kubelet renamed it to N.log.<timestamp>.
func (t *tailer) renamed() bool {
	t.c.mu.Lock()
	path := t.f.src.Path
	t.c.mu.Unlock()
	fi, err := os.Stat(path)
	if err != nil {
		return true
	}
	id, ok := statID(fi)
	return ok && id != t.f.id
}

// truncated starts the file over after a copytruncate.
func (t *tailer) truncated() {
	t.c.m.rotations.WithLabelValues("truncate").Inc()
	t.c.log.Info("file truncated, reading from the start", "path", t.f.path, "offset", t.off)
	t.off = 0
	t.carry = nil
	t.dec.reset()
	t.f.prog.reset(0)
	t.f.read.Store(0)
}

// holdDeleted accounts for keeping a deleted file open to drain it, within
// DeletedHoldBytes over all files. It returns false if the file must be left.
func (t *tailer) holdDeleted(unread int64) bool {
	if unread <= 0 {
		return true
	}
	if t.c.deletedHeld.Add(unread) > t.c.cfg.DeletedHoldBytes {
		t.c.deletedHeld.Add(-unread)
		t.c.m.droppedBytes.WithLabelValues("deleted_hold_cap").Add(float64(unread))
		t.c.log.Warn("deleted file holds too many unread bytes, leaving it", "path", t.f.path, "unread_bytes", unread)
		return false
	}
	t.held = unread
	return true
}

// readSome reads at most ReadBytes, turns complete lines into records and
// sends them as one batch.
func (t *tailer) readSome(ctx context.Context, size int64) error {
	cfg := &t.c.cfg
	want := min(size-t.off, int64(cfg.ReadBytes))
	if err := t.c.budget.Acquire(ctx, want); err != nil {
		return err
	}
	buf := make([]byte, len(t.carry)+int(want))
	copy(buf, t.carry)
	n, err := t.fh.ReadAt(buf[len(t.carry):], t.off)
	if err != nil && !errors.Is(err, io.EOF) {
		t.c.budget.Release(want)
		return errPath("read", t.f.path, err)
	}
	if int64(n) < want {
		t.c.budget.Release(want - int64(n))
	}
	t.atEnd = t.off+int64(n) >= size
	t.consume(ctx, buf[:len(t.carry)+n], n)
	t.updateFingerprint()
	return nil
}

// consume turns the complete lines of data (the carried-over start of a line,
// then n bytes just read, holding n bytes of budget) into records and sends
// them as one batch; an unterminated last line is carried to the next read.
func (t *tailer) consume(ctx context.Context, data []byte, n int) {
	cfg := &t.c.cfg
	t.bytes.Add(float64(n))
	start := t.off - int64(len(t.carry))
	t.off += int64(n)
	t.f.read.Store(t.off)

	recs := make([]Record, 0, len(data)/128+1)
	emit := func(r Record) { recs = append(recs, r) }
	pos := 0
	for {
		i := bytes.IndexByte(data[pos:], '\n')
		if i < 0 {
			break
		}
		t.dec.decode(data[pos:pos+i], start+int64(pos), emit)
		pos += i + 1
	}
	t.carry = data[pos:]
	if len(t.carry) > cfg.MaxRecordBytes+headerSlack {
		// No newline in sight: a line longer than any runtime writes. Pass
		// it on in pieces (the decoder cuts and counts them) rather than
		// hold it without bound.
		t.dec.decode(t.carry, start+int64(pos), emit)
		pos = len(data)
		t.carry = nil
	}
	if len(t.carry) > 0 {
		// The next read copies it; don't pin this buffer for it.
		t.carry = bytes.Clone(t.carry)
	}
	t.send(ctx, recs, start+int64(pos), n)
	if t.held > 0 {
		d := min(int64(n), t.held)
		t.held -= d
		t.c.deletedHeld.Add(-d)
	}
}

// headerSlack is room for the runtime's header beyond a record's message.
const headerSlack = 64 << 10

// send hands a batch of records ending (safely) at consumed on; n bytes of
// budget are held until it is acknowledged.
func (t *tailer) send(ctx context.Context, recs []Record, consumed int64, n int) {
	safe := consumed
	if ps, ok := t.dec.pendingStart(); ok && ps < safe {
		safe = ps
	}
	if len(recs) == 0 {
		t.f.prog.advance(safe)
		t.c.budget.Release(int64(n))
		return
	}
	t.records.Add(float64(len(recs)))
	seq := t.f.prog.add(safe)
	prog, c := t.f.prog, t.c
	c.m.inflightBytes.Add(float64(n))
	b := NewBatch(t.f.src, recs, n, func() {
		prog.ack(seq)
		c.budget.Release(int64(n))
		c.m.inflightBytes.Sub(float64(n))
	})
	b.CaughtUp = t.atEnd
	if err := c.sink.Send(ctx, b); err != nil {
		// Only on shutdown: the records were not delivered, and the
		// checkpoint stays before them, so the next run reads them again.
		c.budget.Release(int64(n))
		c.m.inflightBytes.Sub(float64(n))
	}
}

// finish emits what the decoder still holds (a record whose last piece will
// never come) and the last unterminated line, then leaves the file.
func (t *tailer) finish(ctx context.Context) {
	var recs []Record
	emit := func(r Record) { recs = append(recs, r) }
	if len(t.carry) > 0 {
		t.dec.decode(t.carry, t.off-int64(len(t.carry)), emit)
		t.carry = nil
	}
	t.dec.flush(emit)
	if len(recs) > 0 {
		t.records.Add(float64(len(recs)))
		seq := t.f.prog.add(t.off)
		prog := t.f.prog
		b := NewBatch(t.f.src, recs, 0, func() { prog.ack(seq) })
		b.CaughtUp = true
		t.c.sink.Send(ctx, b)
	} else {
		t.f.prog.advance(t.off)
	}
}

// updateFingerprint extends a short file's fingerprint as it grows, so the
// checkpoint identifies it by as many bytes as it can.
func (t *tailer) updateFingerprint() {
	if t.fpDone {
		return // no lock on the read path once the fingerprint is whole
	}
	fp, n, err := fingerprint(t.fh, fingerprintBytes)
	if err != nil {
		return
	}
	t.c.mu.Lock()
	t.f.fp, t.f.fpLen = fp, n
	t.c.mu.Unlock()
	t.fpDone = n == fingerprintBytes
}
