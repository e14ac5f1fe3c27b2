package collector

import "bytes"

// fastMatchers are hand-written equivalents of a few patterns of the
// built-in rules that the prefilters cannot decide and that every line of
// a trace meets: Go's regexp backtracker takes a few hundred nanoseconds on
// each, a loop over the bytes a few dozen. Each is exactly its pattern
// (TestFastMatchersAgreeWithRegexp checks them against Go's regexp on the
// rules' real traces and on generated lines); a custom rule with the same
// pattern gets it too.
var fastMatchers = map[string]func([]byte) bool{
	`^goroutine \d+ .*\]:$`:                                                    matchGoroutineHeader,
	`^[\w.\-/]*(?:\(\*?[\w.\-\[\]]+\)\.)?[\w.\-\[\]]+\(.*\)$`:                  matchGoCall,
	`^[\t ]*\.\.\. \d+ (?:more|common frames omitted)$`:                        matchJavaMore,
	`^(?:[^\s.():]+\.)*[^\s.():]+(?::|$)`:                                      matchPythonException,
	`^(?:\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? )?http: panic serving `: matchGoHTTPPanic,
}

// fastScanners are hand-written equivalents of unanchored patterns that
// the start state tries on every line, given the line and the window (how
// far into the line a match may start; 0: anywhere), as matchLeads tries
// the pattern. Java's start pattern is the one: the generic path finds the
// same bytes but then runs the anchored pattern where one occurs, through
// a few more calls per line; this compares the literal and the byte after
// it (TestFastScannersAgree checks it against both the regexp and the
// generic path).
var fastScanners = map[string]func(line []byte, window int) bool{
	`(?:Exception|Error|Throwable)(?::|$)`: matchJavaException,
}

// matchJavaException is (?:Exception|Error|Throwable)(?::|$), for matches
// starting within window bytes of the line's start (0: anywhere). It
// searches for 'E', then for 'T': two vectorised passes, cheaper on log
// lines than one for the ':' every match but one at the line's end has
// (JSON lines have several).
func matchJavaException(b []byte, window int) bool {
	w := b // a match starts in w
	if window > 0 && window < len(w) {
		w = w[:window]
	}
	// Most lines have neither byte: two searches and nothing else.
	if i := bytes.IndexByte(w, 'E'); i >= 0 && javaExceptionFrom(b, w, i, 'E') {
		return true
	}
	if i := bytes.IndexByte(w, 'T'); i >= 0 && javaExceptionFrom(b, w, i, 'T') {
		return true
	}
	return false
}

// javaExceptionFrom looks for a match starting with c at w[i] or after,
// w[i] being c.
func javaExceptionFrom(b, w []byte, i int, c byte) bool {
	for {
		if c == 'E' && (javaLiteralAt(b, i, "Exception") || javaLiteralAt(b, i, "Error")) ||
			c == 'T' && javaLiteralAt(b, i, "Throwable") {
			return true
		}
		k := bytes.IndexByte(w[i+1:], c)
		if k < 0 {
			return false
		}
		i += 1 + k
	}
}

// javaLiteralAt reports whether lit is at b[p:], followed by ':' or the
// line's end.
func javaLiteralAt(b []byte, p int, lit string) bool {
	q := p + len(lit)
	return q <= len(b) && string(b[p:q]) == lit && (q == len(b) || b[q] == ':')
}

// wordByte is \w: [0-9A-Za-z_].
func wordByte(c byte) bool {
	return c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// goPathByte is [\w.\-/], goNameByte [\w.\-\[\]].
func goPathByte(c byte) bool { return wordByte(c) || c == '.' || c == '-' || c == '/' }
func goNameByte(c byte) bool { return wordByte(c) || c == '.' || c == '-' || c == '[' || c == ']' }

func digitsAt(b []byte, i int) int {
	j := i
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	return j
}

// matchGoroutineHeader is ^goroutine \d+ .*\]:$ ("." matches anything but
// a newline).
func matchGoroutineHeader(b []byte) bool {
	const lead = "goroutine "
	if !bytes.HasPrefix(b, []byte(lead)) {
		return false
	}
	i := digitsAt(b, len(lead))
	if i == len(lead) || i >= len(b) || b[i] != ' ' {
		return false
	}
	rest := b[i+1:]
	return bytes.HasSuffix(rest, []byte("]:")) && bytes.IndexByte(rest, '\n') < 0
}

// matchGoCall is ^[\w.\-/]*(?:\(\*?[\w.\-\[\]]+\)\.)?[\w.\-\[\]]+\(.*\)$:
// a function in a goroutine dump, "pkg/path.Func(args)" or
// "pkg.(*Type).Method(...)". The name ends at the first '(' (no name byte
// is one), unless that '(' opens the receiver group.
func matchGoCall(b []byte) bool {
	n := len(b)
	if n < 3 || b[n-1] != ')' || bytes.IndexByte(b, '\n') >= 0 {
		return false
	}
	p := bytes.IndexByte(b, '(')
	if p < 0 {
		return false
	}
	// Without the receiver group: b[:p] is [\w.\-/]* then [\w.\-\[\]]+,
	// and the call's parentheses are b[p] and the last byte.
	if p >= 1 && p+1 < n && goNameByte(b[p-1]) {
		ok, sawBracket := true, false
		for _, c := range b[:p] {
			switch {
			case c == '[' || c == ']':
				sawBracket = true
			case c == '/':
				if sawBracket {
					ok = false
				}
			case goPathByte(c):
			default:
				ok = false
			}
			if !ok {
				break
			}
		}
		if ok {
			return true
		}
	}
	// With it: b[:p] is [\w.\-/]*, then (\*?[\w.\-\[\]]+)\. then
	// [\w.\-\[\]]+ then the call's '(' ... ')'.
	for _, c := range b[:p] {
		if !goPathByte(c) {
			return false
		}
	}
	i := p + 1
	if i < n && b[i] == '*' {
		i++
	}
	j := i
	for j < n && goNameByte(b[j]) {
		j++
	}
	if j == i || j+1 >= n || b[j] != ')' || b[j+1] != '.' {
		return false
	}
	i = j + 2
	j = i
	for j < n && goNameByte(b[j]) {
		j++
	}
	// b[j] is the call's '(' and the last byte its ')'.
	return j > i && j < n-1 && b[j] == '('
}

// matchJavaMore is ^[\t ]*\.\.\. \d+ (?:more|common frames omitted)$.
func matchJavaMore(b []byte) bool {
	i := 0
	for i < len(b) && (b[i] == '\t' || b[i] == ' ') {
		i++
	}
	if !bytes.HasPrefix(b[i:], []byte("... ")) {
		return false
	}
	i += 4
	j := digitsAt(b, i)
	if j == i || j >= len(b) || b[j] != ' ' {
		return false
	}
	rest := b[j+1:]
	return string(rest) == "more" || string(rest) == "common frames omitted"
}

// matchPythonException is ^(?:[^\s.():]+\.)*[^\s.():]+(?::|$), Python's
// exception line ("KeyError: 'x'", "mod.sub.Error"): a dotted name, then ':'
// or the line's end. The name is the line's longest prefix of bytes that
// are neither \s ([\t\n\f\r ]) nor '(', ')' or ':' (Go's regexp reads a
// byte of invalid UTF-8 as U+FFFD, which the class matches, as it does
// every rune beyond ASCII), without an empty segment between its dots.
func matchPythonException(b []byte) bool {
	i := 0
	for ; i < len(b); i++ {
		c := b[i]
		if c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == ' ' || c == '(' || c == ')' || c == ':' {
			break
		}
		if c == '.' && (i == 0 || b[i-1] == '.') {
			return false // an empty segment
		}
	}
	if i == 0 || b[i-1] == '.' {
		return false
	}
	return i == len(b) || b[i] == ':'
}

// matchGoHTTPPanic is ^(?:\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? )?http: panic serving ,
// net/http's line for a handler's panic, after the log package's date and
// time. The generic path searches the whole of every line starting with a
// digit (most timestamped lines) for the literal; this stops at the first
// byte out of place.
func matchGoHTTPPanic(b []byte) bool {
	const lead = "http: panic serving "
	if len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
		// 2006/01/02 15:04:05, then .000000 or not, then a space.
		const shape = "dddd/dd/dd dd:dd:dd"
		if len(b) < len(shape) {
			return false
		}
		for i := range len(shape) {
			if c := b[i]; shape[i] == 'd' && (c < '0' || c > '9') || shape[i] != 'd' && c != shape[i] {
				return false
			}
		}
		i := len(shape)
		if i < len(b) && b[i] == '.' {
			j := digitsAt(b, i+1)
			if j == i+1 {
				return false
			}
			i = j
		}
		if i >= len(b) || b[i] != ' ' {
			return false
		}
		b = b[i+1:]
	}
	return bytes.HasPrefix(b, []byte(lead))
}
