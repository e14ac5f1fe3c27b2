package collector

import (
	"bytes"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Format of a container log file, detected from its first non-empty line.
type Format uint8

const (
	FormatUnknown Format = iota
	FormatCRI            // containerd, CRI-O: "<time> <stream> <P|F> <message>"
	FormatDocker         // Docker json-file: {"log":"...","stream":"...","time":"..."}
)

func (f Format) String() string {
	switch f {
	case FormatCRI:
		return "cri"
	case FormatDocker:
		return "docker"
	}
	return "unknown"
}

// detectFormat tells the format from a file's first line with content:
// Docker's lines are JSON objects, CRI lines start with a timestamp. JSON allows
// whitespace before the object (and a CRI line never starts with any), so it is
// skipped: a line the Docker decoder would read must not make the file CRI. An
// empty or blank line says nothing (FormatUnknown).
func detectFormat(line []byte) Format {
	line = bytes.TrimLeft(line, " \t\r")
	switch {
	case len(line) == 0:
		return FormatUnknown
	case line[0] == '{':
		return FormatDocker
	}
	return FormatCRI
}

// defaultMaxRecord is the largest message a decoder joins from partial lines
// when its caller does not say.
const defaultMaxRecord = 1 << 20

// decoder turns the lines of one file into records. One per file, not safe for
// concurrent use.
//
// Records of a single full line point into the caller's line buffer (zero-copy;
// capacity clipped so an append cannot spill into the next line). Records joined
// from partial lines own their bytes. No record's Log is ever longer than
// maxRecord: a longer message is cut and each cut is counted in recordsSplit.
type decoder struct {
	maxRecord int
	m         *metrics
	parseErr  [3]prometheus.Counter // by Format, looked up once

	fmt      Format
	lastTime int64 // time of the last good line, for malformed ones
	haveTime bool

	// pend holds the partial record being joined, per stream: the runtimes
	// split stdout and stderr independently, and their pieces interleave.
	pend [2]pending

	// now is the wall clock (Unix nanoseconds) of the read being decoded, set
	// by the reader: a pending record's last piece is stamped with it.
	now int64
	// alloc counts the bytes the decoder allocated for records and pending
	// records (joins, unescaped copies, arena blocks): the reader charges
	// them to the memory budget.
	alloc int64

	// After a stall (the reader gave back its memory and went back to the
	// oldest pending record's first line), lines that start before replayEnd
	// were seen before: of those only the pieces of the records dropped at
	// the stall, lines of stream s from replayFrom[s] on, are decoded again.
	replayEnd  int64
	replayFrom [2]int64
	// readEnd is the file offset where the read being decoded ends: a
	// record started during a replay is sized to what is left of it at
	// once, rather than grown piece by piece.
	readEnd int64

	// lineStart is the file offset of the line being decoded; emitAt, while
	// emit runs, that of the first line of the record being emitted (its
	// first piece's, for one joined from partial lines): a multiline joiner
	// holds the checkpoint there while the record is in an open group.
	lineStart, emitAt int64

	// arena holds decoded (unescaped) Docker messages of single-line records,
	// many per allocation. Bytes handed out are never written again; a block
	// is simply abandoned when full and freed once its records are.
	arena []byte
}

// pending is a record being joined from partial lines.
type pending struct {
	active bool
	buf    []byte // the message so far (owned)
	start  int64  // file offset of the line holding buf's first byte
	time   int64  // time of that line
	pieces int    // lines contributing to buf
	last   int64  // wall clock (Unix ns) of the last piece
}

// newDecoder returns a decoder that joins partial lines into messages of at
// most maxRecord bytes (<= 0: 1 MiB). m may be nil (tests).
func newDecoder(maxRecord int, m *metrics) *decoder {
	if maxRecord <= 0 {
		maxRecord = defaultMaxRecord
	}
	if m == nil {
		m = newMetrics(nil)
	}
	d := &decoder{maxRecord: maxRecord, m: m}
	for _, f := range []Format{FormatUnknown, FormatCRI, FormatDocker} {
		d.parseErr[f] = m.parseErrors.WithLabelValues(f.String())
	}
	return d
}

func (d *decoder) format() Format { return d.fmt }

// decode takes one complete line without its '\n', whose first byte is at file
// offset start, and calls emit for every record it completes (0, 1 or more).
// The line must stay unchanged for as long as the emitted records live.
func (d *decoder) decode(line []byte, start int64, emit func(Record)) {
	if start < d.replayEnd && !d.replayed(line, start) {
		return
	}
	d.lineStart = start
	if d.fmt == FormatUnknown {
		d.fmt = detectFormat(line)
	}
	switch d.fmt {
	case FormatCRI:
		d.decodeCRI(line, start, emit)
	case FormatDocker:
		d.decodeDocker(line, start, emit)
	default:
		// An empty or blank line before the format is known: pass it on,
		// like any line that is not what it should be.
		d.malformed(line, emit)
	}
}

// pendingStart is the file offset of the first byte of the oldest partial
// record still being joined (ok=false if none). A checkpoint must not go past
// it, so that a restart re-reads the pieces and joins them intact.
func (d *decoder) pendingStart() (start int64, ok bool) {
	for i := range d.pend {
		p := &d.pend[i]
		if p.active && (!ok || p.start < start) {
			start, ok = p.start, true
		}
	}
	return start, ok
}

// flush emits the pending partial records as they are, oldest first: the file
// is finished for good and the rest of them will never come.
func (d *decoder) flush(emit func(Record)) {
	for {
		i := -1
		for j := range d.pend {
			if d.pend[j].active && (i < 0 || d.pend[j].start < d.pend[i].start) {
				i = j
			}
		}
		if i < 0 {
			return
		}
		p := &d.pend[i]
		d.emitJoined(Stream(i), p.time, p.start, p.buf, p.pieces, emit)
		*p = pending{}
	}
}

// reset forgets pending records (the file was truncated under us: their rest
// is gone) and detects the format again on the next line.
func (d *decoder) reset() {
	d.pend = [2]pending{}
	d.fmt = FormatUnknown
	d.replayEnd = 0
}

// pendingCap is the memory held by the records being joined.
func (d *decoder) pendingCap() int64 {
	var n int64
	for i := range d.pend {
		if d.pend[i].active {
			n += int64(cap(d.pend[i].buf))
		}
	}
	return n
}

// pending reports whether a record is being joined.
func (d *decoder) pending() bool { return d.pend[0].active || d.pend[1].active }

// maxGrowth bounds what decoding one line of n bytes at start may allocate:
// a copy of its message (Docker: unescaped, in an arena block or its own),
// and, for the stream it is on (unknown before it is parsed, so the worst of
// the two), the growth of the record being joined or a new one.
func (d *decoder) maxGrowth(n int, start int64) int64 {
	g := 0
	if d.fmt != FormatCRI {
		g = n + arenaBlock
	}
	worst := 0
	for i := range d.pend {
		switch p := &d.pend[i]; {
		case p.active:
			if len(p.buf)+n > cap(p.buf) {
				worst = max(worst, d.grownCap(len(p.buf)+n, cap(p.buf), n))
			}
		case start < d.replayEnd && start < d.replayFrom[i]:
			// Seen before a stall and sent then: skipped.
		default:
			worst = max(worst, d.newCap(n, start))
		}
	}
	return int64(g + worst)
}

// growth is what decoding this line allocates, looked at more closely than
// maxGrowth: the stream it is on, and whether it is a piece of a record.
func (d *decoder) growth(line []byte, start int64) int64 {
	var s Stream
	var n int
	partial, copied := false, false
	switch d.fmt {
	case FormatCRI:
		_, st, p, msg, ok := parseCRI(line)
		if !ok {
			return 0 // malformed: passed on as it is, zero-copy
		}
		s, partial, n = st, p, len(msg)
	case FormatDocker:
		raw, st, _, shaped := scanDockerFast(line)
		if !shaped {
			var ok bool
			if raw, st, _, ok = parseDockerSlow(line); !ok {
				return 0
			}
		}
		s, n = st, len(raw)
		partial = !rawEndsWithNewline(raw)
		copied = true
	default:
		return d.maxGrowth(len(line), start)
	}
	if start < d.replayEnd && start < d.replayFrom[s] {
		return 0 // skipped
	}
	g := 0
	if copied {
		g = n + arenaBlock
	}
	switch p := &d.pend[s]; {
	case p.active && len(p.buf)+n > cap(p.buf):
		g += d.grownCap(len(p.buf)+n, cap(p.buf), n)
	case !p.active && partial:
		g += d.newCap(n, start)
	}
	return int64(g)
}

// newCap is the capacity of a record started by a piece of n bytes on the
// line at start: room for a few runtime-split pieces (16 KiB each). During
// a replay the record is known to go on to where the reader stalled (the
// window): room for twice that, within the read, at once.
func (d *decoder) newCap(n int, start int64) int {
	c := max(min(max(3*n, 256), d.maxRecord), n)
	if start < d.replayEnd {
		window := int(d.replayEnd - start)
		c = max(c, min(2*window+n, int(d.readEnd-start), d.maxRecord+n))
	}
	return c
}

// grownCap is the capacity a pending record of capacity c that needs need
// bytes grows to, for a piece of n bytes: doubling, for few copies, but
// never beyond what the longest record and its last piece need.
func (d *decoder) grownCap(need, c, n int) int {
	return max(need, min(2*c, d.maxRecord+n))
}

// stall drops the records being joined, because the reader gives back the
// memory it holds and waits for its turn, and arranges for the lines from the
// oldest one's first line up to at (the next line to decode) to be decoded
// again without emitting anything twice. It returns the offset to read from.
func (d *decoder) stall(at int64) (from int64) {
	end := max(at, d.replayEnd)
	from = at
	for i := range d.pend {
		p := &d.pend[i]
		if p.active {
			d.replayFrom[i] = p.start
			from = min(from, p.start)
		} else {
			d.replayFrom[i] = end
		}
		*p = pending{}
	}
	d.replayEnd = end
	return from
}

// replayed reports whether a line seen before a stall is to be decoded again:
// a piece of a record dropped at the stall.
func (d *decoder) replayed(line []byte, start int64) bool {
	var s Stream
	var ok bool
	switch d.fmt {
	case FormatCRI:
		_, s, _, _, ok = parseCRI(line)
	case FormatDocker:
		var shaped bool
		if _, s, _, shaped = scanDockerFast(line); !shaped {
			_, s, _, ok = parseDockerSlow(line)
		} else {
			ok = true
		}
	}
	return ok && start >= d.replayFrom[s]
}

// flushStale emits, oldest first, the records being joined whose last piece
// came before cutoff (wall clock, Unix ns): their rest will not come (a
// container that exited mid-line). It returns how many it emitted.
func (d *decoder) flushStale(cutoff int64, emit func(Record)) (n int) {
	for {
		i := -1
		for j := range d.pend {
			if p := &d.pend[j]; p.active && p.last < cutoff && (i < 0 || p.start < d.pend[i].start) {
				i = j
			}
		}
		if i < 0 {
			return n
		}
		p := &d.pend[i]
		d.emitJoined(Stream(i), p.time, p.start, p.buf, p.pieces, emit)
		*p = pending{}
		n++
	}
}

// oldestPiece is the wall clock of the stalest pending record's last piece
// (ok=false if none).
func (d *decoder) oldestPiece() (last int64, ok bool) {
	for i := range d.pend {
		if p := &d.pend[i]; p.active && (!ok || p.last < last) {
			last, ok = p.last, true
		}
	}
	return last, ok
}

// good notes the time of a well-formed line.
func (d *decoder) good(t int64) {
	d.lastTime, d.haveTime = t, true
}

// malformed passes a line that does not parse on as it is, on stdout, with the
// time of the previous good line, and counts it. Nothing is dropped.
func (d *decoder) malformed(line []byte, emit func(Record)) {
	d.parseErr[d.fmt].Inc()
	t := d.lastTime
	if !d.haveTime {
		t = time.Now().UnixNano()
	}
	d.emitChunks(Stdout, t, d.lineStart, line, 1, emit)
}

// emitFull emits a complete single-line message (zero-copy).
func (d *decoder) emitFull(s Stream, t int64, msg []byte, emit func(Record)) {
	d.emitChunks(s, t, d.lineStart, trimCR(msg), 1, emit)
}

// emitChunks emits msg as one record, or cut into maxRecord-sized records if
// it is longer. The chunks share msg's memory; pieces counts the lines msg was
// joined from (for partialJoins, counted once, on its first record).
func (d *decoder) emitChunks(s Stream, t, start int64, msg []byte, pieces int, emit func(Record)) {
	for len(msg) > d.maxRecord {
		d.emitJoined(s, t, start, msg[:d.maxRecord], pieces, emit)
		d.m.recordsSplit.Inc()
		msg, pieces = msg[d.maxRecord:], 1
	}
	d.emitJoined(s, t, start, msg, pieces, emit)
}

// emitJoined emits one record of at most maxRecord bytes, whose first line
// starts at file offset start.
func (d *decoder) emitJoined(s Stream, t, start int64, msg []byte, pieces int, emit func(Record)) {
	if pieces > 1 {
		d.m.partialJoins.Inc()
	}
	d.emitAt = start
	emit(Record{Time: t, Stream: s, Log: msg[:len(msg):len(msg)]})
}

// beginPiece readies the pending record of stream s for a piece of about
// sizeHint bytes that is on the line at offset start with time t, and returns
// the length of the message before the piece. The caller appends the piece to
// p.buf and calls endPiece.
//
// beginPiece makes room for sizeHint more bytes (the piece's raw length: an
// unescaped piece is never longer), so that the caller's append does not
// allocate: the growth is chosen, and counted, here.
func (d *decoder) beginPiece(p *pending, t, start int64, sizeHint int) int {
	if !p.active {
		c := d.newCap(sizeHint, start)
		d.alloc += int64(c)
		*p = pending{active: true, buf: make([]byte, 0, c), start: start, time: t}
	} else if need := len(p.buf) + sizeHint; need > cap(p.buf) {
		c := d.grownCap(need, cap(p.buf), sizeHint)
		d.alloc += int64(c)
		p.buf = append(make([]byte, 0, c), p.buf...)
	}
	p.last = d.now
	return len(p.buf)
}

// endPiece accounts for the piece just appended to p.buf (the bytes from prev
// on). final says it ended the record. Beyond maxRecord the message is cut at
// the piece boundary (so the rest starts on a line of its own and a checkpoint
// at pendingStart re-reads no byte already emitted); a piece longer than
// maxRecord by itself is cut into maxRecord-sized chunks.
func (d *decoder) endPiece(p *pending, s Stream, prev int, t, start int64, final bool, emit func(Record)) {
	if final {
		p.buf = trimCR(p.buf)
	}
	p.pieces++
	if len(p.buf) > d.maxRecord {
		if prev > 0 {
			d.emitJoined(s, p.time, p.start, p.buf[:prev], p.pieces-1, emit)
			d.m.recordsSplit.Inc()
			p.buf = p.buf[prev:]
			p.pieces, p.start, p.time = 1, start, t
		}
		for len(p.buf) > d.maxRecord {
			d.emitJoined(s, p.time, p.start, p.buf[:d.maxRecord], p.pieces, emit)
			d.m.recordsSplit.Inc()
			p.buf = p.buf[d.maxRecord:]
			p.pieces, p.start, p.time = 1, start, t
		}
	}
	if final {
		d.emitJoined(s, p.time, p.start, p.buf, p.pieces, emit)
		*p = pending{}
	}
}

// trimCR drops one trailing '\r' (apps that end their lines with CRLF).
func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}
