package collector

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Policy is what applies to one container's log file: how its lines are
// joined into multiline records and how fast it is read. It is a small
// comparable value: a file's reader asks for its policy again from time to
// time and acts only when the answer differs.
type Policy struct {
	// Multiline joins stack traces and the like; nil joins nothing.
	Multiline *MultilineRule
	// RateLimit caps the container's read rate; zero means no cap.
	RateLimit RateLimit
	// Provisional says the policy was made without the pod's metadata,
	// which may still arrive (a new pod the informer has not delivered
	// yet): a file about to be read for the first time should ask again
	// shortly before reading, so its first lines are joined by the rule its
	// pod's annotations name. It turns false when the metadata arrives or
	// the source stops waiting for it.
	Provisional bool
}

// PolicySource tells the collector each file's policy. The collector asks
// when it opens a file and again now and then while reading it; the answer
// may change (a pod's annotations were edited, or its metadata arrived).
// enrich implements it from its pod cache, which knows pod labels and
// annotations and namespace annotations; without enrich, Policies does from
// the configuration alone. Policy is called from every file's reader: it
// must be fast and safe for concurrent use.
type PolicySource interface {
	Policy(src *Source) Policy
}

// PolicyConfig is the part of the collector's configuration deciding, per
// container, how lines are joined and how fast files are read. It is inlined
// in Config, so its keys are collector.multiline and collector.rate_limit.
type PolicyConfig struct {
	// Multiline joins stack traces into single records.
	Multiline MultilineConfig `yaml:"multiline"`
	// RateLimit caps how fast each container's logs are read.
	RateLimit RateLimitConfig `yaml:"rate_limit"`
}

// MultilineConfig selects the containers whose lines are joined, and by which rule.
type MultilineConfig struct {
	// Select picks each container's rule: the first entry matching the
	// container's namespace, pod labels and name wins. Annotations on the
	// pod or its namespace (logagent.io/multiline) take precedence.
	Select []MultilineSelect `yaml:"select"`
	// Rules are custom rules, usable by name in select and in annotations
	// like the built-in java, python, go, nodejs and ruby.
	Rules []MultilineRuleConfig `yaml:"rules"`
	// MaxLines bounds the lines of one joined record; a longer group is
	// emitted in parts.
	MaxLines int `yaml:"max_lines"`
	// MaxBytes bounds the bytes of one joined record; more than
	// max_record_bytes is taken as max_record_bytes.
	MaxBytes int `yaml:"max_bytes"`
	// FlushTimeout is how long an open group waits for its next line before
	// it is emitted as it is.
	FlushTimeout time.Duration `yaml:"flush_timeout"`
}

// MultilineSelect is one entry of multiline.select. Empty fields match anything.
type MultilineSelect struct {
	// Namespaces are path.Match patterns of namespace names.
	Namespaces []string `yaml:"namespaces"`
	// PodLabels must all match the pod's labels (values are patterns). Pod
	// labels are known only with enrich on.
	PodLabels map[string]string `yaml:"pod_labels"`
	// Containers are patterns of container names.
	Containers []string `yaml:"containers"`
	// Rule names the rule: a built-in one, a custom one, several separated
	// by commas, or none.
	Rule string `yaml:"rule"`
}

// MultilineRuleConfig is a custom rule, written either as Vector's multiline
// settings (start_pattern, condition_pattern, mode) or as Fluent Bit's
// multiline parser rules (states). Patterns are RE2, as Go's regexp reads
// them.
type MultilineRuleConfig struct {
	// Name is how select entries and annotations refer to the rule.
	Name string `yaml:"name"`
	// StartPattern matches the first line of a record. Empty: any line may
	// start one.
	StartPattern string `yaml:"start_pattern"`
	// ConditionPattern is tested on the lines after the first, as mode says.
	ConditionPattern string `yaml:"condition_pattern"`
	// Mode is continue_through (lines matching the condition join),
	// continue_past (they join, and so does the line after them),
	// halt_before (lines join until one matches the condition) or halt_with
	// (lines join up to and including one that matches).
	Mode string `yaml:"mode"`
	// States are Fluent Bit's rules instead: each a state (several may be
	// named, separated by commas), a pattern and the state a matching line
	// leads to; the first state is start_state.
	States []MultilineStateConfig `yaml:"states"`
}

// MultilineStateConfig is one Fluent Bit rule: rule "state" "/pattern/" "next_state".
type MultilineStateConfig struct {
	// State is the state (or comma-separated states) the rule applies in.
	State string `yaml:"state"`
	// Pattern is the line's pattern; /slashes/ around it are dropped.
	Pattern string `yaml:"pattern"`
	// NextState is where a matching line leads; start_state ends the record
	// with the line.
	NextState string `yaml:"next_state"`
}

// RateLimitConfig is every container's default read rate limit.
type RateLimitConfig struct {
	// BytesPerSecond caps each container's read rate (0: no cap). The
	// namespace annotation logagent.io/rate-limit overrides it; a pod's
	// annotation may only lower it.
	BytesPerSecond ByteSize `yaml:"bytes_per_second"`
	// Burst is what a container may read at once after a quiet spell (0:
	// one second's worth).
	Burst ByteSize `yaml:"burst"`
}

// DefaultPolicyConfig joins nothing and limits nothing, with bounds for
// the groups of rules that are selected.
func DefaultPolicyConfig() PolicyConfig {
	return PolicyConfig{Multiline: MultilineConfig{
		MaxLines:     1000,
		MaxBytes:     1 << 20,
		FlushTimeout: time.Second,
	}}
}

// validate reports every bad key, by compiling what NewPolicies would.
func (c PolicyConfig) validate(maxRecordBytes int) []error {
	_, errs := newPolicies(c, maxRecordBytes)
	return errs
}

// Policies is the configuration's policy: its rules compiled, its select
// entries, its default rate limit. It is a PolicySource by itself, from the
// path's namespace and container name only (pod_labels entries never match
// without pod metadata); enrich uses it to resolve annotations and adds the
// pod's labels. Safe for concurrent use.
type Policies struct {
	limits MultilineLimits
	rate   RateLimit
	rules  map[string]*MultilineRule // built-in and custom, by name
	sel    []policySelect

	mu     sync.Mutex
	combos map[string]*MultilineRule // several rules, by canonical name
}

type policySelect struct {
	namespaces, containers []string
	labels                 map[string]string
	rule                   *MultilineRule
}

// NewPolicies compiles cfg's policy settings.
func NewPolicies(cfg Config) (*Policies, error) {
	p, errs := newPolicies(cfg.PolicyConfig, cfg.MaxRecordBytes)
	if errs != nil {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// ruleName is what a custom rule may be called.
var ruleName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

// noRule are the values that select no joining.
func noRule(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "none", "off", "false":
		return true
	}
	return false
}

func newPolicies(c PolicyConfig, maxRecordBytes int) (*Policies, []error) {
	var errs []error
	bad := func(key, why string, args ...any) {
		errs = append(errs, fmt.Errorf("collector.%s: %s", key, fmt.Sprintf(why, args...)))
	}
	ml := c.Multiline
	if ml.MaxLines < 2 {
		bad("multiline.max_lines", "must be at least 2, not %d", ml.MaxLines)
	}
	if ml.MaxBytes < 1024 {
		bad("multiline.max_bytes", "must be at least 1024, not %d", ml.MaxBytes)
	}
	// A joined record is a record: it never exceeds max_record_bytes, so a
	// larger bound (the default, with a smaller max_record_bytes) is that.
	if maxRecordBytes > 0 && ml.MaxBytes > maxRecordBytes {
		ml.MaxBytes = maxRecordBytes
	}
	if ml.FlushTimeout < 10*time.Millisecond {
		bad("multiline.flush_timeout", "must be at least 10ms, not %s", ml.FlushTimeout)
	}
	if c.RateLimit.BytesPerSecond < 0 {
		bad("rate_limit.bytes_per_second", "must not be negative")
	}
	if c.RateLimit.Burst < 0 {
		bad("rate_limit.burst", "must not be negative")
	}
	p := &Policies{
		limits: MultilineLimits{MaxLines: ml.MaxLines, MaxBytes: ml.MaxBytes, FlushTimeout: ml.FlushTimeout},
		rate:   RateLimit{BytesPerSecond: int64(c.RateLimit.BytesPerSecond), Burst: int64(c.RateLimit.Burst)},
		rules:  map[string]*MultilineRule{},
		combos: map[string]*MultilineRule{},
	}
	for _, s := range builtinRules {
		r, err := s.compile()
		if err != nil {
			panic(err) // the built-in rules are tested
		}
		p.rules[s.name] = r
	}
	for i, rc := range ml.Rules {
		key := fmt.Sprintf("multiline.rules[%d]", i)
		switch {
		case !ruleName.MatchString(rc.Name):
			bad(key+".name", "%q: want lower-case letters, digits, '-', '_' or '.'", rc.Name)
			continue
		case noRule(rc.Name):
			bad(key+".name", "%q means no rule", rc.Name)
			continue
		case p.rules[rc.Name] != nil:
			bad(key+".name", "%q is already a rule's name", rc.Name)
			continue
		}
		spec, err := rc.spec()
		if err == nil {
			var r *MultilineRule
			if r, err = spec.compile(); err == nil {
				p.rules[rc.Name] = r
				continue
			}
		}
		bad(key, "%v", err)
	}
	for i, s := range ml.Select {
		key := fmt.Sprintf("multiline.select[%d]", i)
		for _, pat := range slices.Concat(s.Namespaces, s.Containers, slices.Collect(maps.Values(s.PodLabels))) {
			if _, err := path.Match(pat, ""); err != nil {
				bad(key, "pattern %q: %v", pat, err)
			}
		}
		r, err := p.Rule(s.Rule)
		if err != nil {
			bad(key+".rule", "%v", err)
		}
		p.sel = append(p.sel, policySelect{namespaces: s.Namespaces, containers: s.Containers, labels: s.PodLabels, rule: r})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

// spec turns a custom rule's settings into states.
func (rc MultilineRuleConfig) spec() (ruleSpec, error) {
	vector := rc.StartPattern != "" || rc.ConditionPattern != "" || rc.Mode != ""
	switch {
	case vector && len(rc.States) > 0:
		return ruleSpec{}, errors.New("set either start_pattern/condition_pattern/mode or states, not both")
	case len(rc.States) > 0:
		return fluentBitSpec(rc.Name, rc.States)
	case !vector:
		return ruleSpec{}, errors.New("set start_pattern, condition_pattern or states")
	}
	start, cond, mode := rc.StartPattern, rc.ConditionPattern, rc.Mode
	if mode == "" {
		if cond == "" {
			mode = "halt_before" // a start pattern alone: each match starts a record
		} else {
			mode = "continue_through" // a continuation pattern alone
		}
	}
	s := ruleSpec{name: rc.Name, states: []stateSpec{{name: "start_state"}, {name: "group"}}}
	switch mode {
	case "continue_through":
		if cond == "" {
			return ruleSpec{}, errors.New("mode continue_through needs condition_pattern")
		}
		s.states[1].trans = []transSpec{to(cond, "group")}
	case "continue_past":
		if cond == "" {
			return ruleSpec{}, errors.New("mode continue_past needs condition_pattern")
		}
		if start == "" {
			start = cond
		}
		s.states[1].trans = []transSpec{to(cond, "group"), to("", endStateName)}
	case "halt_before":
		if cond == "" {
			cond = start
		}
		if cond == "" {
			return ruleSpec{}, errors.New("mode halt_before needs condition_pattern or start_pattern")
		}
		s.states[1].trans = []transSpec{{pattern: cond, next: "group", negate: true}}
	case "halt_with":
		if cond == "" {
			return ruleSpec{}, errors.New("mode halt_with needs condition_pattern")
		}
		s.states[1].trans = []transSpec{to(cond, endStateName), to("", "group")}
	default:
		return ruleSpec{}, fmt.Errorf("mode %q: want continue_through, continue_past, halt_before or halt_with", mode)
	}
	s.states[0].trans = []transSpec{to(start, "group")}
	return s, nil
}

// fluentBitSpec reads Fluent Bit's rule lines: the first names start_state.
func fluentBitSpec(name string, rules []MultilineStateConfig) (ruleSpec, error) {
	s := ruleSpec{name: name}
	index := map[string]int{}
	state := func(n string) int {
		i, ok := index[n]
		if !ok {
			i = len(s.states)
			index[n] = i
			s.states = append(s.states, stateSpec{name: n})
		}
		return i
	}
	state("start_state")
	for i, r := range rules {
		if r.NextState == "" || r.State == "" {
			return s, fmt.Errorf("states[%d]: state and next_state are required", i)
		}
		pat := r.Pattern
		if len(pat) >= 2 && pat[0] == '/' && pat[len(pat)-1] == '/' {
			pat = pat[1 : len(pat)-1]
		}
		if pat == "" {
			return s, fmt.Errorf("states[%d]: pattern is required", i)
		}
		state(r.NextState)
		for _, from := range strings.Split(r.State, ",") {
			st := state(strings.TrimSpace(from))
			s.states[st].trans = append(s.states[st].trans, to(pat, r.NextState))
		}
	}
	if len(s.states[0].trans) == 0 {
		return s, errors.New("no rule for start_state")
	}
	return s, nil
}

// Rule returns the rule a name selects: a built-in or custom rule, several
// separated by commas (tried in turn for the start of a group), or nil for
// "", none or off.
func (p *Policies) Rule(names string) (*MultilineRule, error) {
	if noRule(names) {
		return nil, nil
	}
	if r := p.rules[names]; r != nil {
		return r, nil
	}
	var list []string
	for _, n := range strings.Split(names, ",") {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" {
			continue
		}
		if p.rules[n] == nil {
			return nil, fmt.Errorf("no multiline rule %q (built-in: java, python, go, nodejs, ruby)", n)
		}
		list = append(list, n)
	}
	slices.Sort(list)
	list = slices.Compact(list)
	if len(list) == 0 {
		return nil, nil
	}
	key := strings.Join(list, ",")
	if r := p.rules[key]; r != nil {
		return r, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.combos[key]; r != nil {
		return r, nil
	}
	var rules []*MultilineRule
	for _, n := range list {
		rules = append(rules, p.rules[n])
	}
	r := combineRules(key, rules)
	p.combos[key] = r
	return r, nil
}

// Select returns the rule of the first select entry matching the container.
// labels are the pod's, nil when unknown: entries with pod_labels then do
// not match.
func (p *Policies) Select(namespace, container string, labels map[string]string) *MultilineRule {
	for i := range p.sel {
		if s := &p.sel[i]; s.matches(namespace, container, labels) {
			return s.rule
		}
	}
	return nil
}

func (s *policySelect) matches(namespace, container string, labels map[string]string) bool {
	if len(s.namespaces) > 0 && !matchAnyGlob(s.namespaces, namespace) {
		return false
	}
	if len(s.containers) > 0 && !matchAnyGlob(s.containers, container) {
		return false
	}
	for k, pat := range s.labels {
		v, ok := labels[k]
		if !ok {
			return false
		}
		if m, _ := path.Match(pat, v); !m {
			return false
		}
	}
	return true
}

func matchAnyGlob(patterns []string, s string) bool {
	for _, p := range patterns {
		if m, _ := path.Match(p, s); m {
			return true
		}
	}
	return false
}

// LabelKeys are the pod label keys the select entries read.
func (p *Policies) LabelKeys() []string {
	var keys []string
	for _, s := range p.sel {
		for k := range s.labels {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// RateLimit is the configured default rate limit.
func (p *Policies) RateLimit() RateLimit { return p.rate }

// Limits are the bounds of multiline groups.
func (p *Policies) Limits() MultilineLimits { return p.limits }

// Policy is the policy from the configuration alone: the select entries
// without pod_labels, and the default rate limit. For running without enrich.
func (p *Policies) Policy(src *Source) Policy {
	return Policy{Multiline: p.Select(src.Namespace, src.Container, nil), RateLimit: p.rate}
}
