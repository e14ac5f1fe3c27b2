package collector

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testPolicies compiles the default policy settings plus cfg's rules.
func testPolicies(t testing.TB, rules ...MultilineRuleConfig) *Policies {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Multiline.Rules = rules
	p, err := NewPolicies(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testRule(t testing.TB, name string, rules ...MultilineRuleConfig) *MultilineRule {
	t.Helper()
	r, err := testPolicies(t, rules...).Rule(name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// joinText runs a joiner with rule over text's lines (one stream), each line
// one record, and returns the records' messages.
func joinText(t testing.TB, rule *MultilineRule, lim MultilineLimits, text string) []string {
	t.Helper()
	var out []string
	emit := func(r Record) { out = append(out, string(r.Log)) }
	j := NewJoiner(rule, lim, nil)
	off := int64(0)
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		j.Add(Record{Time: int64(i), Stream: Stderr, Log: []byte(line)}, off, emit)
		off += int64(len(line)) + 1
	}
	j.Flush(emit)
	return out
}

func defaultLimits() MultilineLimits {
	c := DefaultPolicyConfig().Multiline
	return MultilineLimits{MaxLines: c.MaxLines, MaxBytes: c.MaxBytes, FlushTimeout: c.FlushTimeout}
}

// summary describes records as "<lines> <first line>", for comparing
// groupings in a readable way.
func summary(recs []string) []string {
	var s []string
	for _, r := range recs {
		first, _, _ := strings.Cut(r, "\n")
		s = append(s, fmt.Sprintf("%d %s", strings.Count(r, "\n")+1, first))
	}
	return s
}

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "multiline", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkGroups(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(summary(got), want) {
		t.Errorf("records:\n  %s\nwant:\n  %s", strings.Join(summary(got), "\n  "), strings.Join(want, "\n  "))
	}
}

// TestBuiltinRulesOnTraces joins traces the runtimes printed (Java 17, Node.js
// 20; Ruby's and logback's written in their real formats) and checks every
// record: each trace whole, the lines around it alone, nothing lost.
func TestBuiltinRulesOnTraces(t *testing.T) {
	for _, tc := range []struct {
		rule, file string
		want       []string
	}{
		{"java", "java.txt", []string{
			"1 2026-11-26 12:00:00.001 INFO  [main] app.Main - starting",
			"16 java.lang.IllegalStateException: service unavailable", // two "Caused by", "... N more"
			"1 2026-11-26 12:00:00.002 INFO  [main] app.Main - next request",
			"12 java.lang.IllegalArgumentException: bad input", // "Suppressed:" with its own frames
			"1 2026-11-26 12:00:00.003 INFO  [main] app.Main - done",
			`2 Exception in thread "main" java.lang.NullPointerException: Cannot invoke "java.lang.Integer.intValue()" because the return value of "java.util.Map.get(Object)" is null`,
		}},
		{"java", "java_logback.txt", []string{
			"1 2026-11-26 12:00:00.010 ERROR 1 --- [nio-8080-exec-1] o.a.c.c.C.[.[.[/].[dispatcherServlet]    : Servlet.service() for servlet [dispatcherServlet] threw exception",
			"11 java.lang.IllegalStateException: order 42 not found", // "... 2 common frames omitted"
			"1 2026-11-26 12:00:00.011  INFO 1 --- [nio-8080-exec-2] c.e.orders.OrderController               : GET /orders/43",
		}},
		{"nodejs", "nodejs.txt", []string{
			"1 2026-11-26T12:00:00.001Z info starting",
			"18 TypeError: request failed", // [cause] with its frames and properties
			"1 2026-11-26T12:00:00.002Z info next",
			"27 AggregateError: many", // [errors]
			"1 2026-11-26T12:00:00.003Z info last",
			"10 /app/errors.js:10", // uncaught: source excerpt, error, "Node.js v20"
		}},
		{"nodejs", "nodejs_uncaught.txt", []string{
			"1 2026-11-26T12:00:00.000Z info mode async",
			"9 /app/uncaught.js:4",
			"1 2026-11-26T12:00:00.000Z info mode string",
			"1 ", // the blank line Node.js writes first
			"7 /app/uncaught.js:5",
			"1 2026-11-26T12:00:00.000Z info mode esm",
			"12 node:internal/validators:45",
		}},
		{"ruby", "ruby.txt", []string{
			"1 I, [2026-11-26T12:00:00.000001 #1]  INFO -- : starting",
			"7 /app/app.rb:9:in `rescue in handle': request failed (RuntimeError)", // and its cause
			"1 I, [2026-11-26T12:00:00.000002 #1]  INFO -- : next",
			"15 /app/app.rb:2:in 'Object#recurse': stack level too deep (SystemStackError)", // Ruby 3.4 quotes, "... N levels..."
			"4 E, [2026-11-26T12:00:00.000003 #1] ERROR -- : request failed (RuntimeError)",
			"1 I, [2026-11-26T12:00:00.000004 #1]  INFO -- : done",
			"5 /app/app.rb:3:in `handle': undefined method `name' for nil (NoMethodError)", // error_highlight's excerpt
			"1 I, [2026-11-26T12:00:00.000005 #1]  INFO -- : bye",
		}},
	} {
		t.Run(tc.rule+"/"+tc.file, func(t *testing.T) {
			text := readTestdata(t, tc.file)
			got := joinText(t, testRule(t, tc.rule), defaultLimits(), text)
			checkGroups(t, got, tc.want)
			if joined := strings.Join(got, "\n"); joined != strings.TrimSuffix(text, "\n") {
				t.Error("the records' lines are not the input's, in order")
			}
		})
	}
}

// TestRulesLeaveOtherLanguagesAlone: a rule joins only its own traces: the
// lines of another runtime's trace go through one by one (no rule swallows
// everything), and ordinary log lines never start a group.
func TestRulesLeaveOtherLanguagesAlone(t *testing.T) {
	plain := "GET /healthz 200 1ms\n{\"level\":\"info\",\"msg\":\"request served\",\"status\":200}\nconnection pool worker seq=1\n"
	for _, rule := range []string{"java", "python", "go", "nodejs", "ruby"} {
		got := joinText(t, testRule(t, rule), defaultLimits(), plain)
		if len(got) != 3 {
			t.Errorf("%s joined plain lines: %q", rule, got)
		}
	}
	// The Python rule on a Java trace: every line alone.
	java := readTestdata(t, "java.txt")
	if got := joinText(t, testRule(t, "python"), defaultLimits(), java); len(got) != strings.Count(java, "\n") {
		t.Errorf("python rule on a Java trace: %d records from %d lines", len(got), strings.Count(java, "\n"))
	}
}

// TestCombinedRules: "java,python" joins both kinds in one container.
func TestCombinedRules(t *testing.T) {
	p := testPolicies(t)
	r, err := p.Rule("python, java")
	if err != nil {
		t.Fatal(err)
	}
	if r.Name() != "java,python" {
		t.Errorf("name %q, want the sorted list", r.Name())
	}
	if r2, _ := p.Rule("java,python,java"); r2 != r {
		t.Error("the same combination is compiled twice")
	}
	text := readTestdata(t, "java_logback.txt") + pythonChained
	got := joinText(t, r, defaultLimits(), text)
	checkGroups(t, got, []string{
		"1 2026-11-26 12:00:00.010 ERROR 1 --- [nio-8080-exec-1] o.a.c.c.C.[.[.[/].[dispatcherServlet]    : Servlet.service() for servlet [dispatcherServlet] threw exception",
		"11 java.lang.IllegalStateException: order 42 not found",
		"1 2026-11-26 12:00:00.011  INFO 1 --- [nio-8080-exec-2] c.e.orders.OrderController               : GET /orders/43",
		"10 Traceback (most recent call last):",
		"1 done",
	})
	for _, bad := range []string{"java,cobol", "cobol"} {
		if _, err := p.Rule(bad); err == nil || !strings.Contains(err.Error(), "cobol") {
			t.Errorf("Rule(%q): err = %v", bad, err)
		}
	}
	for _, none := range []string{"", "none", "off", " None "} {
		if r, err := p.Rule(none); r != nil || err != nil {
			t.Errorf("Rule(%q) = %v, %v; want no rule", none, r, err)
		}
	}
}

// pythonChained is a chained traceback as Python prints it, then a line.
const pythonChained = `Traceback (most recent call last):
  File "/app/x.py", line 3, in <module>
KeyError: 'a'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/x.py", line 5, in <module>
    raise ValueError("b")
ValueError: b
done
`

// TestJoinerStreamsAndTime: a group never takes the other stream's lines,
// which pass while it is open; a joined record has its first line's time and
// stream.
func TestJoinerStreamsAndTime(t *testing.T) {
	j := NewJoiner(testRule(t, "java"), defaultLimits(), nil)
	var out []Record
	emit := func(r Record) { out = append(out, r) }
	add := func(s Stream, tm int64, line string) {
		j.Add(Record{Time: tm, Stream: s, Log: []byte(line)}, tm*100, emit)
	}
	add(Stderr, 1, "java.lang.RuntimeException: boom")
	add(Stdout, 2, "\tat stdout.is.Not(Joined.java:1)")
	add(Stderr, 3, "\tat a.B.c(B.java:2)")
	add(Stdout, 4, "java.lang.Error: other stream")
	add(Stderr, 5, "\tat a.B.d(B.java:3)")
	if start, ok := j.OpenStart(); !ok || start != 100 {
		t.Errorf("OpenStart = %d, %v; want the stderr group's first line, 100", start, ok)
	}
	add(Stdout, 6, "\tat x.Y.z(Y.java:9)")
	add(Stderr, 7, "done")
	j.Flush(emit)
	var got []string
	for _, r := range out {
		got = append(got, fmt.Sprintf("%s@%d %q", r.Stream, r.Time, r.Log))
	}
	want := []string{
		`stdout@2 "\tat stdout.is.Not(Joined.java:1)"`,
		`stderr@1 "java.lang.RuntimeException: boom\n\tat a.B.c(B.java:2)\n\tat a.B.d(B.java:3)"`,
		`stderr@7 "done"`,
		`stdout@4 "java.lang.Error: other stream\n\tat x.Y.z(Y.java:9)"`, // by Flush
	}
	if !slices.Equal(got, want) {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, ok := j.OpenStart(); ok {
		t.Error("a group is open after Flush")
	}
}

// TestJoinerPassesLinesUncopied: a line that starts no group is emitted as
// it came, its bytes not copied; so is a group of one line.
func TestJoinerPassesLinesUncopied(t *testing.T) {
	j := NewJoiner(testRule(t, "java"), defaultLimits(), nil)
	var out []Record
	emit := func(r Record) { out = append(out, r) }
	plain := []byte("plain line")
	lone := []byte("java.lang.Error: no frames")
	j.Add(Record{Log: plain}, 0, emit)
	j.Add(Record{Log: lone}, 11, emit)
	j.Add(Record{Log: plain}, 40, emit)
	if len(out) != 3 || &out[0].Log[0] != &plain[0] || &out[1].Log[0] != &lone[0] {
		t.Errorf("lines copied or lost: %v", out)
	}
}

// TestJoinerBounds: a group reaching max_lines or max_bytes is emitted and
// the rest of the trace goes on as the next group; each cut is counted.
func TestJoinerBounds(t *testing.T) {
	var trace strings.Builder
	trace.WriteString("java.lang.RuntimeException: deep\n")
	for i := range 25 {
		fmt.Fprintf(&trace, "\tat a.B.f%02d(B.java:%d)\n", i, i)
	}
	trace.WriteString("after\n")
	for _, tc := range []struct {
		name   string
		lim    MultilineLimits
		reason string
		want   []string
	}{
		{"max_lines", MultilineLimits{MaxLines: 10, MaxBytes: 1 << 20}, cutMaxLines, []string{
			"10 java.lang.RuntimeException: deep", "10 \tat a.B.f09(B.java:9)", "6 \tat a.B.f19(B.java:19)", "1 after",
		}},
		// The first line is 32 bytes, each frame 21 (22 from f10) and its "\n".
		{"max_bytes", MultilineLimits{MaxLines: 1000, MaxBytes: 32 + 5*22}, cutMaxBytes, []string{
			"6 java.lang.RuntimeException: deep", "6 \tat a.B.f05(B.java:5)", "6 \tat a.B.f11(B.java:11)",
			"6 \tat a.B.f17(B.java:17)", "2 \tat a.B.f23(B.java:23)", "1 after",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMultilineMetrics(prometheus.NewRegistry())
			j := NewJoiner(testRule(t, "java"), tc.lim, m)
			var got []string
			emit := func(r Record) {
				if len(r.Log) > tc.lim.MaxBytes {
					t.Errorf("record of %d bytes, max %d", len(r.Log), tc.lim.MaxBytes)
				}
				got = append(got, string(r.Log))
			}
			for line := range strings.Lines(trace.String()) {
				j.Add(Record{Log: []byte(strings.TrimSuffix(line, "\n"))}, 0, emit)
			}
			j.Flush(emit)
			checkGroups(t, got, tc.want)
			if n := testutil.ToFloat64(m.cut[tc.reason]); n != float64(len(tc.want)-2) {
				t.Errorf("cut{%s} = %v, want %d", tc.reason, n, len(tc.want)-2)
			}
			if n := testutil.ToFloat64(m.groups.WithLabelValues("java")); n != float64(len(tc.want)-1) {
				t.Errorf("groups{java} = %v, want %d", n, len(tc.want)-1)
			}
		})
	}
}

// TestJoinerFlushIdle: an open group goes out once no line came for the
// flush timeout; FlushIdle says when that will be; a group that keeps
// growing is not flushed.
func TestJoinerFlushIdle(t *testing.T) {
	m := newMultilineMetrics(prometheus.NewRegistry())
	lim := MultilineLimits{MaxLines: 100, MaxBytes: 1 << 20, FlushTimeout: time.Second}
	j := NewJoiner(testRule(t, "java"), lim, m)
	var out []string
	emit := func(r Record) { out = append(out, string(r.Log)) }
	t0 := time.Unix(1000, 0)
	if _, ok := j.FlushIdle(t0, emit); ok {
		t.Error("due time with no group open")
	}
	j.Add(Record{Log: []byte("java.lang.Error: x")}, 0, emit)
	due, ok := j.FlushIdle(t0, emit)
	if !ok || !due.Equal(t0.Add(time.Second)) {
		t.Fatalf("due %v, %v; want %v", due, ok, t0.Add(time.Second))
	}
	j.Add(Record{Log: []byte("\tat a.B(B.java:1)")}, 20, emit)
	// Grown since: the timeout runs from this call.
	if due, _ := j.FlushIdle(t0.Add(1500*time.Millisecond), emit); len(out) != 0 || !due.Equal(t0.Add(2500*time.Millisecond)) {
		t.Fatalf("flushed a growing group (%q), or due %v", out, due)
	}
	if _, ok := j.FlushIdle(t0.Add(2400*time.Millisecond), emit); !ok || len(out) != 0 {
		t.Fatal("flushed before its time")
	}
	if _, ok := j.FlushIdle(t0.Add(2500*time.Millisecond), emit); ok || len(out) != 1 || out[0] != "java.lang.Error: x\n\tat a.B(B.java:1)" {
		t.Fatalf("after the timeout: open=%v, records %q", ok, out)
	}
	if n := testutil.ToFloat64(m.cut[cutTimeout]); n != 1 {
		t.Errorf("cut{timeout} = %v", n)
	}
}

// TestJoinerTentativeLines: a line that belongs to a group only if the next
// one says so (the blank line between chained Python tracebacks, Go's blank
// line before a goroutine) is held apart, and goes out on its own when the
// group ends without it, by the next line or the timeout.
func TestJoinerTentativeLines(t *testing.T) {
	py := testRule(t, "python")
	// Chained: the blank lines join.
	checkGroups(t, joinText(t, py, defaultLimits(), pythonChained), []string{"10 Traceback (most recent call last):", "1 done"})
	// Not chained: the blank line after the trace is a record of its own.
	single := "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nKeyError: 'a'\n\nnext\n"
	checkGroups(t, joinText(t, py, defaultLimits(), single), []string{"3 Traceback (most recent call last):", "1 ", "1 next"})

	// By the timeout: the held blank line is emitted after the group, and
	// OpenStart covered it until then.
	j := NewJoiner(py, defaultLimits(), nil)
	var out []string
	emit := func(r Record) { out = append(out, string(r.Log)) }
	off := int64(0)
	for line := range strings.Lines("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nKeyError: 'a'\n\n") {
		j.Add(Record{Log: []byte(strings.TrimSuffix(line, "\n"))}, off, emit)
		off += int64(len(line))
	}
	if s, ok := j.OpenStart(); !ok || s != 0 {
		t.Fatalf("OpenStart %d %v", s, ok)
	}
	t0 := time.Now()
	j.FlushIdle(t0, emit)
	if _, ok := j.FlushIdle(t0.Add(time.Minute), emit); ok {
		t.Error("a group is open after the timeout")
	}
	checkGroups(t, out, []string{"3 Traceback (most recent call last):", "1 "})
}

// TestCustomRules: Vector's four modes and Fluent Bit's state rules.
func TestCustomRules(t *testing.T) {
	lines := "2026-11-26 start one\n  indented\n  more\n2026-11-26 start two\nplain\n"
	for _, tc := range []struct {
		name string
		rule MultilineRuleConfig
		text string
		want []string
	}{
		{"start pattern only", MultilineRuleConfig{StartPattern: `^\d{4}-\d{2}-\d{2} `}, lines + "tail\n",
			[]string{"3 2026-11-26 start one", "3 2026-11-26 start two"}},
		{"continuation pattern only", MultilineRuleConfig{ConditionPattern: `^\s`}, lines,
			[]string{"3 2026-11-26 start one", "1 2026-11-26 start two", "1 plain"}},
		{"continue_through", MultilineRuleConfig{StartPattern: `^\d{4}`, ConditionPattern: `^\s`, Mode: "continue_through"}, "x\n" + lines,
			[]string{"1 x", "3 2026-11-26 start one", "1 2026-11-26 start two", "1 plain"}},
		{"continue_past", MultilineRuleConfig{ConditionPattern: `\\$`, Mode: "continue_past"}, "a \\\nb \\\nc\nd\n",
			[]string{"3 a \\", "1 d"}},
		{"halt_before", MultilineRuleConfig{StartPattern: `^\d{4}`, ConditionPattern: `^\d{4}`, Mode: "halt_before"}, "x\n" + lines,
			[]string{"1 x", "3 2026-11-26 start one", "2 2026-11-26 start two"}},
		{"halt_with", MultilineRuleConfig{StartPattern: `^BEGIN`, ConditionPattern: `;$`, Mode: "halt_with"}, "x\nBEGIN a\nb\nc;\nd\n",
			[]string{"1 x", "3 BEGIN a", "1 d"}},
		{"fluent bit states", MultilineRuleConfig{States: []MultilineStateConfig{
			{State: "start_state", Pattern: `/^\d{4}-\d{2}-\d{2} /`, NextState: "cont"},
			{State: "cont", Pattern: `/^\s+/`, NextState: "cont"},
		}}, lines, []string{"3 2026-11-26 start one", "1 2026-11-26 start two", "1 plain"}},
		{"fluent bit back to start_state ends the group", MultilineRuleConfig{States: []MultilineStateConfig{
			{State: "start_state", Pattern: `^BEGIN`, NextState: "body"},
			{State: "body", Pattern: `^END`, NextState: "start_state"},
			{State: "body", Pattern: `.`, NextState: "body"},
		}}, "BEGIN\na\nEND\nb\n", []string{"3 BEGIN", "1 b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.rule.Name = "custom"
			checkGroups(t, joinText(t, testRule(t, "custom", tc.rule), defaultLimits(), tc.text), tc.want)
		})
	}
}

// TestPolicyConfigErrors: every bad setting is named.
func TestPolicyConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"bad regexp", func(c *Config) {
			c.Multiline.Rules = []MultilineRuleConfig{{Name: "x", StartPattern: "(("}}
		}, "collector.multiline.rules[0]: "},
		{"lookahead is not RE2", func(c *Config) {
			c.Multiline.Rules = []MultilineRuleConfig{{Name: "x", StartPattern: `^(?!at)`}}
		}, "multiline.rules[0]"},
		{"built-in name", func(c *Config) { c.Multiline.Rules = []MultilineRuleConfig{{Name: "java", StartPattern: "x"}} }, "already a rule"},
		{"bad name", func(c *Config) { c.Multiline.Rules = []MultilineRuleConfig{{Name: "My Rule", StartPattern: "x"}} }, "rules[0].name"},
		{"no pattern", func(c *Config) { c.Multiline.Rules = []MultilineRuleConfig{{Name: "x"}} }, "set start_pattern"},
		{"both forms", func(c *Config) {
			c.Multiline.Rules = []MultilineRuleConfig{{Name: "x", StartPattern: "a", States: []MultilineStateConfig{{State: "start_state", Pattern: "a", NextState: "b"}}}}
		}, "not both"},
		{"bad mode", func(c *Config) {
			c.Multiline.Rules = []MultilineRuleConfig{{Name: "x", StartPattern: "a", ConditionPattern: "b", Mode: "continue"}}
		}, `mode "continue"`},
		{"no start_state rule", func(c *Config) {
			c.Multiline.Rules = []MultilineRuleConfig{{Name: "x", States: []MultilineStateConfig{{State: "cont", Pattern: "a", NextState: "cont"}}}}
		}, "no rule for start_state"},
		{"unknown rule selected", func(c *Config) { c.Multiline.Select = []MultilineSelect{{Rule: "cobol"}} }, "multiline.select[0].rule"},
		{"bad glob", func(c *Config) { c.Multiline.Select = []MultilineSelect{{Namespaces: []string{"["}, Rule: "java"}} }, "multiline.select[0]: pattern"},
		{"max_lines", func(c *Config) { c.Multiline.MaxLines = 1 }, "multiline.max_lines"},
		{"max_bytes", func(c *Config) { c.Multiline.MaxBytes = 1023 }, "multiline.max_bytes"},
		{"flush_timeout", func(c *Config) { c.Multiline.FlushTimeout = 0 }, "multiline.flush_timeout"},
		{"negative rate", func(c *Config) { c.RateLimit.BytesPerSecond = -1 }, "rate_limit.bytes_per_second"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.edit(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	// The default max_bytes with a smaller max_record_bytes is that.
	cfg := DefaultConfig()
	cfg.MaxRecordBytes = 4096
	if err := cfg.Validate(); err != nil {
		t.Errorf("max_record_bytes 4096 with the default multiline.max_bytes: %v", err)
	}
	p, errs := newPolicies(cfg.PolicyConfig, cfg.MaxRecordBytes)
	if len(errs) != 0 || p.limits.MaxBytes != 4096 {
		t.Errorf("multiline.max_bytes with max_record_bytes 4096 = %d (%v), want 4096", p.limits.MaxBytes, errs)
	}
}

// TestPolicySelect: the first matching entry wins; globs on namespace and
// container; pod_labels match only when the labels are known.
func TestPolicySelect(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Multiline.Select = []MultilineSelect{
		{Namespaces: []string{"kube-*"}, Rule: "none"},
		{PodLabels: map[string]string{"app.kubernetes.io/name": "checkout*"}, Rule: "java"},
		{Namespaces: []string{"shop"}, Containers: []string{"api", "worker-*"}, Rule: "python"},
		{Containers: []string{"*-go"}, Rule: "go"},
	}
	cfg.RateLimit.BytesPerSecond = 2 << 20
	p, err := NewPolicies(cfg)
	if err != nil {
		t.Fatal(err)
	}
	name := func(r *MultilineRule) string {
		if r == nil {
			return "-"
		}
		return r.Name()
	}
	for _, tc := range []struct {
		ns, container string
		labels        map[string]string
		want          string
	}{
		{"kube-system", "svc-go", nil, "-"},
		{"shop", "api", map[string]string{"app.kubernetes.io/name": "checkout-v2"}, "java"},
		{"shop", "api", nil, "python"},
		{"shop", "worker-7", map[string]string{"app.kubernetes.io/name": "cart"}, "python"},
		{"shop", "web", nil, "-"},
		{"other", "svc-go", nil, "go"},
	} {
		if got := name(p.Select(tc.ns, tc.container, tc.labels)); got != tc.want {
			t.Errorf("Select(%s, %s, %v) = %s, want %s", tc.ns, tc.container, tc.labels, got, tc.want)
		}
	}
	pol := p.Policy(&Source{Namespace: "shop", Container: "api"})
	if name(pol.Multiline) != "python" || pol.RateLimit.BytesPerSecond != 2<<20 || pol.Provisional {
		t.Errorf("Policy = %+v", pol)
	}
}

// TestMatcherPrefilterSound: the cheap checks never turn away a line the
// regular expression matches. Every built-in pattern (and some written to
// trip the analysis) against every line of the test traces and some
// generated ones.
func TestMatcherPrefilterSound(t *testing.T) {
	var corpus []string
	for _, f := range []string{"java.txt", "java_logback.txt", "nodejs.txt", "nodejs_uncaught.txt", "ruby.txt"} {
		corpus = append(corpus, strings.Split(readTestdata(t, f), "\n")...)
	}
	corpus = append(corpus, strings.Split(pythonChained, "\n")...)
	corpus = append(corpus, "", " ", "\t", "é", "Ébc", "abc", "ABC", "panic: x", "x panic: y", "goroutine 1 [running]:",
		"  + Exception Group Traceback (most recent call last):", "  File \"x\", line 3", "SIGQUIT: quit", "rax    0x0",
		"http: panic serving 1.2.3.4:5: boom", "a:1", "Error", "Error:", "xError: y", "Uncaught Error: x", "\u00a0at x")
	patterns := []string{`^$`, `^\s*$`, `(?i)^error`, `^(?:a|b)?c`, `^a*$`, `x*`, `\bfoo`, `^(?m)abc`, `(?:^a|^b)`, `^é`, `^[^a]`}
	for _, s := range builtinRules {
		for _, st := range s.states {
			for _, tr := range st.trans {
				patterns = append(patterns, tr.pattern)
			}
		}
	}
	for _, p := range patterns {
		m, err := compileMatcher(p, false)
		if err != nil {
			t.Fatalf("%q: %v", p, err)
		}
		for _, line := range corpus {
			want := m.re == nil || m.re.Match([]byte(line))
			if got := m.match([]byte(line)); got != want {
				t.Errorf("pattern %q on %q: prefiltered match %v, regexp %v", p, line, got, want)
			}
		}
	}
}

// TestMatcherPrefilterKinds: the analysis finds what makes the common line
// cheap: for anchored patterns, the first bytes, a leading run, the literals
// that follow and whether these decide the match alone; for unanchored ones,
// the literals a match starts with, or literals it contains.
func TestMatcherPrefilterKinds(t *testing.T) {
	for _, tc := range []struct {
		pattern      string
		first        string // bytes admitted (checked on these), "" if no filter
		run          string // a leading run's bytes
		leads        []string
		exact, whole bool
		scan         []string
		needles      []string
	}{
		{`^Traceback \(most recent call last\):$`, "T", "", []string{"Traceback (most recent call last):"}, true, true, nil, nil},
		{`^panic: `, "p", "", []string{"panic: "}, true, false, nil, nil},
		{`^[\t ]`, "\t ", "", nil, true, false, nil, nil},
		{`^\t.*`, "\t", "", []string{"\t"}, true, false, nil, nil},
		{`^[\t ]+(?:eval )?at `, "\t ", "\t ", []string{"eval at ", "at "}, true, false, nil, nil},
		{`^[\t ]*(?:Caused by|Suppressed): `, "\t CS", "\t ", []string{"Caused by: ", "Suppressed: "}, true, false, nil, nil},
		{`^\s*$`, "\t\n\f\r ", "\t\n\f\r ", []string{""}, true, true, nil, nil},
		{`^goroutine \d+ .*\]:$`, "g", "", []string{"goroutine "}, false, false, nil, nil},
		{`^[\t ]*\.\.\. \d+ (?:more|common frames omitted)$`, "\t .", "\t ", []string{"... "}, false, false, nil, nil},
		{`(?:Exception|Error|Throwable)(?::|$)`, "", "", nil, false, false, []string{"Exception", "Error", "Throwable"}, nil},
		{`http: panic serving `, "", "", nil, false, false, []string{"http: panic serving "}, nil},
		{`\bpanic: `, "", "", nil, false, false, nil, []string{"panic: "}},
		{`^x*`, "", "", nil, false, false, nil, nil},
	} {
		m, err := compileMatcher(tc.pattern, false)
		if err != nil {
			t.Fatal(err)
		}
		if tc.first != "" {
			if !m.first.ok {
				t.Errorf("%q: no first-byte filter", tc.pattern)
			}
			for b := range 256 {
				if want := strings.IndexByte(tc.first, byte(b)) >= 0; m.first.has(byte(b)) != want {
					t.Errorf("%q: first byte %q admitted %v", tc.pattern, byte(b), !want)
				}
			}
		}
		var run string
		if m.run != nil {
			for b := range 256 {
				if m.run.has(byte(b)) {
					run += string(rune(b))
				}
			}
		}
		str := func(bs [][]byte) []string {
			var out []string
			for _, b := range bs {
				out = append(out, string(b))
			}
			return out
		}
		var scan []string
		for _, g := range m.scan {
			scan = append(scan, str(g.lits)...)
		}
		if run != tc.run || !slices.Equal(str(m.leads), tc.leads) || m.exact != tc.exact || m.whole != tc.whole ||
			!slices.Equal(scan, tc.scan) || !slices.Equal(str(m.needles), tc.needles) {
			t.Errorf("%q: run %q leads %q exact %v whole %v scan %q needles %q\nwant run %q leads %q exact %v whole %v scan %q needles %q",
				tc.pattern, run, str(m.leads), m.exact, m.whole, scan, str(m.needles),
				tc.run, tc.leads, tc.exact, tc.whole, tc.scan, tc.needles)
		}
	}
	if m, _ := compileMatcher(`^$`, false); !m.first.ok || !m.first.empty || m.first.admits([]byte("x")) || !m.exact || !m.whole {
		t.Errorf("^$ is not decided as the empty line: %+v", m)
	}
	if m, _ := compileMatcher(`^x*`, false); m.first.ok {
		t.Error("^x* filters lines, but matches every line")
	}
}

// TestBuiltinStartStatesFilterOrdinaryLines: for every built-in rule, the
// usual lines of a node (JSON, plain text) are decided at the start state
// without a regular expression: the state's first-byte filter or every
// transition's literal checks turn them away.
func TestBuiltinStartStatesFilterOrdinaryLines(t *testing.T) {
	lines := [][]byte{
		[]byte(`{"level":"info","msg":"request served","latency_ms":12,"status":200,"trace_id":"0af7651916cd43dd8448eb211c80319c","seq":42}`),
		[]byte("connection pool worker queue shard replica leader follower commit rollback seq=42"),
		[]byte("I1126 12:00:00.000000       1 controller.go:42] Reconciled object"),
	}
	p := testPolicies(t)
	for _, s := range builtinRules {
		r, _ := p.Rule(s.name)
		st := &r.states[0]
		for _, line := range lines {
			if st.rejects(line) {
				continue
			}
			for _, tr := range st.trans {
				m := &tr.m
				contains := func(n []byte) bool { return bytes.Contains(line, n) }
				var lead [][]byte
				for _, g := range m.scan {
					lead = append(lead, g.lits...)
				}
				rejected := m.exact || (m.first.ok && !m.first.admits(line)) ||
					(m.leads != nil && m.run == nil && !slices.ContainsFunc(m.leads, func(l []byte) bool { return bytes.HasPrefix(line, l) })) ||
					(lead != nil && !slices.ContainsFunc(lead, contains)) ||
					(m.needles != nil && !slices.ContainsFunc(m.needles, contains))
				if !rejected {
					t.Errorf("%s: %q reaches the regexp %q", s.name, line, m.src)
				}
			}
		}
	}
}

// TestJoinerOwnBeforeReuse: the joiner keeps the lines of an open group as
// they came and copies them when the group is emitted, or when Own says
// the caller's buffer is about to be reused. With the buffer overwritten
// after every k lines (Own called first, as the read loop does), the
// records are those of lines that never move, whatever k, through
// tentative lines, bounds and several rules; every joined record is
// counted in the joiner's allocations, and no Add counts more than
// MaxGrowth said it might.
func TestJoinerOwnBeforeReuse(t *testing.T) {
	text := readTestdata(t, "java.txt") + strings.Join(benchTraces["go"], "\n") + "\nplain\n" +
		strings.Join(benchTraces["python"], "\n") + "\n\nDuring handling of the above exception, another exception occurred:\n\n" +
		strings.Join(benchTraces["python"], "\n") + "\nlast\n"
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	rule := testRule(t, "go,java,python")
	for _, lim := range []MultilineLimits{defaultLimits(), {MaxLines: 3, MaxBytes: 1 << 20}, {MaxLines: 1000, MaxBytes: 150}} {
		want := joinText(t, rule, lim, text)
		if len(want) >= len(lines) || len(want) < 8 {
			t.Fatalf("%d records of %d lines: the text does not exercise joining", len(want), len(lines))
		}
		for _, k := range []int{1, 2, 3, 5, 7, 1000} {
			t.Run(fmt.Sprintf("lines%d_bytes%d_own%d", lim.MaxLines, lim.MaxBytes, k), func(t *testing.T) {
				var alloc int64
				j := NewJoiner(rule, lim, nil)
				j.alloc = &alloc
				var got []string
				joinedBytes := 0
				emit := func(r Record) {
					got = append(got, string(r.Log))
					if bytes.IndexByte(r.Log, '\n') >= 0 {
						joinedBytes += len(r.Log)
					}
				}
				buf := make([]byte, 0, 1<<16)
				for i, line := range lines {
					if i%k == 0 {
						j.Own()
						for b := range buf {
							buf[b] = '#'
						}
						buf = buf[:0]
					}
					start := len(buf)
					buf = append(buf, line...)
					bound, before := j.MaxGrowth(len(line)), alloc
					j.Add(Record{Time: int64(i), Stream: Stderr, Log: buf[start:len(buf):len(buf)]}, int64(i), emit)
					if grew := alloc - before; grew > bound {
						t.Errorf("line %d (%q): counted %d bytes, MaxGrowth said %d", i, line, grew, bound)
					}
				}
				j.Own()
				for b := range buf {
					buf[b] = '#'
				}
				j.Flush(emit)
				if !slices.Equal(got, want) {
					t.Errorf("records differ from those of lines that stay:\ngot  %q\nwant %q", summary(got), summary(want))
				}
				if alloc < int64(joinedBytes) {
					t.Errorf("counted %d bytes, but the joined records alone are %d", alloc, joinedBytes)
				}
				if j.Open() || j.Held() != 0 {
					t.Errorf("after Flush: open %v, held %d", j.Open(), j.Held())
				}
			})
		}
	}
}
