package collector

import (
	"fmt"
	"math/bits"
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
	// pre and preLast reject, from the line's first or last byte alone, a
	// line that no transition can match (each valid when its ok is set).
	pre, preLast firstFilter
	// cand, by a line's first byte, and candEmpty, for the empty line, are
	// the transitions (bit i: trans[i]) whose own filters admit it: a line
	// is tried only against those, in order (nil: every transition, as
	// for a state of more than 32).
	cand      *[256]uint32
	candEmpty uint32
	// scan, for a state whose one transition is a hand-written scanner
	// (Java's start state), is that scanner, called directly.
	scan func(line []byte, window int) bool
}

// index derives the state's filters from its transitions.
func (st *mlState) index() {
	st.pre, st.preLast = stateFilters(st.trans)
	st.cand, st.candEmpty, st.scan = nil, 0, nil
	if len(st.trans) == 1 && st.trans[0].m.scanFast != nil && !st.trans[0].m.negate {
		st.scan = st.trans[0].m.scanFast
	}
	if len(st.trans) > 32 {
		return
	}
	st.cand = new([256]uint32)
	for i, t := range st.trans {
		bit := uint32(1) << i
		if t.m.negate || t.m.re == nil || !t.m.first.ok {
			for b := range st.cand {
				st.cand[b] |= bit
			}
			st.candEmpty |= bit
			continue
		}
		for b := range st.cand {
			if t.m.first.has(byte(b)) {
				st.cand[b] |= bit
			}
		}
		if t.m.first.empty {
			st.candEmpty |= bit
		}
	}
}

// rejects reports whether the state's byte filters rule the line out.
func (st *mlState) rejects(line []byte) bool {
	return (st.pre.ok && !st.pre.admits(line)) || (st.preLast.ok && !st.preLast.admitsLast(line))
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
	if st.scan != nil {
		if st.scan(line, st.trans[0].m.window) {
			return st.trans[0].next, true
		}
		return 0, false
	}
	if st.rejects(line) {
		return 0, false
	}
	if st.cand != nil {
		mask := st.candEmpty
		if len(line) > 0 {
			mask = st.cand[line[0]]
		}
		for mask != 0 {
			i := bits.TrailingZeros32(mask)
			mask &= mask - 1
			if t := &st.trans[i]; t.m.match(line) {
				return t.next, true
			}
		}
		return 0, false
	}
	for i := range st.trans {
		if st.trans[i].m.match(line) {
			return st.trans[i].next, true
		}
	}
	return 0, false
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
		ms.index()
		r.states[i] = ms
	}
	return r, nil
}

// stateFilters are the unions of a state's transitions' first-byte and
// last-byte filters, each when every transition has one: a line none admits
// matches no transition.
func stateFilters(trans []mlTrans) (first, last firstFilter) {
	first.ok, last.ok = len(trans) > 0, len(trans) > 0
	for _, t := range trans {
		if t.m.negate || t.m.re == nil {
			return firstFilter{}, firstFilter{}
		}
		if !t.m.first.ok {
			first = firstFilter{}
		} else if first.ok {
			first.union(t.m.first)
		}
		if !t.m.last.ok {
			last = firstFilter{}
		} else if last.ok {
			last.union(t.m.last)
		}
	}
	return first, last
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
			ns := mlState{name: r.name + "." + st.name, tentative: st.tentative}
			for _, t := range st.trans {
				ns.trans = append(ns.trans, remap(t))
			}
			ns.index()
			c.states = append(c.states, ns)
		}
	}
	c.states[0].index()
	return c
}
