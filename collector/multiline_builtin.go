package collector

// The built-in multiline rules, for the stack traces the common runtimes
// print. They follow Fluent Bit's built-in parsers (which come from Google's
// fluent-plugin-detect-exceptions) where those hold, and go further where a
// real trace shows them short: Python's chained tracebacks and exception
// groups, Go's goroutine dumps and register dumps, Node.js's source excerpt,
// causes and error properties, Ruby's causes. The tests run each on real
// traces (multiline_test.go, testdata/multiline/).
//
// Every rule starts a group only from a line shaped like the start of a
// trace, so a container's other lines pass through unjoined; each start
// pattern is anchored or contains a literal, so most lines are turned away
// by a byte comparison or a substring search before any regular expression.

// javaRule joins JVM stack traces (Java, Kotlin, Scala): the exception line,
// "\tat" frames, "Caused by:" and "Suppressed:" (tab-indented, with their own
// frames) and "... N more" / logback's "... N common frames omitted". The
// .NET markers Fluent Bit's rule knows are kept too.
var javaRule = ruleSpec{name: "java", states: []stateSpec{
	{name: "start_state", trans: []transSpec{
		// Anywhere in the first 4 KiB of the line: after a logger's
		// prefix, or "Exception in thread ...".
		{pattern: `(?:Exception|Error|Throwable)(?::|$)`, next: "java_after_exception", window: 4096},
	}},
	{name: "java_after_exception", trans: javaFrames},
	{name: "java", trans: javaFrames},
}}

var javaFrames = []transSpec{
	to(`^[\t ]+(?:eval )?at `, "java"),
	to(`^[\t ]*(?:Caused by|Suppressed): `, "java_after_exception"),
	to(`^[\t ]*\.\.\. \d+ (?:more|common frames omitted)$`, "java"),
	to(`^[\t ]*nested exception is:`, "java_after_exception"),
	to(`^[\t ]+--- End of inner exception stack trace ---$`, "java"),
	to(`^--- End of stack trace from previous location`, "java"),
}

// pythonRule joins tracebacks: "Traceback (most recent call last):", the
// indented "File" lines, source lines and 3.11's ^~~~ markers, the exception
// line; then, for chained exceptions, the blank line, "During handling of the
// above exception, another exception occurred:" or "The above exception was
// the direct cause of the following exception:", and the next traceback.
// Exception groups ("  + Exception Group Traceback", "  | " lines) and the
// header-less form of a SyntaxError ("  File ..., line N") are included.
var pythonRule = ruleSpec{name: "python", states: []stateSpec{
	{name: "start_state", trans: pythonStarts},
	{name: "python", trans: []transSpec{
		to(`^[\t ]`, "python"),
		to(`^(?:[^\s.():]+\.)*[^\s.():]+(?::|$)`, "python_exception"),
	}},
	{name: "python_exception", trans: []transSpec{
		to(`^$`, "python_chain_blank"),
	}},
	// The blank line after an exception belongs to the trace only if a
	// chained one follows.
	{name: "python_chain_blank", tentative: true, trans: []transSpec{
		to(`^(?:During handling of the above exception, another exception occurred|The above exception was the direct cause of the following exception):$`, "python_chain"),
	}},
	{name: "python_chain", trans: append([]transSpec{to(`^$`, "python_chain")}, pythonStarts...)},
}}

var pythonStarts = []transSpec{
	to(`^Traceback \(most recent call last\):$`, "python"),
	to(`^[\t ]*\+ Exception Group Traceback \(most recent call last\):$`, "python"),
	to(`^  File ".*", line \d+`, "python"),
}

// goRule joins panics, fatal errors and goroutine dumps: "panic: ..." (and
// "[recovered]" chains, "[signal ...]"), "fatal error: ...", a signal's
// "SIGQUIT: quit" / "PC=..." header, a stack overflow's "runtime:" lines, then blank-separated "goroutine N
// [...]:" sections of function and "\tfile:line" frames, "created by", the
// "runtime stack:" of a throw and the register dump. net/http's "http: panic
// serving" line starts a group too. The blank line before a section is
// tentative: the end of a trace is not followed by one.
var goRule = ruleSpec{name: "go", states: []stateSpec{
	{name: "start_state", trans: []transSpec{
		to(`^panic: `, "go_panic"),
		to(`^fatal error: `, "go_panic"),
		to(`^runtime: goroutine stack exceeds `, "go_panic"),
		to(`^SIG[A-Z]+: `, "go_panic"),
		to(`^goroutine \d+ .*\]:$`, "go_frames"),
		// net/http's log line, after the log package's date and time.
		to(`^(?:\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? )?http: panic serving `, "go_panic"),
	}},
	{name: "go_panic", trans: []transSpec{
		to(`^\t?panic: `, "go_panic"),
		to(`^fatal error: `, "go_panic"),
		to(`^runtime: `, "go_panic"),
		to(`^\[signal `, "go_panic"),
		to(`^PC=0x`, "go_panic"),
		to(`^signal arrived during `, "go_panic"),
		to(`^goroutine \d+ .*\]:$`, "go_frames"),
		to(`^$`, "go_blank"),
	}},
	{name: "go_blank", tentative: true, trans: []transSpec{
		to(`^goroutine \d+ .*\]:$`, "go_frames"),
		to(`^runtime stack:$`, "go_frames"),
		to(goRegister, "go_registers"),
	}},
	{name: "go_frames", trans: []transSpec{
		to(`^\t`, "go_frames"),
		to(`^created by `, "go_frames"),
		to(`^\.\.\.`, "go_frames"),
		// A call: pkg/path.Func(args), pkg.(*Type).Method(...), generic
		// instances with [...].
		to(`^[\w.\-/]*(?:\(\*?[\w.\-\[\]]+\)\.)?[\w.\-\[\]]+\(.*\)$`, "go_frames"),
		to(`^$`, "go_blank"),
	}},
	{name: "go_registers", trans: []transSpec{
		to(goRegister, "go_registers"),
	}},
}}

const goRegister = `^[a-z][a-z0-9]{1,6} +0x[0-9a-f]+$`

// nodejsRule joins what Node.js prints for an uncaught exception (the
// "file:line" excerpt with its ^ marker, a blank line, the error and its
// "    at" frames, a blank line and "Node.js vN") and what console.error or a
// logger prints for an Error: the "Name: message" line, frames, and the
// inspected properties that follow in braces ([cause]:, [errors]:, code:).
var nodejsRule = ruleSpec{name: "nodejs", states: []stateSpec{
	{name: "start_state", trans: []transSpec{
		to(nodeError, "node_error"),
		// "/app/index.js:5", "node:internal/...:45", "file:///app/x.mjs:3", "[eval]:1"
		to(`^(?:/|node:|file:|\[)\S*:\d+$`, "node_source"),
	}},
	// After "file:line": the source line is tentative until the ^ marker.
	{name: "node_source", trans: []transSpec{
		to(`.`, "node_code"),
	}},
	{name: "node_code", tentative: true, trans: []transSpec{
		to(`^\s*\^+\s*$`, "node_marker"),
	}},
	{name: "node_marker", trans: []transSpec{
		to(`^$`, "node_blank"),
		to(`^\S`, "node_thrown"),
	}},
	{name: "node_blank", trans: []transSpec{
		to(nodeError, "node_error"),
	}},
	// A thrown value that is not an Error prints as it is, then a hint.
	{name: "node_thrown", trans: []transSpec{
		to(`^\(Use .*\)$`, "node_thrown"),
		to(`^$`, "node_tail"),
	}},
	{name: "node_error", trans: nodeFrames},
	{name: "node_stack", trans: nodeFrames},
	{name: "node_tail", tentative: true, trans: []transSpec{
		to(`^Node\.js v\d`, endStateName),
	}},
}}

// nodeError is an error's first line: "TypeError: ...", "Error [ERR_X]: ...",
// "Uncaught Error: ..." (error class names are capitalised).
const nodeError = `^(?:Uncaught )?(?:[A-Z][\w$]*)?(?:Error|Exception)(?: \[[^\]]+\])?(?::|$)`

var nodeFrames = []transSpec{
	to(`^\s+at `, "node_stack"),
	to(`^\s+\.\.\. \d+ lines? matching cause stack trace \.\.\.$`, "node_stack"),
	// Inspected properties: "  code: 'E'", "  [cause]: Error: ...", nested
	// errors of an AggregateError, and the closing braces.
	to(`^\s+\S`, "node_stack"),
	to(`^[}\]],?$`, "node_stack"),
	to(`^$`, "node_tail"),
}

// rubyRule joins what Ruby prints for an uncaught exception: "file:line:in
// 'method': message (Class)", the error_highlight excerpt Ruby 3.1+ adds
// to some messages (a blank line, the source line, a ^^^^ marker), "\tfrom"
// frames, "\t ... N levels...", and the causes, which Ruby prints after it in
// the same form. Also a Logger line ending in "(Class)" followed by bare
// backtrace lines.
var rubyRule = ruleSpec{name: "ruby", states: []stateSpec{
	{name: "start_state", trans: []transSpec{
		to("^.+:\\d+:in [`'].*\\)$", "ruby_after_exception"),
		to(`^[EF], \[.*\] +(?:ERROR|FATAL) -- .*\([\w:]+\)$`, "ruby_after_exception"),
	}},
	{name: "ruby_after_exception", trans: append([]transSpec{to(`^$`, "ruby_highlight_blank")}, rubyFrames...)},
	{name: "ruby_highlight_blank", tentative: true, trans: []transSpec{to(`.`, "ruby_highlight_code")}},
	{name: "ruby_highlight_code", tentative: true, trans: []transSpec{to(`^\s*\^+\s*$`, "ruby")}},
	{name: "ruby", trans: rubyFrames},
}}

var rubyFrames = []transSpec{
	to(`^\s+from .+:\d+:in `, "ruby"),
	to(`^\s+\.\.\. \d+ levels\.\.\.$`, "ruby"),
	to("^\\S+:\\d+:in [`'][^']*'$", "ruby"),
	// A cause: the same form as the first line.
	to("^.+:\\d+:in [`'].*\\([\\w:]+\\)$", "ruby_after_exception"),
}

// builtinRules are the rules known by name without configuration.
var builtinRules = []ruleSpec{javaRule, pythonRule, goRule, nodejsRule, rubyRule}

// to is a transition to state next for lines matching pattern.
func to(pattern, next string) transSpec { return transSpec{pattern: pattern, next: next} }
