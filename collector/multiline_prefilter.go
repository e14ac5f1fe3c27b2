package collector

import (
	"bytes"
	"regexp"
	"regexp/syntax"
	"slices"
	"unicode/utf8"
)

// lineMatcher is one transition's pattern with what it can check cheaply
// before, or instead of, running the regular expression. For an anchored
// pattern: the bytes a line may start with, a run of characters it may start
// with (^\s*, ^[\t ]+), and the literals that must follow (^panic: ,
// ^\tat , ^Caused by: ); often these decide the match alone. For an
// unanchored one: the literals every match starts with, whose occurrences
// are the only places worth trying the pattern; or literals every match
// contains. Go's regexp costs microseconds on a line it has to scan, and a
// tenth of a microsecond even to fail at once; these checks cost a few
// nanoseconds and decide almost every line that is not part of a stack
// trace, and many that are.
type lineMatcher struct {
	src    string
	re     *regexp.Regexp // nil matches every line
	negate bool

	// last: the bytes a line may end with (patterns ending in $).
	last firstFilter

	// Anchored patterns.
	first  firstFilter  // the bytes a line may start with
	run    *firstFilter // a leading run of these bytes is skipped (nil: none)
	runMin int          // ... which must be at least this long (0 or 1)
	leads  [][]byte     // after the run, the line goes on with one of these (nil: unknown)
	// exact says the checks above decide the match; whole, that the line
	// must then end right after the lead.
	exact, whole bool

	// Unanchored patterns: every match starts with one of these literals,
	// grouped by their first byte; leadRe is the pattern anchored, tried
	// where one occurs.
	scan   []leadGroup
	leadRe *regexp.Regexp
	window int // matches starting this far into a line or further are not looked for (0: no limit)

	// needles: every match contains one of these (nil: unknown).
	needles [][]byte

	// fast, if set, is the pattern written by hand (fastMatchers), used
	// instead of the regular expression once the checks above pass.
	fast func([]byte) bool
	// scanFast, if set, is an unanchored pattern written by hand
	// (fastScanners), used instead of the scan for its leads.
	scanFast func(line []byte, window int) bool
}

type leadGroup struct {
	first byte
	lits  [][]byte
}

func (m *lineMatcher) match(line []byte) bool {
	return m.matchRaw(line) != m.negate
}

func (m *lineMatcher) matchRaw(line []byte) bool {
	if m.re == nil {
		return true
	}
	if m.first.ok && !m.first.admits(line) {
		return false
	}
	if m.last.ok && !m.last.admitsLast(line) {
		return false
	}
	if m.scanFast != nil {
		return m.scanFast(line, m.window)
	}
	if m.scan != nil {
		return m.matchLeads(line)
	}
	if m.run != nil || m.leads != nil {
		i := 0
		if m.run != nil {
			for i < len(line) && m.run.has(line[i]) {
				i++
			}
			if i < m.runMin {
				return false
			}
		}
		if m.leads != nil {
			found := false
			for _, l := range m.leads {
				if bytes.HasPrefix(line[i:], l) && (!m.whole || len(line) == i+len(l)) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
	}
	if m.exact {
		return true
	}
	if m.fast != nil {
		// Exactly the pattern, and at least as quick to say no as a
		// search for the needles.
		return m.fast(line)
	}
	if m.needles != nil && !slices.ContainsFunc(m.needles, func(n []byte) bool { return bytes.Contains(line, n) }) {
		return false
	}
	return m.re.Match(line)
}

// matchLeads tries the pattern where one of its leading literals occurs.
func (m *lineMatcher) matchLeads(line []byte) bool {
	end := len(line)
	if m.window > 0 {
		end = min(end, m.window)
	}
	for _, g := range m.scan {
		for off := 0; off < end; {
			i := bytes.IndexByte(line[off:end], g.first)
			if i < 0 {
				break
			}
			at := line[off+i:]
			for _, l := range g.lits {
				if bytes.HasPrefix(at, l) && m.leadRe.Match(at) {
					return true
				}
			}
			off += i + 1
		}
	}
	return false
}

// firstFilter is a set of bytes a line may start with, and whether an empty
// line may match.
type firstFilter struct {
	ok    bool // the filter applies; false admits every line
	empty bool
	set   [4]uint64
}

func (f *firstFilter) add(b byte)      { f.set[b>>6] |= 1 << (b & 63) }
func (f *firstFilter) has(b byte) bool { return f.set[b>>6]&(1<<(b&63)) != 0 }

func (f *firstFilter) admits(line []byte) bool {
	if len(line) == 0 {
		return f.empty
	}
	return f.has(line[0])
}

func (f *firstFilter) admitsLast(line []byte) bool {
	if len(line) == 0 {
		return f.empty
	}
	return f.has(line[len(line)-1])
}

func (f *firstFilter) union(g firstFilter) {
	f.empty = f.empty || g.empty
	for i := range f.set {
		f.set[i] |= g.set[i]
	}
}

// compileMatcher compiles an RE2 pattern (Go's syntax) and derives its
// prefilters; "" matches every line. negate inverts it.
func compileMatcher(pattern string, negate bool) (lineMatcher, error) {
	m := lineMatcher{src: pattern, negate: negate}
	if pattern == "" {
		return m, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return m, err
	}
	m.re = re
	m.fast = fastMatchers[pattern]
	m.scanFast = fastScanners[pattern]
	sre, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return m, err
	}
	sre = sre.Simplify()
	if body, ok := anchorBody(sre, true); ok {
		m.last = edgeFilter(body, true)
	}
	if body, ok := anchorBody(sre, false); ok {
		m.first = edgeFilter(body, false)
		m.analyzeAnchored(body)
		if m.leads == nil || (!m.exact && len(m.leads) == 1 && len(m.leads[0]) == 0) {
			m.leads = nil
			m.needles = requiredLiterals(sre)
		}
		return m, nil
	}
	if lead := leadLiterals(sre); lead != nil {
		for _, l := range lead {
			i := slices.IndexFunc(m.scan, func(g leadGroup) bool { return g.first == l[0] })
			if i < 0 {
				m.scan = append(m.scan, leadGroup{first: l[0]})
				i = len(m.scan) - 1
			}
			m.scan[i].lits = append(m.scan[i].lits, l)
		}
		if m.leadRe, err = regexp.Compile(`^(?:` + pattern + `)`); err != nil {
			return m, err
		}
		return m, nil
	}
	m.needles = requiredLiterals(sre)
	return m, nil
}

// analyzeAnchored finds, in what follows ^, a leading run of an ASCII class
// (x* or x+), the literals that must come next, and whether those decide
// the match: nothing else follows but .* or the end of the line.
func (m *lineMatcher) analyzeAnchored(body *syntax.Regexp) {
	subs := []*syntax.Regexp{body}
	if body.Op == syntax.OpConcat {
		subs = body.Sub
	}
	if len(subs) > 0 && (subs[0].Op == syntax.OpStar || subs[0].Op == syntax.OpPlus) && subs[0].Sub[0].Op == syntax.OpCharClass {
		if run, ok := asciiClass(subs[0].Sub[0]); ok {
			m.run, m.runMin = &run, 0
			if subs[0].Op == syntax.OpPlus {
				m.runMin = 1
			}
			subs = subs[1:]
		}
	}
	if m.run == nil && len(subs) > 0 && subs[0].Op == syntax.OpCharClass {
		// ^[\t ] and the like: the first byte decides, if nothing but .*
		// follows.
		if _, ok := asciiClass(subs[0]); ok && m.first.ok && !m.first.empty && anyRest(subs[1:]) {
			m.exact = true
			return
		}
	}
	rest := subs
	if n := len(rest); n > 0 && rest[n-1].Op == syntax.OpEndText {
		m.whole, rest = true, rest[:n-1]
	} else if n > 0 && anyRest(rest[n-1:]) {
		rest = rest[:n-1]
	}
	leads, complete := expandLead(&syntax.Regexp{Op: syntax.OpConcat, Sub: rest})
	if len(leads) == 0 || len(leads) > maxNeedles {
		m.whole = false
		return
	}
	for _, l := range leads {
		if l == "" && !complete {
			m.whole = false
			return
		}
		if m.run != nil && l != "" && m.run.has(l[0]) {
			// A greedy skip of the run would eat the literal.
			m.run, m.whole = nil, false
			return
		}
	}
	for _, l := range leads {
		m.leads = append(m.leads, []byte(l))
	}
	m.exact = complete
	if !complete {
		m.whole = false
	}
}

// anyRest reports whether r is nothing, or just .*.
func anyRest(r []*syntax.Regexp) bool {
	return len(r) == 0 || (len(r) == 1 && r[0].Op == syntax.OpStar &&
		(r[0].Sub[0].Op == syntax.OpAnyCharNotNL || r[0].Sub[0].Op == syntax.OpAnyChar))
}

// asciiClass returns a character class as a byte set, if it has only ASCII.
func asciiClass(re *syntax.Regexp) (firstFilter, bool) {
	var f firstFilter
	for i := 0; i+1 < len(re.Rune); i += 2 {
		if re.Rune[i+1] >= utf8.RuneSelf {
			return f, false
		}
		addRange(&f, re.Rune[i], re.Rune[i+1])
	}
	f.ok = true
	return f, true
}

// leadLiterals returns literals one of which every match of re starts with,
// or nil if it cannot tell (or there would be too many to search for).
func leadLiterals(re *syntax.Regexp) [][]byte {
	set, _ := expandLead(re)
	if len(set) == 0 || len(set) > maxNeedles {
		return nil
	}
	out := make([][]byte, 0, len(set))
	for _, s := range set {
		if s == "" {
			return nil
		}
		out = append(out, []byte(s))
	}
	return out
}

// expandLead returns the literals re's matches start with, and whether they
// are all of its matches (so what follows re in a concatenation may be
// appended to them). "" stands for "anything": with complete false, the
// set tells nothing.
func expandLead(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return []string{""}, false
		}
		return []string{string(re.Rune)}, true
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpCapture:
		return expandLead(re.Sub[0])
	case syntax.OpQuest:
		set, c := expandLead(re.Sub[0])
		return append(set, ""), c
	case syntax.OpAlternate:
		var out []string
		complete := true
		for _, s := range re.Sub {
			set, c := expandLead(s)
			out = append(out, set...)
			complete = complete && c
			if len(out) > maxNeedles {
				return []string{""}, false
			}
		}
		return out, complete
	case syntax.OpConcat:
		cur := []string{""}
		for _, s := range re.Sub {
			set, c := expandLead(s)
			if len(cur)*len(set) > maxNeedles || (!c && slices.Contains(set, "")) {
				return cur, false
			}
			var next []string
			for _, a := range cur {
				for _, b := range set {
					next = append(next, a+b)
				}
			}
			cur = next
			if !c {
				return cur, false
			}
		}
		return cur, true
	}
	return []string{""}, false
}

// anchorBody returns what follows a leading ^ or \A (fromEnd false), or
// what precedes a trailing $ or \z (fromEnd true), if every match must touch
// that end of the line. A record is one line (no '\n'), so the multi-line
// mode's ^ and $ anchor too.
func anchorBody(re *syntax.Regexp, fromEnd bool) (*syntax.Regexp, bool) {
	switch re.Op {
	case syntax.OpBeginText, syntax.OpBeginLine:
		return &syntax.Regexp{Op: syntax.OpEmptyMatch}, !fromEnd
	case syntax.OpEndText, syntax.OpEndLine:
		return &syntax.Regexp{Op: syntax.OpEmptyMatch}, fromEnd
	case syntax.OpCapture:
		return anchorBody(re.Sub[0], fromEnd)
	case syntax.OpConcat:
		n := len(re.Sub)
		if n == 0 {
			return nil, false
		}
		edge, rest := re.Sub[0], slices.Clone(re.Sub[1:])
		if fromEnd {
			edge, rest = re.Sub[n-1], slices.Clone(re.Sub[:n-1])
		}
		body, ok := anchorBody(edge, fromEnd)
		switch {
		case !ok:
			return nil, false
		case body.Op == syntax.OpEmptyMatch:
		case fromEnd:
			rest = append(rest, body)
		default:
			rest = append([]*syntax.Regexp{body}, rest...)
		}
		return &syntax.Regexp{Op: syntax.OpConcat, Sub: rest}, true
	case syntax.OpAlternate:
		alt := &syntax.Regexp{Op: syntax.OpAlternate}
		for _, s := range re.Sub {
			b, ok := anchorBody(s, fromEnd)
			if !ok {
				return nil, false
			}
			alt.Sub = append(alt.Sub, b)
		}
		return alt, true
	}
	return nil, false
}

// edgeFilter returns the filter of lines an anchored body can match: those
// starting (fromEnd: ending) with a byte it can consume there, and the empty
// line if it can match nothing. When it can match nothing and go on to
// anything (x*, or a zero-width assertion other than the far anchor), the
// filter admits every line (ok=false).
func edgeFilter(body *syntax.Regexp, fromEnd bool) firstFilter {
	e := edgeSet(body, fromEnd)
	return firstFilter{ok: !e.nullable || e.farEnd, empty: e.nullable, set: e.set}
}

// edgeInfo is what edgeSet learns of a pattern at one end: the bytes a
// non-empty match can start (or end) with; whether it can match the empty
// string; and whether every such empty match needs the line's other end
// right there (the $ of ^$, the ^ of ^$ read from the end).
type edgeInfo struct {
	set      [4]uint64
	nullable bool
	farEnd   bool
}

func (e *edgeInfo) add(lo, hi rune) {
	f := firstFilter{set: e.set}
	addRange(&f, lo, hi)
	e.set = f.set
}

func (e *edgeInfo) union(g edgeInfo) {
	for i := range e.set {
		e.set[i] |= g.set[i]
	}
}

// edgeSet analyses re from its start, or from its end.
func edgeSet(re *syntax.Regexp, fromEnd bool) edgeInfo {
	var e edgeInfo
	switch re.Op {
	case syntax.OpLiteral:
		if len(re.Rune) == 0 {
			e.nullable = true
			break
		}
		r := re.Rune[0]
		if fromEnd {
			r = re.Rune[len(re.Rune)-1]
		}
		e.add(r, r) // beyond ASCII: every high byte, lead or continuation
		if re.Flags&syntax.FoldCase != 0 {
			for c := asciiFold(r); c != r; c = asciiFold(c) {
				e.add(c, c)
			}
		}
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			e.add(re.Rune[i], re.Rune[i+1])
		}
	case syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		e.add(0, utf8.MaxRune)
	case syntax.OpEndLine, syntax.OpEndText:
		e.nullable, e.farEnd = true, !fromEnd
	case syntax.OpBeginLine, syntax.OpBeginText:
		e.nullable, e.farEnd = true, fromEnd
	case syntax.OpWordBoundary, syntax.OpNoWordBoundary, syntax.OpEmptyMatch:
		e.nullable = true
	case syntax.OpCapture, syntax.OpPlus:
		return edgeSet(re.Sub[0], fromEnd)
	case syntax.OpStar, syntax.OpQuest:
		e = edgeSet(re.Sub[0], fromEnd)
		e.nullable, e.farEnd = true, false
	case syntax.OpRepeat:
		e = edgeSet(re.Sub[0], fromEnd)
		if re.Min == 0 {
			e.nullable, e.farEnd = true, false
		}
	case syntax.OpConcat:
		e.nullable = true
		for k := range re.Sub {
			s := re.Sub[k]
			if fromEnd {
				s = re.Sub[len(re.Sub)-1-k]
			}
			g := edgeSet(s, fromEnd)
			e.union(g)
			if !g.nullable {
				e.nullable = false
				break
			}
			if g.farEnd {
				// Nothing can be consumed beyond the line's other end.
				e.farEnd = true
				break
			}
		}
	case syntax.OpAlternate:
		e.farEnd = true
		for _, s := range re.Sub {
			g := edgeSet(s, fromEnd)
			e.union(g)
			if g.nullable {
				e.nullable = true
				e.farEnd = e.farEnd && g.farEnd
			}
		}
		if !e.nullable {
			e.farEnd = false
		}
	default: // OpNoMatch
	}
	return e
}

// addRange adds the first bytes of the UTF-8 encodings of lo..hi: ASCII
// bytes exactly, every lead and invalid byte for anything beyond.
func addRange(f *firstFilter, lo, hi rune) {
	for r := lo; r <= hi && r < utf8.RuneSelf; r++ {
		f.add(byte(r))
	}
	if hi >= utf8.RuneSelf {
		for b := 0x80; b <= 0xff; b++ {
			f.add(byte(b))
		}
	}
}

// asciiFold cycles an ASCII letter through its cases, for patterns with
// (?i); other runes fold to themselves here, which is safe because the first
// bytes of every rune beyond ASCII are admitted anyway.
func asciiFold(r rune) rune {
	switch {
	case 'a' <= r && r <= 'z':
		return r - 'a' + 'A'
	case 'A' <= r && r <= 'Z':
		return r - 'A' + 'a'
	}
	return r
}

// maxNeedles bounds the literals searched for before a pattern runs: beyond a
// few, searching costs about what the pattern does.
const maxNeedles = 6

// requiredLiterals returns literals one of which every match of re contains,
// or nil if it cannot tell. The longest such set is chosen, so that a search
// for it rejects most lines.
func requiredLiterals(re *syntax.Regexp) [][]byte {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 || len(re.Rune) == 0 {
			return nil
		}
		return [][]byte{[]byte(string(re.Rune))}
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiterals(re.Sub[0])
		}
	case syntax.OpConcat:
		var best [][]byte
		for _, s := range re.Sub {
			if n := requiredLiterals(s); n != nil && shortest(n) > shortest(best) {
				best = n
			}
		}
		return best
	case syntax.OpAlternate:
		var all [][]byte
		for _, s := range re.Sub {
			n := requiredLiterals(s)
			if n == nil {
				return nil
			}
			all = append(all, n...)
		}
		if len(all) > maxNeedles {
			return nil
		}
		return all
	}
	return nil
}

func shortest(n [][]byte) int {
	if len(n) == 0 {
		return 0
	}
	m := len(n[0])
	for _, s := range n[1:] {
		m = min(m, len(s))
	}
	return m
}
