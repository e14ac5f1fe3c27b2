package collector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MultilineLimits bound the groups a Joiner builds.
type MultilineLimits struct {
	MaxLines     int           // lines per joined record
	MaxBytes     int           // bytes per joined record, the "\n" separators included
	FlushTimeout time.Duration // an open group is emitted this long after its last line
}

// maxTentative bounds the lines a group holds before knowing whether they
// belong to it.
const maxTentative = 16

// Joiner joins the records of one file into multiline records by a
// MultilineRule: a stack trace becomes one record. It keeps one group per
// stream, so a group never mixes stdout and stderr, and one Joiner serves
// one file, so a group never spans two files.
//
// It sits after the decoder (it joins complete records, partial lines
// already joined) and before the batch. A record that starts no group and
// continues none goes straight through, unchanged and uncopied; one that
// opens a group is held until the group closes. A joined record has the time
// and stream of its first line and the lines' messages separated by "\n".
//
// While a group is open its first line is not delivered, so the file's
// checkpoint must not pass it: OpenStart gives the offset to hold the
// checkpoint at, as the decoder's pendingStart does for partial lines. After
// a crash, reading resumes at the group's first line and joins the group
// again, whole. The records passed to Add must stay unchanged until they
// are emitted (the decoder's records do).
//
// Not safe for concurrent use.
type Joiner struct {
	rule   *MultilineRule
	lim    MultilineLimits
	m      *multilineMetrics
	joined prometheus.Counter // groups of this rule
	groups [2]mlGroup         // by Stream
	// alloc, if set, counts the bytes the joiner allocates (joined
	// messages, copies of held lines): the read loop charges them to the
	// memory budget as it does the decoder's.
	alloc *int64
}

// mlGroup is one stream's open group.
type mlGroup struct {
	open  bool
	state int
	first Record // the first line, as it came (emitted as it is if alone)
	owned bool   // first.Log is the joiner's own copy (Own)
	start int64  // file offset of the first line's record
	// The lines after the first are kept as they came (parts, pointing
	// into the caller's buffer as first does) and copied once, into a
	// message of the exact size, when the group is emitted. If the
	// caller's buffer is to be reused first (Own), the message is built
	// then, in buf, and the lines after that are appended to it.
	parts [][]byte
	buf   []byte // the joined message, once built (owned); nil before
	lines int
	size  int // bytes of the joined message

	// held are lines taken in tentative states, not yet part of the group.
	held []heldLine

	fresh bool      // got a line since the last FlushIdle
	last  time.Time // when FlushIdle last found it fresh
}

type heldLine struct {
	rec   Record
	start int64
	owned bool
}

// NewJoiner returns a joiner for one file by rule. m may be nil (tests).
func NewJoiner(rule *MultilineRule, lim MultilineLimits, m *multilineMetrics) *Joiner {
	if m == nil {
		m = newMultilineMetrics(nil)
	}
	lim.MaxLines = max(lim.MaxLines, 1)
	lim.MaxBytes = max(lim.MaxBytes, 1)
	return &Joiner{rule: rule, lim: lim, m: m, joined: m.groups.WithLabelValues(rule.name)}
}

// Rule is the rule the joiner follows.
func (j *Joiner) Rule() *MultilineRule { return j.rule }

// Add takes the next record of the file, whose first line starts at file
// offset start, and emits the records it completes: 0, 1 or more, in order
// per stream.
func (j *Joiner) Add(r Record, start int64, emit func(Record)) {
	g := &j.groups[r.Stream&1]
	if !g.open {
		// The common line: no group open, and the start state turns
		// it away, mostly by its prefilters.
		next, ok := j.rule.step(0, r.Log)
		if !ok || next == stateEnd {
			emit(r)
			return
		}
		j.open(g, r, start, next)
		return
	}
	next, ok := j.rule.step(g.state, r.Log)
	switch {
	case !ok:
		// Not part of the group: it ends before this line, which may
		// start the next one.
		j.close(g, emit, "")
		j.begin(g, r, start, emit)
	case next == stateEnd:
		j.confirm(g, emit)
		j.join(g, r, start, emit)
		j.close(g, emit, "")
	case j.rule.states[next].tentative:
		g.state = next
		g.fresh = true
		g.held = append(g.held, heldLine{rec: r, start: start})
		if len(g.held) > maxTentative {
			j.close(g, emit, "")
		}
	default:
		g.state = next
		j.confirm(g, emit)
		j.join(g, r, start, emit)
	}
}

// begin tries r from the start state: it opens a group, or goes on alone.
func (j *Joiner) begin(g *mlGroup, r Record, start int64, emit func(Record)) {
	next, ok := j.rule.step(0, r.Log)
	if !ok || next == stateEnd {
		emit(r)
		return
	}
	j.open(g, r, start, next)
}

// open makes r the first line of a group in state next.
func (j *Joiner) open(g *mlGroup, r Record, start int64, next int) {
	*g = mlGroup{open: true, state: next, first: r, start: start, lines: 1, size: len(r.Log), fresh: true, held: g.held[:0], parts: g.parts[:0]}
}

// confirm makes the held lines part of the group: a later line showed they
// belong to it.
func (j *Joiner) confirm(g *mlGroup, emit func(Record)) {
	for i := range g.held {
		h := g.held[i]
		j.join(g, h.rec, h.start, emit)
	}
	clear(g.held)
	g.held = g.held[:0]
}

// join appends a line to the open group, first emitting what the group
// holds if the line would take it past a bound; the line then starts a new
// group in the same state, so the rest of a long trace is still joined.
func (j *Joiner) join(g *mlGroup, r Record, start int64, emit func(Record)) {
	g.fresh = true
	switch {
	case g.lines+1 > j.lim.MaxLines:
		j.cut(g, r, start, emit, cutMaxLines)
		return
	case g.size+1+len(r.Log) > j.lim.MaxBytes:
		j.cut(g, r, start, emit, cutMaxBytes)
		return
	}
	g.lines++
	g.size += 1 + len(r.Log)
	if g.buf == nil {
		g.parts = append(g.parts, r.Log)
		return
	}
	if need := len(g.buf) + 1 + len(r.Log); need > cap(g.buf) {
		c := min(max(2*cap(g.buf), need), max(j.lim.MaxBytes, need))
		j.count(c)
		g.buf = append(make([]byte, 0, c), g.buf...)
	}
	g.buf = append(g.buf, '\n')
	g.buf = append(g.buf, r.Log...)
}

// build copies the group's lines into buf, a message of exactly its size:
// the first line and the parts, each line copied once.
func (j *Joiner) build(g *mlGroup) {
	j.count(g.size)
	b := make([]byte, 0, g.size)
	b = append(b, g.first.Log...)
	for _, p := range g.parts {
		b = append(b, '\n')
		b = append(b, p...)
	}
	clear(g.parts) // they point into the caller's buffer
	g.parts = g.parts[:0]
	g.buf = b
	g.first.Log = nil // in buf now
}

// cut emits the group as it is and continues it with r as its first line.
func (j *Joiner) cut(g *mlGroup, r Record, start int64, emit func(Record), reason string) {
	state := g.state
	j.emitGroup(g, emit, reason)
	*g = mlGroup{open: true, state: state, first: r, start: start, lines: 1, size: len(r.Log), fresh: true, held: g.held, parts: g.parts[:0]}
}

// close emits the open group. Lines held tentatively did not turn out to
// belong to it: they are tried again from the start state, in order.
// reason, if not empty, says why the group was cut short (a metric label).
func (j *Joiner) close(g *mlGroup, emit func(Record), reason string) {
	held := g.held
	j.emitGroup(g, emit, reason)
	*g = mlGroup{parts: g.parts[:0]}
	for _, h := range held {
		j.Add(h.rec, h.start, emit)
	}
	// Keep held's array for the next group's tentative lines, unless a
	// group opened just above holds some already (in another array).
	clear(held)
	if len(g.held) == 0 && cap(held) > cap(g.held) {
		g.held = held[:0]
	}
}

// emitGroup emits the group's confirmed lines as one record.
func (j *Joiner) emitGroup(g *mlGroup, emit func(Record), reason string) {
	if reason != "" {
		j.m.cut[reason].Inc()
	}
	if g.lines == 1 {
		emit(g.first)
		return
	}
	j.joined.Inc()
	if g.buf == nil {
		j.build(g)
	}
	emit(Record{Time: g.first.Time, Stream: g.first.Stream, Log: g.buf[:len(g.buf):len(g.buf)]})
}

// OpenStart is the file offset of the first line of the oldest open group
// (ok=false if none). A checkpoint must not go past it.
func (j *Joiner) OpenStart() (start int64, ok bool) {
	for i := range j.groups {
		g := &j.groups[i]
		if g.open && (!ok || g.start < start) {
			start, ok = g.start, true
		}
	}
	return start, ok
}

// FlushIdle emits every group that received no line for FlushTimeout, and
// returns when the next open group will be due (ok=false if none is open).
// Call it after each read, with the time of the read, and when the due
// time comes: a group's idle time runs from the first call that finds it
// has new lines, so one clock reading per read is all it needs.
func (j *Joiner) FlushIdle(now time.Time, emit func(Record)) (due time.Time, ok bool) {
	for i := range j.groups {
		g := &j.groups[i]
		if !g.open {
			continue
		}
		if !g.fresh && now.Sub(g.last) >= j.lim.FlushTimeout {
			j.close(g, emit, cutTimeout)
		}
		if !g.open {
			continue
		}
		if g.fresh {
			// Opened or grown since the last call (possibly by the
			// lines a timed-out group held back, just above).
			g.fresh, g.last = false, now
		}
		if d := g.last.Add(j.lim.FlushTimeout); !ok || d.Before(due) {
			due, ok = d, true
		}
	}
	return due, ok
}

// Flush emits every open group and held line, oldest first: the file is
// finished for good (or its rule changes).
func (j *Joiner) Flush(emit func(Record)) {
	for {
		i := -1
		for k := range j.groups {
			if j.groups[k].open && (i < 0 || j.groups[k].start < j.groups[i].start) {
				i = k
			}
		}
		if i < 0 {
			return
		}
		j.close(&j.groups[i], emit, "")
	}
}

// Reasons a group was emitted before its rule closed it, the values of
// logagent_collector_multiline_cut_total's reason label.
const (
	cutMaxLines = "max_lines"
	cutMaxBytes = "max_bytes"
	cutTimeout  = "timeout"
)

// count adds n allocated bytes to the read loop's count.
func (j *Joiner) count(n int) {
	if j.alloc != nil {
		*j.alloc += int64(n)
	}
}

// Own copies the lines the open groups hold that still point into the
// caller's buffer (a group's lone first line, lines held tentatively): the
// read loop calls it before the buffer may be reused, since a group outlives
// the read that opened it. Joined messages are the joiner's already.
func (j *Joiner) Own() {
	for i := range j.groups {
		g := &j.groups[i]
		if !g.open {
			continue
		}
		if g.lines == 1 && !g.owned {
			g.first.Log = j.copyLine(g.first.Log)
			g.owned = true
		}
		if g.lines > 1 && g.buf == nil {
			j.build(g)
		}
		for k := range g.held {
			if h := &g.held[k]; !h.owned {
				h.rec.Log = j.copyLine(h.rec.Log)
				h.owned = true
			}
		}
	}
}

func (j *Joiner) copyLine(b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	j.count(len(b))
	c := make([]byte, len(b))
	copy(c, b)
	return c
}

// Held is the memory the open groups hold: joined messages and owned copies.
func (j *Joiner) Held() int64 {
	var n int64
	for i := range j.groups {
		g := &j.groups[i]
		if !g.open {
			continue
		}
		if g.lines > 1 {
			n += int64(cap(g.buf)) // 0 before Own: the lines are the caller's
		} else if g.owned {
			n += int64(len(g.first.Log))
		}
		for k := range g.held {
			if g.held[k].owned {
				n += int64(len(g.held[k].rec.Log))
			}
		}
	}
	return n
}

// MaxGrowth bounds what adding a record of n bytes may allocate: the
// message of a group it closes or joins (with the lines held tentatively,
// which it may confirm, or which may form a group of their own), a built
// message grown to take it, and a copy of it held in an open group.
func (j *Joiner) MaxGrowth(n int) int64 {
	if !j.Open() {
		return int64(n) // the common case, inlined into the read loop
	}
	return j.maxGrowth(n)
}

func (j *Joiner) maxGrowth(n int) int64 {
	worst := n
	for i := range j.groups {
		g := &j.groups[i]
		if !g.open {
			continue
		}
		need := g.size + 1 + n
		for k := range g.held {
			need += 2 * (1 + len(g.held[k].rec.Log))
		}
		if g.buf == nil {
			worst = max(worst, need+n)
		} else if need > cap(g.buf) {
			worst = max(worst, 2*need+n)
		}
	}
	return int64(worst)
}

// Open reports whether a group is open.
func (j *Joiner) Open() bool { return j.groups[0].open || j.groups[1].open }
