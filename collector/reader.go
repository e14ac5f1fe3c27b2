package collector

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
)

// reader is the one read loop, for a plain log file and a compressed rotation
// alike (see content): it reads whole lines from an offset, decodes them into
// records and sends them in batches; it follows a live file, notices
// truncation (copytruncate: the size shrinks, or the first line changed),
// rename (the kubelet's rotation) and deletion, and drains a rotated, deleted
// or compressed file before leaving it.
//
// Each read starts at a line's start: an unterminated last line is read
// again, whole, once the rest of it is there. So between reads a reader
// holds no file bytes, only the records it is joining from partial lines
// (and, for a compressed stream, the unterminated line, rather than
// decompress everything again).
type reader struct {
	c       *Collector
	f       *file
	src     *Source
	content content
	dec     *decoder
	plain   *os.File // the plain file, nil for a compressed one
	live    bool     // opened under its live name N.log: followed until renamed
	openID  fileID   // inode of the plain file held open
	fp      fingerprint
	fpDone  bool // fp covers the whole first line: it will not change
	// verify: the reader paused (waited for writes, for memory, or for
	// the sink) since it last compared the first line: a copytruncate may
	// have replaced the content meanwhile, grown past the offset.
	verify bool
	// tail is the line that ends at tailOff, as last read (its length and
	// hash): while tailOff is off, the read after a pause starts at that
	// line and compares it (checkTail), in place of the first-line check.
	// A copytruncate that grew the file back past off replaced it too (it
	// carries the runtime's timestamp, like the first line), and the check
	// costs no system call of its own: a file written a line at a time is
	// read after every pause.
	tailOff   int64
	tailLen   int
	tailSum   uint64
	checkTail bool
	// lastN is how many new bytes the last read returned (-1: it did not
	// read): the size of the next read without a stat (readBlind).
	lastN int
	blind bool // reading without a stat: the size given is a guess

	off     int64 // next byte to decode: always the start of a line
	seen    int64 // end of the last read: nothing new until the content grows past it
	counted int64 // bytes counted in bytes_total up to here
	want    int   // size of the next read: read_bytes, more for a long line or a replay
	// joinRoom is room asked for, beside the read, for the records a
	// replay joins again (they may fill the whole read).
	joinRoom int64
	// gaveBackAt is where the reader last gave back what it was joining;
	// escalate is the extra room it asks for, doubled each time it gives
	// back at the same place.
	gaveBackAt int64
	escalate   int64

	// held is budget held by the reader: between reads exactly what it
	// keeps (records being joined, a stream's kept line); during a read, also
	// the read buffer and room for what decoding allocates. charge is the
	// memory accounted for, plus what the decoder allocated since allocMark.
	held      int64
	charge    int64
	allocMark int64
	bufHeld   int64 // the read buffer being decoded (its own charge)

	atEnd     bool // the last read reached what there was
	rotatedAt time.Time
	lastGrow  time.Time
	deleted   bool
	deletedAt int64 // unread bytes counted in Collector.deletedHeld

	records, bytes prometheus.Counter

	// resume starts the read loop again in a new goroutine (file.wake,
	// once parked); timer is the loop's, kept across goroutines.
	resume func()
	timer  *time.Timer

	policyState // multiline joiner, rate limiter (policyread.go)
}

// ending is how a read loop ended.
type ending int

const (
	endCanceled ending = iota // the collector stops
	endFailed                 // an error; a rescan starts another reader
	endDrained                // read to its end for good
	endGaveUp                 // deleted, and over deleted_hold_bytes: the rest is lost
	endParked                 // waiting for a write with no goroutine: file.wake resumes it
)

// headerSlack is room for the runtime's header beyond a record's message.
const headerSlack = 64 << 10

func (c *Collector) newReader(f *file, src *Source, ct content, plain *os.File, id fileID, fp fingerprint, fpDone bool, off int64, live bool) *reader {
	f.read.Store(off)
	return &reader{
		c: c, f: f, src: src, content: ct, plain: plain, openID: id, live: live,
		fp: fp, fpDone: plain == nil || fpDone, verify: true, tailOff: -1,
		off: off, seen: off, counted: off, want: c.cfg.ReadBytes,
		dec:      newDecoder(c.cfg.MaxRecordBytes, c.m),
		lastGrow: time.Now(),
		records:  c.m.records.WithLabelValues(src.Namespace),
		bytes:    c.m.bytes.WithLabelValues(src.Namespace),
	}
}

// run reads until the file is finished or ctx is done.
//
// Reading is driven by inotify (Collector.watchEvents wakes the reader on a
// write to the file, and on a rename, creation or removal in its folder):
// a quiet file costs no wake-up, stat or read until it is written. A timer is
// set only for what inotify cannot say: the polling fallback (the file's
// folder could not be watched, see file.polled), a record being joined that
// partial_flush_timeout will send, and a rotated file's rotate_wait. The
// read_wait that gathers the lines of a file written a line at a time is
// the waker's.
//
// While it waits for a write with no timer set (a quiet live file, the
// common case on a node), the reader parks: its goroutine ends, and the
// next wake-up (file.wake) starts another. A node's thousands of quiet
// files then cost no goroutine, no stack for the garbage collector to scan
// and no scheduler work; only the files being written have one.
func (r *reader) run(ctx context.Context) ending {
	if r.timer == nil {
		// Go 1.23 timers: Reset and Stop leave no stale tick in the channel.
		r.timer = time.NewTimer(time.Hour)
		r.timer.Stop()
	}
	timer := r.timer
	look := true // stat the file before waiting: something may be there
	for ctx.Err() == nil {
		cfg := r.c.live() // a reload may change it
		if look {
			// Wake-ups queued before this look are covered by it.
			select {
			case <-r.f.notify:
			default:
			}
			done, err := r.readBlind(ctx, cfg)
			if err != nil {
				if ctx.Err() != nil {
					return endCanceled
				}
				r.c.log.Error("read", "path", r.src.Path, "err", err)
				return endFailed
			}
			if done && r.f.dirChanged.Load() {
				continue // its name to look at (with a stat)
			}
			if !done {
				st, err := r.content.stat()
				if err != nil {
					r.c.log.Error("stat", "path", r.src.Path, "err", err)
					return endFailed
				}
				readable := st.size > max(r.off, r.seen)
				r.checkTail = false
				if r.plain != nil {
					r.f.size.Store(st.size)
					// copytruncate: the file shrank, or (grown again past the
					// offset while reading was paused) its first line, or the
					// line before the offset, changed. The line before the
					// offset is compared by the read itself (readSome), if it
					// is known and the read stays within read_bytes.
					verify := readable && r.off > 0 && r.verify
					if verify && r.tailOff == r.off && r.readLen(st.size)+r.tailLen <= r.c.cfg.ReadBytes {
						r.checkTail, verify = true, false
					}
					if st.size < r.off || (verify && !r.sameHead()) {
						r.truncated(ctx)
						continue
					}
					if readable {
						r.verify = false
					}
					if st.deleted && !r.deleted {
						r.deleted = true
						r.f.deleted.Store(true)
						if !r.holdDeleted(st.size - r.off) {
							return endGaveUp
						}
					}
					if r.deleted {
						r.c.deletedHeld.Add(st.size - r.off - r.deletedAt)
						r.deletedAt = st.size - r.off
					}
				}
				if readable {
					if err := r.readSome(ctx, st.size, false); err != nil {
						if ctx.Err() != nil {
							return endCanceled
						}
						r.c.log.Error("read", "path", r.src.Path, "err", err)
						return endFailed
					}
					r.lastGrow = time.Now()
					r.f.notBefore.Store(r.lastGrow.Add(r.c.currentReadWait()).UnixNano())
					if r.seen < st.size || !r.followed() || r.f.dirChanged.Load() {
						// More to read (or readSome returned without reading,
						// having waited for memory), its name to look at, or
						// nothing will say when there is more.
						continue
					}
					// Read all the stat said there was: a write since then has
					// woken the reader (the notify channel holds it), so wait.
				} else if st.final || r.deleted || r.rotatedAndQuiet() {
					// Nothing new to read, and nothing more will come.
					if err := r.finish(ctx, st.size); err != nil {
						if ctx.Err() != nil {
							return endCanceled
						}
						r.c.log.Error("read", "path", r.src.Path, "err", err)
						return endFailed
					}
					return endDrained
				}
			}
		}
		r.flushStale(ctx)
		r.trim()
		wait := time.Duration(-1) // no timer: inotify wakes the reader
		if r.polled() || r.plain == nil || r.deleted {
			wait = cfg.PollInterval
		}
		if !r.live || !r.rotatedAt.IsZero() {
			wait = minWait(wait, max(cfg.RotateWait-time.Since(r.lastGrow), time.Millisecond))
		}
		// A record being joined from partial lines, or a multiline group,
		// due to be sent as it is.
		wait = r.staleWait(wait)
		if wait >= 0 {
			timer.Reset(wait)
		} else {
			timer.Stop()
			if r.park(ctx) {
				return endParked
			}
			// Woken meanwhile: look again (park set verify, as after
			// any pause).
			look = true
			continue
		}
		// A write wakes the reader at once if it last read more than
		// read_wait ago, else then (waker): a file written a line at a
		// time is read a few lines at a time.
		select {
		case <-ctx.Done():
			return endCanceled
		case <-r.f.notify:
		case <-timer.C:
		}
		r.verify = true
		look = true
	}
	return endCanceled
}

// park lets the reader's goroutine end while it waits for a write, with no
// timer to wait for: file.wake starts it again. It returns false if a
// wake-up came in the meantime (or ctx is done): the reader goes on in this
// goroutine. Once it returned true, another goroutine may run the reader.
func (r *reader) park(ctx context.Context) bool {
	r.verify = true // as after any pause
	r.f.parked.Store(&r.resume)
	// A wake-up sent before the Store found nothing to start: its token is
	// in notify. One sent after it started another goroutine, or will.
	if len(r.f.notify) == 0 && ctx.Err() == nil {
		return true
	}
	return !r.f.parked.CompareAndSwap(&r.resume, nil)
}

// readBlind reads a followed file that a write woke without looking at
// its size first (no fstat): the read says how far it goes. It starts at
// the line before the offset and compares it, as after any pause (a
// truncation is seen: the line changed, or is not there whole), and asks
// for twice what the last read returned (at least blindMin). It reports
// whether it read to the end of the file; otherwise (nothing to read this
// way, the read filled its buffer, it waited, or it found a truncation) the
// caller looks at the file with a stat as usual. Not for a file whose
// folder changed (a rename or removal: its name and link count are looked
// at), one still catching up (its last read did not reach the end: reads
// of read_bytes, sized by the stat, as in bulk), a rate-limited one (its reservation is of what the stat says there
// is), or a first read (the line before the offset is not known).
func (r *reader) readBlind(ctx context.Context, cfg *Config) (bool, error) {
	if !r.atEnd || !r.followed() || r.f.dirChanged.Load() || r.tailOff != r.off || r.off < int64(r.tailLen) || r.tailLen == 0 {
		return false, nil
	}
	if err := r.askPolicy(ctx); err != nil || r.lim != nil {
		return false, err
	}
	guess := min(max(2*r.lastN, blindMin), r.want, r.c.cfg.ReadBytes-r.tailLen)
	b := r.c.budget
	if guess < blindMin || b.tight(int64(r.tailLen+guess)+int64(guess)/2+b.slack()+r.joinRoom) {
		// Short of memory: the read would wait for room, and the stat
		// says meanwhile how much is waiting (lag_bytes, /debug/files).
		return false, nil
	}
	from := r.off
	r.checkTail, r.lastN, r.blind = true, -1, true
	err := r.readSome(ctx, r.off+int64(guess), false)
	r.blind = false
	if err != nil {
		return false, err
	}
	if r.lastN < 0 || r.off < from || !r.atEnd {
		return false, nil
	}
	r.verify = false // the read compared the line before the offset
	r.f.size.Store(r.seen)
	r.lastGrow = time.Now()
	r.f.notBefore.Store(r.lastGrow.Add(r.c.currentReadWait()).UnixNano())
	return true, nil
}

// blindMin is the least a read without a stat asks for.
const blindMin = 256

// minWait is the shorter of two waits, where a negative one is none.
func minWait(a, b time.Duration) time.Duration {
	if a < 0 {
		return b
	}
	return min(a, b)
}

// sameHead reports whether the file still starts with the line it started
// with when the reader opened it.
func (r *reader) sameHead() bool {
	buf := r.c.pools.head()
	defer r.c.pools.putHead(buf)
	return r.fp.matches(r.plain, *buf)
}

// followed reports whether the reader follows a live file that inotify
// covers: it then waits for an event, with no timer, once it has read all
// there was. Any other (rotated, deleted, compressed, polled) is looked at
// again until it is finished.
func (r *reader) followed() bool {
	return r.live && r.rotatedAt.IsZero() && r.plain != nil && !r.deleted && !r.polled()
}

// polled reports whether no inotify watch covers the file: it is looked at
// every poll_interval instead.
func (r *reader) polled() bool { return r.f.polled.Load() }

// rotatedAndQuiet reports whether the file was rotated away (renamed: the
// runtime reopens the live name soon after) and has been quiet for
// rotate_wait since its last growth. The name is looked at only when its
// folder changed (inotify) or when the file is polled.
func (r *reader) rotatedAndQuiet() bool {
	if r.live && r.rotatedAt.IsZero() && (r.f.dirChanged.Swap(false) || r.polled()) && r.renamed() {
		r.rotatedAt = time.Now()
		r.c.m.rotations.WithLabelValues("rename").Inc()
	}
	return (!r.live || !r.rotatedAt.IsZero()) && time.Since(r.lastGrow) >= r.c.live().RotateWait
}

// renamed reports whether the name the file was opened under now names
// another file or nothing.
func (r *reader) renamed() bool {
	fi, err := os.Stat(r.src.Path)
	if err != nil {
		return true
	}
	id, ok := statID(fi)
	return ok && id != r.openID
}

// truncated starts the file over after a copytruncate.
func (r *reader) truncated(ctx context.Context) {
	r.c.m.rotations.WithLabelValues("truncate").Inc()
	r.c.log.Info("file truncated, reading from the start", "path", r.src.Path, "offset", r.off)
	r.flushGroups(ctx) // whole lines, read before the truncation
	r.dec.reset()
	r.releaseAll()
	r.off, r.seen, r.counted, r.want = 0, 0, 0, r.c.cfg.ReadBytes
	r.joinRoom, r.gaveBackAt, r.escalate = 0, 0, 0
	r.f.prog.reset(0)
	r.f.read.Store(0)
	r.fpDone = false
	r.fp = fingerprint{}
	r.tailOff, r.checkTail = -1, false
	r.updateFingerprint()
}

// tailMax bounds the line before the offset that a read compares
// (checkTail); a longer one is not remembered, and the first line is
// compared instead.
const tailMax = 1024

// noteTail remembers the line that ends at off, the end of what the last
// read consumed: buf holds the content from bufOff.
func (r *reader) noteTail(buf []byte, bufOff int64) {
	end := r.off - bufOff
	if r.plain == nil || end <= 0 || end > int64(len(buf)) {
		return // nothing consumed by this read: what was noted still holds
	}
	line := buf[:end]
	start := bytes.LastIndexByte(line[:end-1], '\n') + 1
	// buf starts at a line's start (off, or the line before it): so
	// does line.
	line = line[start:]
	if len(line) > tailMax {
		r.tailOff = -1
		return
	}
	r.tailOff, r.tailLen, r.tailSum = r.off, len(line), hash64(line)
}

// holdDeleted accounts for keeping a deleted file open to drain it, within
// deleted_hold_bytes over all files. It returns false if the file must be left.
func (r *reader) holdDeleted(unread int64) bool {
	if unread <= 0 {
		return true
	}
	if r.c.deletedHeld.Add(unread) > r.c.live().DeletedHoldBytes {
		r.c.deletedHeld.Add(-unread)
		r.c.m.droppedBytes.WithLabelValues("deleted_hold_cap").Add(float64(unread))
		r.c.log.Warn("deleted file holds too many unread bytes, leaving it", "path", r.src.Path, "unread_bytes", unread)
		return false
	}
	r.deletedAt = unread
	return true
}

// readLen is the size of the next read.
func (r *reader) readLen(size int64) int {
	return int(min(size-r.off, int64(r.want)))
}

// readSome reads from off, up to want bytes, and sends the records of the
// complete lines as one batch. final: the content ends at size for good, so
// an unterminated last line is a record too.
func (r *reader) readSome(ctx context.Context, size int64, final bool) error {
	if err := r.askPolicy(ctx); err != nil {
		return err
	}
	want := r.readLen(size)
	if waited, err := r.rateWait(ctx, size, want); waited || err != nil {
		return err // the file may have changed while we waited: look again
	}
	tail := 0 // bytes of the line before off read again, to compare
	if r.checkTail && r.tailOff == r.off && r.off >= int64(r.tailLen) {
		tail = r.tailLen
	}
	b := r.c.budget
	for {
		// Room for the read, some for what decoding allocates (and,
		// after a stall, for the records it joins again) is waited for;
		// more room for decoding is taken below if free, and waited for
		// while decoding if need be.
		need := min(int64(tail+want)+int64(want)/2+b.slack()+r.joinRoom, b.maxRequest()) - (r.held - r.keeps())
		if need <= 0 {
			break // room taken before
		}
		if b.tryAcquire(need) {
			r.held += need
			break
		}
		got, err := r.waitFor(ctx, need)
		if err != nil {
			return err
		}
		if !got {
			want = r.readLen(size) // gave back: a replay, longer
			continue
		}
		// The file may have changed while we waited (truncated, say): look
		// at it again before reading, with the room in hand.
		r.verify = true
		return nil
	}
	r.checkTail = false
	buf := r.c.pools.buffer(tail + want)
	// The buffer's room moves from the reader to the buffer's own charge,
	// released once decoding is done and every batch pointing into it is
	// acknowledged.
	bc := &bufCharge{b: b, m: r.c.m, pools: r.c.pools, buf: buf, n: int64(cap(buf))}
	bc.refs.Store(1)
	defer bc.unref()
	r.held -= bc.n
	r.bufHeld = bc.n
	defer func() { r.bufHeld = 0 }()
	r.charge, r.allocMark = r.keeps(), r.dec.alloc
	bufOff := r.off - int64(tail)
	n, err := r.content.readAt(buf, bufOff)
	if err != nil && !errors.Is(err, io.EOF) {
		r.trim()
		return errPath("read", r.src.Path, err)
	}
	if tail > 0 {
		if n < tail || hash64(buf[:tail]) != r.tailSum {
			// copytruncate, grown back past the offset while reading
			// was paused: the line before the offset is another.
			r.trim()
			r.truncated(ctx)
			return nil
		}
		n -= tail
	}
	full := buf[:tail+n]
	buf = full[tail:]
	r.lastN = n
	r.seen = r.off + int64(n)
	if r.seen > r.counted {
		r.bytes.Add(float64(r.seen - max(r.counted, r.off)))
		r.counted = r.seen
	}
	r.f.read.Store(r.seen)
	r.f.lastRead.Store(time.Now().UnixNano())
	// A read without a stat (blind) knows no size: only a short read
	// (io.EOF) reached the end.
	r.atEnd = (!r.blind && r.seen >= size) || errors.Is(err, io.EOF)
	from := r.off
	if err := r.consume(ctx, buf, bc, final && r.atEnd); err != nil {
		return err
	}
	// The rate limit is charged what was consumed: an unterminated last
	// line, read again whole next time, stays paid for (prepaid) until then.
	r.spent(int(max(r.off-from, 0)))
	r.noteTail(full, bufOff)
	r.trim()
	r.updateFingerprint()
	r.flushStale(ctx)
	return nil
}

// waitFor waits for n bytes of room. The reader may keep what it holds
// meanwhile only if that is little (budget.holdWhileWaiting); otherwise it
// gives back the records it is joining first (got=false: it rewound, to read
// them again).
func (r *reader) waitFor(ctx context.Context, n int64) (got bool, err error) {
	b := r.c.budget
	hold := r.keeps()
	holding := r.dec.pending()
	if holding && !b.holdWhileWaiting(hold) {
		r.giveBack(0)
		return false, nil
	}
	n += r.dropSurplus()
	m, err := b.acquire(ctx, n)
	if holding {
		b.doneWaiting(hold)
	}
	if err != nil {
		return false, err
	}
	r.held += m
	r.verify = true // the file may have changed while we waited
	return true, nil
}

// acquireHolding waits for n bytes while holding hold bytes, for which
// budget.holdWhileWaiting was granted.
func (r *reader) acquireHolding(ctx context.Context, n, hold int64) error {
	n += r.dropSurplus()
	m, err := r.c.budget.acquire(ctx, n)
	r.c.budget.doneWaiting(hold)
	if err != nil {
		return err
	}
	r.held += m
	r.verify = true
	return nil
}

// dropSurplus gives back, before waiting, what the reader holds beyond what
// it keeps (a waiting reader holds no more than it reserved), and returns it.
func (r *reader) dropSurplus() int64 {
	surplus := r.held - r.keeps()
	if surplus <= 0 {
		return 0
	}
	r.c.budget.release(surplus)
	r.held -= surplus
	r.charge, r.allocMark = r.keeps(), r.dec.alloc
	return surplus
}

// bufCharge is the budget held for one read buffer.
type bufCharge struct {
	b        *budget
	m        *metrics
	pools    *pools
	buf      []byte
	n        int64
	refs     atomic.Int32 // the reader while it decodes, and each batch pointing into buf
	inflight bool         // counted in inflight_bytes, by the first batch
}

func (bc *bufCharge) unref() {
	if bc.refs.Add(-1) == 0 {
		bc.b.release(bc.n)
		if bc.inflight {
			bc.m.inflightBytes.Sub(float64(bc.n))
		}
		bc.pools.putBuffer(bc.buf) // no record points into it any more
	}
}

// keeps is the memory the reader keeps between reads.
func (r *reader) keeps() int64 { return r.dec.pendingCap() + r.content.held() + r.joinerHeld() }

// consume decodes the complete lines of data, read from off, and sends their
// records as one batch (more if it runs short of memory on the way). With
// final, an unterminated last line is one too. It returns an error only
// when ctx is done.
func (r *reader) consume(ctx context.Context, data []byte, bc *bufCharge, final bool) error {
	start := r.off
	maxLine := r.c.cfg.MaxRecordBytes + headerSlack
	recs := r.c.pools.records(len(data)/128 + 1)
	emit := r.joinInto(func(rec Record) { recs = append(recs, rec) })
	r.dec.now = time.Now().UnixNano()
	r.dec.readEnd = start + int64(len(data))
	pos := 0
	for pos < len(data) {
		end := bytes.IndexByte(data[pos:], '\n')
		next := pos + end + 1
		switch {
		case end >= 0:
		case final:
			end, next = len(data)-pos, len(data)
		case pos == 0 && len(data) >= r.want && r.want < maxLine:
			// A line longer than this read: read it again, whole, with
			// a longer read.
			r.want = min(2*r.want, maxLine)
		case pos == 0 && len(data) >= maxLine:
			// No newline in sight: a line longer than any runtime writes.
			// Pass it on in pieces (the decoder cuts and counts them)
			// rather than hold it without bound.
			end, next = len(data), len(data)
		}
		if end < 0 {
			break
		}
		line := data[pos : pos+end]
		used := r.charge + r.dec.alloc - r.allocMark + r.dec.maxGrowth(len(line), start+int64(pos))
		if r.j != nil {
			used += r.j.MaxGrowth(len(line))
		}
		if used > r.held {
			// The quick bound says no room: look at what this line
			// really needs (its stream, whether it is a piece).
			used += r.dec.growth(line, start+int64(pos)) - r.dec.maxGrowth(len(line), start+int64(pos))
		}
		if used > r.held && !r.topUp(used-r.held) {
			// No room to decode this line: send what was decoded, then
			// wait for room, keeping the read and the records being
			// joined if that is little; otherwise stop here (the next
			// read starts at this line, asking for room for it too).
			lineNeed := used - (r.charge + r.dec.alloc - r.allocMark)
			r.off = start + int64(pos)
			r.cut(ctx, recs, r.off, bc)
			hold := r.keeps() + bc.n
			if !r.c.budget.holdWhileWaiting(hold) {
				r.seen = r.off
				r.joinRoom = max(r.joinRoom, lineNeed)
				r.content.retain(r.off)
				return nil
			}
			recs = r.c.pools.records((len(data)-pos)/128 + 1)
			if err := r.acquireHolding(ctx, lineNeed+r.c.budget.slack(), hold); err != nil {
				return err
			}
			continue
		}
		r.dec.decode(line, start+int64(pos), emit)
		pos = next
	}
	r.off = start + int64(pos)
	r.content.retain(r.off)
	r.charge += r.content.held()
	if r.off >= r.dec.replayEnd {
		r.joinRoom = 0
		if !r.dec.pending() && pos > 0 {
			r.want = r.c.cfg.ReadBytes
		}
	}
	r.cut(ctx, recs, r.off, bc)
	return nil
}

// topUp takes n more bytes (and some slack) for decoding, if they are free.
func (r *reader) topUp(n int64) bool {
	if r.held+r.bufHeld >= r.c.budget.maxRequest() {
		return true // holding the most a reader may: more can never come
	}
	n = min(n+r.c.budget.slack(), r.c.budget.maxRequest()-r.held)
	if !r.c.budget.tryAcquire(n) {
		return false
	}
	r.held += n
	return true
}

// giveBack drops the records being joined and everything the reader holds,
// and goes back to the first line of the oldest of them (decoder.stall), to
// read and join them again in one go once there is room: next bytes more
// than what they span.
func (r *reader) giveBack(next int) {
	// Given back again where it was last time: the room asked for was
	// short. Ask for more each time, up to the most a reader may hold
	// (where it may then overdraw): it gets past this line at last.
	if r.off <= r.gaveBackAt {
		r.escalate = max(2*r.escalate, r.c.budget.slack())
	} else {
		r.escalate = 0
	}
	r.gaveBackAt = r.off
	from := r.dec.stall(r.off)
	span := int(r.off-from) + next
	r.want = max(r.want, span+r.c.cfg.ReadBytes)
	r.joinRoom = int64(2*span) + r.escalate
	r.off, r.seen = from, from
	r.content.retain(from)
	r.releaseAll()
	r.c.m.memoryStalls.Inc()
}

// releaseAll gives back all the reader holds (it keeps nothing).
func (r *reader) releaseAll() {
	r.c.budget.release(r.held)
	r.held, r.charge, r.allocMark = 0, 0, r.dec.alloc
}

// trim gives back what the reader holds beyond what it keeps.
func (r *reader) trim() {
	keep := r.keeps()
	if r.held > keep {
		r.c.budget.release(r.held - keep)
		r.held = keep
	}
	r.charge, r.allocMark = keep, r.dec.alloc
}

// cut sends recs, the records decoded up to consumed, as one batch holding
// the memory they use (the copies they own; and the read buffer bc, if they
// point into it) until it is acknowledged. The checkpoint may move to
// consumed, or to the first line of the oldest record still being joined.
func (r *reader) cut(ctx context.Context, recs []Record, consumed int64, bc *bufCharge) {
	if r.j != nil && bc != nil {
		r.j.Own() // the groups outlive the read buffer
	}
	charged := r.charge + r.dec.alloc - r.allocMark
	keep := r.keeps()
	// Never more than the reader holds: a batch releases what it takes.
	give := min(max(charged-keep, 0), r.held)
	r.held -= give
	r.charge, r.allocMark = keep, r.dec.alloc
	safe := r.safeOffset(consumed)
	if len(recs) == 0 {
		r.f.prog.advance(safe)
		r.c.budget.release(give)
		r.c.pools.putRecords(recs)
		return
	}
	r.records.Add(float64(len(recs)))
	seq := r.f.prog.add(safe)
	prog, c := r.f.prog, r.c
	inflight := give
	if bc != nil && pointsInto(recs, bc.buf) {
		bc.refs.Add(1)
		if !bc.inflight {
			bc.inflight = true
			inflight += bc.n
		}
	} else {
		bc = nil
	}
	c.m.inflightBytes.Add(float64(inflight))
	release := func() {
		c.budget.release(give)
		c.m.inflightBytes.Sub(float64(give))
		if bc != nil {
			bc.unref()
		}
		c.pools.putRecords(recs) // delivered: nothing reads them any more
	}
	b := NewBatch(r.src, recs, int(inflight), func() {
		prog.ack(seq)
		release()
	})
	// Nothing more of this file soon: it was read to its end, or the
	// memory budget is full, so the next read waits for acknowledgements
	// (an output holding this batch for its batch age would make it wait
	// that long).
	b.CaughtUp = r.atEnd || r.c.budget.tight(min(int64(r.want)+r.joinRoom+r.c.budget.slack(), r.c.budget.size()))
	sent := time.Now()
	err := c.sink.Send(ctx, b)
	if time.Since(sent) > time.Millisecond {
		r.verify = true // the sink pushed back: reading was paused
	}
	if err != nil {
		// Only on shutdown: the records were not delivered, and the
		// checkpoint stays before them, so the next run reads them again.
		release()
	}
}

// pointsInto reports whether a record's message lies in buf (zero-copy).
func pointsInto(recs []Record, buf []byte) bool {
	if len(buf) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	hi := lo + uintptr(cap(buf))
	for _, rec := range recs {
		if len(rec.Log) > 0 {
			if p := uintptr(unsafe.Pointer(unsafe.SliceData(rec.Log))); p >= lo && p < hi {
				return true
			}
		}
	}
	return false
}

// flushStale sends the records being joined whose next piece has not come for
// partial_flush_timeout (a container that exited mid-line never writes the
// rest, and the checkpoint cannot pass a record still being joined), and the
// multiline groups that got no line for multiline.flush_timeout (the last
// stack trace before a quiet spell).
func (r *reader) flushStale(ctx context.Context) {
	timeout := r.c.live().PartialFlushTimeout
	last, ok := r.dec.oldestPiece()
	partial := ok && timeout > 0 && time.Now().UnixNano()-last >= int64(timeout)
	if !partial && (r.j == nil || !r.j.Open()) {
		r.mlDue = time.Time{}
		return
	}
	var recs []Record
	add := func(rec Record) { recs = append(recs, rec) }
	if partial {
		n := r.dec.flushStale(time.Now().UnixNano()-int64(timeout)+1, r.joinInto(add))
		r.c.m.partialFlushed.Add(float64(n))
	}
	if r.j != nil {
		due, open := r.j.FlushIdle(time.Now(), add)
		r.mlDue = time.Time{}
		if open {
			r.mlDue = due
		}
	}
	if partial || len(recs) > 0 {
		r.cut(ctx, recs, r.off, nil)
	}
}

// finish reads what is left of a file that is finished for good (an
// unterminated last line is a record too), sends the records still being
// joined as they are, and leaves the checkpoint at its end.
func (r *reader) finish(ctx context.Context, size int64) error {
	for r.off < size && ctx.Err() == nil {
		r.seen = r.off
		if err := r.readSome(ctx, size, true); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var recs []Record
	add := func(rec Record) { recs = append(recs, rec) }
	r.dec.flush(r.joinInto(add))
	if r.j != nil {
		r.j.Flush(add)
		r.mlDue = time.Time{}
	}
	r.atEnd = true
	r.cut(ctx, recs, r.off, nil)
	r.trim()
	return nil
}

// updateFingerprint extends a short file's fingerprint as it grows, until it
// covers the first line, so the checkpoint identifies the file.
func (r *reader) updateFingerprint() {
	if r.fpDone {
		return // no lock on the read path once the fingerprint is whole
	}
	head, err := readHead(r.plain, fingerprintMax)
	if err != nil {
		return
	}
	fp := fingerprintOf(head)
	r.fpDone = fp.complete(head)
	if fp == r.fp {
		return
	}
	r.fp = fp
	r.c.mu.Lock()
	if r.f.reader == r {
		r.f.fp = fp
		r.c.changed()
	}
	r.c.mu.Unlock()
}

// close releases the reader's file and memory.
func (r *reader) close() {
	if r.timer != nil {
		r.timer.Stop()
	}
	r.closePolicy()
	r.content.close()
	r.dec.stall(r.off)
	r.releaseAll()
	if r.deletedAt > 0 {
		r.c.deletedHeld.Add(-r.deletedAt)
		r.deletedAt = 0
	}
}
