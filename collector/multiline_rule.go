package collector

import (
	"bytes"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"unicode/utf8"
)

// A MultilineRule decides which consecutive lines of one stream form one
// record, as a small state machine over the lines, the model of Fluent Bit's
// multiline parsers and of Google's fluent-plugin-detect-exceptions from
// which its built-in ones come. The start state has no group open. From any
// state, the first transition whose pattern matches the line is taken: to
// another state (the line joins the group), or to the end (the line joins
// and closes the group). A line no transition of an open group's state
// matches closes the group without joining it, and is tried again from the
// start state. A state may be tentative: lines taken in it join the group
// only if a later line leads to a state that is not (a blank line between two
// chained Python tracebacks belongs to the trace only if the second one
// follows). A MultilineRule is immutable and shared by every joiner using it.
type MultilineRule struct {
	name   string
	states []mlState // states[0] is the start state
}

// Name is the rule's name: a built-in's, a configured one's, or several
// joined by "," (sorted) for rules used together.
func (r *MultilineRule) Name() string { return r.name }

// stateEnd as a transition's target: the line joins the group and closes it.
const stateEnd = -1

type mlState struct {
	name      string
	tentative bool
	trans     []mlTrans
	// pre rejects, from the line's first byte alone, a line that no
	// transition can match (valid when pre.ok).
	pre firstFilter
}

type mlTrans struct {
	m    lineMatcher
	next int // index into states, or stateEnd
}

// step returns the state a line leads to from state s, or ok=false if no
// transition matches. It is the hot path: most lines are tried only against
// the start state, and its prefilter turns most of them away without a
// regular expression.
func (r *MultilineRule) step(s int, line []byte) (next int, ok bool) {
	st := &r.states[s]
	if st.pre.ok && !st.pre.admits(line) {
		return 0, false
	}
	for i := range st.trans {
		if st.trans[i].m.match(line) {
			return st.trans[i].next, true
		}
	}
	return 0, false
}

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
	sre, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return m, err
	}
	sre = sre.Simplify()
	if body, ok := endAnchoredBody(sre); ok {
		fi := lastSet(body)
		m.last = firstFilter{ok: !fi.nullable || fi.atEnd, empty: fi.nullable, set: fi.set}
	}
	if body, ok := anchoredBody(sre); ok {
		m.first = firstBytes(body)
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

// anchoredBody returns what follows a leading ^ or \A, if every match must
// start at the beginning of the line. A record is one line (no '\n'), so a
// multi-line mode ^ anchors too.
func anchoredBody(re *syntax.Regexp) (*syntax.Regexp, bool) {
	switch re.Op {
	case syntax.OpBeginText, syntax.OpBeginLine:
		return &syntax.Regexp{Op: syntax.OpEmptyMatch}, true
	case syntax.OpCapture:
		return anchoredBody(re.Sub[0])
	case syntax.OpConcat:
		if len(re.Sub) == 0 {
			return nil, false
		}
		head, ok := anchoredBody(re.Sub[0])
		if !ok {
			return nil, false
		}
		rest := slices.Clone(re.Sub[1:])
		if head.Op != syntax.OpEmptyMatch {
			rest = append([]*syntax.Regexp{head}, rest...)
		}
		return &syntax.Regexp{Op: syntax.OpConcat, Sub: rest}, true
	case syntax.OpAlternate:
		alt := &syntax.Regexp{Op: syntax.OpAlternate}
		for _, s := range re.Sub {
			b, ok := anchoredBody(s)
			if !ok {
				return nil, false
			}
			alt.Sub = append(alt.Sub, b)
		}
		return alt, true
	}
	return nil, false
}

// firstBytes returns the filter of lines an anchored body can match: those
// starting with a byte it can consume first, and the empty line if it can
// match nothing. When it can match nothing and go on to anything (x* or a
// zero-width assertion other than $), the filter admits every line (ok=false).
func firstBytes(re *syntax.Regexp) firstFilter {
	fs := firstSet(re)
	return firstFilter{ok: !fs.nullable || fs.atEnd, empty: fs.nullable, set: fs.set}
}

// firstInfo is what firstSet learns of a pattern: the bytes a non-empty match
// can start with; whether it can match the empty string; and whether every
// such empty match needs the end of the line right there (a $).
type firstInfo struct {
	set      [4]uint64
	nullable bool
	atEnd    bool
}

func (fi *firstInfo) add(lo, hi rune) {
	var f firstFilter
	f.set = fi.set
	addRange(&f, lo, hi)
	fi.set = f.set
}

func firstSet(re *syntax.Regexp) firstInfo {
	var fi firstInfo
	switch re.Op {
	case syntax.OpLiteral:
		if len(re.Rune) == 0 {
			fi.nullable = true
			break
		}
		fi.add(re.Rune[0], re.Rune[0])
		if re.Flags&syntax.FoldCase != 0 {
			for c := asciiFold(re.Rune[0]); c != re.Rune[0]; c = asciiFold(c) {
				fi.add(c, c)
			}
		}
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			fi.add(re.Rune[i], re.Rune[i+1])
		}
	case syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		fi.add(0, utf8.MaxRune)
	case syntax.OpEndLine, syntax.OpEndText:
		fi.nullable, fi.atEnd = true, true
	case syntax.OpBeginLine, syntax.OpBeginText, syntax.OpWordBoundary, syntax.OpNoWordBoundary, syntax.OpEmptyMatch:
		fi.nullable = true
	case syntax.OpCapture, syntax.OpPlus:
		return firstSet(re.Sub[0])
	case syntax.OpStar, syntax.OpQuest:
		fi = firstSet(re.Sub[0])
		fi.nullable, fi.atEnd = true, false
	case syntax.OpRepeat:
		fi = firstSet(re.Sub[0])
		if re.Min == 0 {
			fi.nullable, fi.atEnd = true, false
		}
	case syntax.OpConcat:
		fi.nullable = true
		for _, s := range re.Sub {
			g := firstSet(s)
			for i := range fi.set {
				fi.set[i] |= g.set[i]
			}
			if !g.nullable {
				fi.nullable = false
				break
			}
			if g.atEnd {
				// Nothing can be consumed after the end of the line.
				fi.atEnd = true
				break
			}
		}
	case syntax.OpAlternate:
		fi.atEnd = true
		for _, s := range re.Sub {
			g := firstSet(s)
			for i := range fi.set {
				fi.set[i] |= g.set[i]
			}
			if g.nullable {
				fi.nullable = true
				fi.atEnd = fi.atEnd && g.atEnd
			}
		}
		if !fi.nullable {
			fi.atEnd = false
		}
	default: // OpNoMatch
	}
	return fi
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

// endAnchoredBody returns what precedes a trailing $ or \z, if every match
// must end at the end of the line.
func endAnchoredBody(re *syntax.Regexp) (*syntax.Regexp, bool) {
	switch re.Op {
	case syntax.OpEndText, syntax.OpEndLine:
		return &syntax.Regexp{Op: syntax.OpEmptyMatch}, true
	case syntax.OpCapture:
		return endAnchoredBody(re.Sub[0])
	case syntax.OpConcat:
		n := len(re.Sub)
		if n == 0 {
			return nil, false
		}
		tail, ok := endAnchoredBody(re.Sub[n-1])
		if !ok {
			return nil, false
		}
		subs := slices.Clone(re.Sub[:n-1])
		if tail.Op != syntax.OpEmptyMatch {
			subs = append(subs, tail)
		}
		return &syntax.Regexp{Op: syntax.OpConcat, Sub: subs}, true
	case syntax.OpAlternate:
		alt := &syntax.Regexp{Op: syntax.OpAlternate}
		for _, s := range re.Sub {
			b, ok := endAnchoredBody(s)
			if !ok {
				return nil, false
			}
			alt.Sub = append(alt.Sub, b)
		}
		return alt, true
	}
	return nil, false
}

// lastSet is firstSet from the other end: the bytes a match can end with,
// whether it can be empty, and whether every empty match needs the start
// of the line right there (a ^; atEnd stands for that here).
func lastSet(re *syntax.Regexp) firstInfo {
	var fi firstInfo
	switch re.Op {
	case syntax.OpLiteral:
		if len(re.Rune) == 0 {
			fi.nullable = true
			break
		}
		r := re.Rune[len(re.Rune)-1]
		if r >= utf8.RuneSelf {
			fi.add(utf8.RuneSelf, utf8.MaxRune) // its last byte is a continuation byte
			break
		}
		fi.add(r, r)
		if re.Flags&syntax.FoldCase != 0 {
			for c := asciiFold(r); c != r; c = asciiFold(c) {
				fi.add(c, c)
			}
		}
	case syntax.OpCharClass, syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		return firstSet(re) // one character: its bytes, as at the start (beyond ASCII: all high bytes)
	case syntax.OpBeginLine, syntax.OpBeginText:
		fi.nullable, fi.atEnd = true, true
	case syntax.OpEndLine, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary, syntax.OpEmptyMatch:
		fi.nullable = true
	case syntax.OpCapture, syntax.OpPlus:
		return lastSet(re.Sub[0])
	case syntax.OpStar, syntax.OpQuest:
		fi = lastSet(re.Sub[0])
		fi.nullable, fi.atEnd = true, false
	case syntax.OpRepeat:
		fi = lastSet(re.Sub[0])
		if re.Min == 0 {
			fi.nullable, fi.atEnd = true, false
		}
	case syntax.OpConcat:
		fi.nullable = true
		for i := len(re.Sub) - 1; i >= 0; i-- {
			g := lastSet(re.Sub[i])
			for k := range fi.set {
				fi.set[k] |= g.set[k]
			}
			if !g.nullable {
				fi.nullable = false
				break
			}
			if g.atEnd {
				fi.atEnd = true
				break
			}
		}
	case syntax.OpAlternate:
		fi.atEnd = true
		for _, s := range re.Sub {
			g := lastSet(s)
			for k := range fi.set {
				fi.set[k] |= g.set[k]
			}
			if g.nullable {
				fi.nullable = true
				fi.atEnd = fi.atEnd && g.atEnd
			}
		}
		if !fi.nullable {
			fi.atEnd = false
		}
	}
	return fi
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

// ruleSpec is a rule as written: states by name, each with its transitions in
// order. The first state is the start state. A transition to the start
// state, or to "end", closes the group with the line, as a return to the
// start state does in Fluent Bit.
type ruleSpec struct {
	name   string
	states []stateSpec
}

type stateSpec struct {
	name      string
	tentative bool
	trans     []transSpec
}

type transSpec struct {
	pattern string // "" matches every line
	next    string
	negate  bool // the transition is taken by lines the pattern does not match
	// window, for an unanchored pattern, is how far into a line a match
	// may start (0: anywhere). It bounds the cost of lines of 40 KB.
	window int
}

const endStateName = "end"

// compile builds the state machine of a spec.
func (s ruleSpec) compile() (*MultilineRule, error) {
	if len(s.states) == 0 {
		return nil, fmt.Errorf("multiline rule %q: no states", s.name)
	}
	index := map[string]int{}
	for i, st := range s.states {
		if _, dup := index[st.name]; dup {
			return nil, fmt.Errorf("multiline rule %q: state %q defined twice", s.name, st.name)
		}
		index[st.name] = i
	}
	r := &MultilineRule{name: s.name, states: make([]mlState, len(s.states))}
	for i, st := range s.states {
		if i == 0 && st.tentative {
			return nil, fmt.Errorf("multiline rule %q: the start state cannot be tentative", s.name)
		}
		ms := mlState{name: st.name, tentative: st.tentative}
		for _, t := range st.trans {
			next, ok := index[t.next]
			switch {
			case t.next == endStateName || (ok && next == 0):
				next = stateEnd
			case !ok:
				return nil, fmt.Errorf("multiline rule %q: state %q leads to %q, which is not defined", s.name, st.name, t.next)
			case i == 0 && s.states[next].tentative:
				return nil, fmt.Errorf("multiline rule %q: the start state leads to tentative state %q", s.name, t.next)
			}
			m, err := compileMatcher(t.pattern, t.negate)
			m.window = t.window
			if err != nil {
				return nil, fmt.Errorf("multiline rule %q: state %q: pattern %q: %w", s.name, st.name, t.pattern, err)
			}
			ms.trans = append(ms.trans, mlTrans{m: m, next: next})
		}
		ms.pre = stateFilter(ms.trans)
		r.states[i] = ms
	}
	return r, nil
}

// stateFilter is the union of a state's transitions' first-byte filters,
// when every one of them has one: a line none admits matches no transition.
func stateFilter(trans []mlTrans) firstFilter {
	var f firstFilter
	for _, t := range trans {
		if t.m.negate || !t.m.first.ok {
			return firstFilter{}
		}
		f.union(t.m.first)
	}
	f.ok = len(trans) > 0
	return f
}

// combineRules makes one rule of several, as Fluent Bit's multiline.parser
// takes a list: the start state tries each rule's start transitions in turn,
// and a group, once started, follows the states of the rule that started it.
func combineRules(name string, rules []*MultilineRule) *MultilineRule {
	if len(rules) == 1 {
		return rules[0]
	}
	c := &MultilineRule{name: name, states: []mlState{{name: "start_state"}}}
	for _, r := range rules {
		base := len(c.states) - 1 // r's state i (i >= 1) goes to base+i
		remap := func(t mlTrans) mlTrans {
			if t.next > 0 {
				t.next += base
			}
			return t
		}
		for _, t := range r.states[0].trans {
			c.states[0].trans = append(c.states[0].trans, remap(t))
		}
		for _, st := range r.states[1:] {
			ns := mlState{name: r.name + "." + st.name, tentative: st.tentative, pre: st.pre}
			for _, t := range st.trans {
				ns.trans = append(ns.trans, remap(t))
			}
			c.states = append(c.states, ns)
		}
	}
	c.states[0].pre = stateFilter(c.states[0].trans)
	return c
}
