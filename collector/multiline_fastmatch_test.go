package collector

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// fastMatchCorpus is every line of the multiline testdata (real traces),
// the benchmark's traces, and lines generated from the bytes the patterns
// care about, with a fixed seed.
func fastMatchCorpus(t testing.TB) [][]byte {
	var lines [][]byte
	files, _ := filepath.Glob(filepath.Join("testdata", "multiline", "*"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, bytes.Split(data, []byte("\n"))...)
	}
	for _, tr := range benchTraces {
		for _, l := range tr {
			lines = append(lines, []byte(l))
		}
	}
	pieces := []string{"goroutine ", "... ", "more", "common frames omitted", "main", ".", "(", ")", "(*", "[", "]", "/", "-", "_",
		" ", "\t", "7", "42", ":", "]:", "*", "x", "é", "\n", "\xff", "0x", "...",
		"Exception", "Error", "Throwable", "Exceptio", "E", "T", "rror", "n", "e:", "Thrown", "ErrorException",
		"KeyError", "builtins.", "..", "\f", "\r", "\v", "'x'",
		"http: panic serving ", "2026/11/27 ", "09:01:02", ".123", "2026-11-27", "/"}
	rng := rand.New(rand.NewPCG(9, 9))
	for range 200000 {
		var b []byte
		for range rng.IntN(9) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		lines = append(lines, b)
	}
	// Near misses and matches: the patterns' own shapes, varied.
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	for range 50000 {
		var b []byte
		b = append(b, pick("goroutine ", "goroutine", "... ", "\t... ", " \t... ", "", "main.", "net/http.(*conn)", "(*T).")...)
		b = append(b, pick("", "7", "123", "x", "Func", "F[int]")...)
		b = append(b, pick(" ", "", "x", ".", "(", ")")...)
		for range rng.IntN(3) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		b = append(b, pick("]:", ":", "more", "common frames omitted", ")", "()", "", " more")...)
		lines = append(lines, b)
	}
	// Java's exception line: a literal, or a near miss, in words, then
	// ':' or not.
	for range 50000 {
		var b []byte
		for range rng.IntN(3) {
			b = append(b, pick("java.lang.", "ERROR ", "Caused by: ", "x", " ", "Thread main ", "E", "T")...)
		}
		b = append(b, pick("Exception", "Error", "Throwable", "Exceptio", "Erro", "Throwabl", "IOException", "E", "T")...)
		b = append(b, pick("", ":", ": msg", " :", "s", "E", "Error:", "Throwable")...)
		lines = append(lines, b)
	}
	// net/http's panic line, after a date and time or not, and near misses.
	for range 20000 {
		var b []byte
		b = append(b, pick("", "2026/11/27 09:01:02", "2026/11/27 09:01:02.123456", "2026/11/27 09:01", "2026-11-27 09:01:02",
			"2026/11/27 09:01:02.", "20x6/11/27 09:01:02", "2026/11/27T09:01:02", "1")...)
		b = append(b, pick(" ", "", "  ", ".5 ")...)
		b = append(b, pick("http: panic serving 10.0.0.1:4242: boom", "http: panic serving ", "http: panic", "HTTP: panic serving x", "x")...)
		lines = append(lines, b)
	}
	// Lines longer than the Java rule's window, a literal near its edge.
	for _, at := range []int{4080, 4086, 4087, 4090, 4095, 4096, 4097, 4100} {
		for _, lit := range []string{"Exception:", "Error", "Throwable: x", "Exceptio:"} {
			lines = append(lines, append(bytes.Repeat([]byte("x"), at), lit...))
		}
	}
	return lines
}

// TestFastMatchersAgreeWithRegexp: each hand-written matcher says what Go's
// regexp says of its pattern, on every line of the corpus.
func TestFastMatchersAgreeWithRegexp(t *testing.T) {
	lines := fastMatchCorpus(t)
	for pat, fn := range fastMatchers {
		re := regexp.MustCompile(pat)
		matched := 0
		for _, l := range lines {
			want := re.Match(l)
			if fn(l) != want {
				t.Errorf("%s on %q: hand-written %v, regexp %v", pat, l, !want, want)
			}
			if want {
				matched++
			}
		}
		if matched < 10 {
			t.Errorf("%s: only %d lines of the corpus match: the corpus does not exercise it", pat, matched)
		}
	}
}

// javaWindow is the window of the Java rule's start pattern.
var javaWindow = javaRule.states[0].trans[0].window

// fastScanWindows are the windows the scanners are checked with: none, a
// few small ones (against the corpus's short lines) and the Java rule's.
var fastScanWindows = []int{0, 1, 2, 5, 9, 12, javaWindow}

// TestFastScannersAgree: each hand-written scanner says what Go's regexp
// says of its pattern (no window), and what the generic path (the leads'
// search and the anchored pattern) says with each window, on every line of
// the corpus.
func TestFastScannersAgree(t *testing.T) {
	lines := fastMatchCorpus(t)
	for pat, fn := range fastScanners {
		re := regexp.MustCompile(pat)
		generic, err := compileMatcher(pat, false)
		if err != nil {
			t.Fatal(err)
		}
		if generic.scanFast == nil || generic.scan == nil {
			t.Fatalf("%s: not compiled as a scan with a hand-written scanner", pat)
		}
		generic.scanFast = nil
		matched := 0
		for _, l := range lines {
			want := re.Match(l)
			if got := fn(l, 0); got != want {
				t.Errorf("%s on %q: hand-written %v, regexp %v", pat, l, got, want)
			}
			if want {
				matched++
			}
			for _, w := range fastScanWindows {
				generic.window = w
				if got, want := fn(l, w), generic.matchRaw(l); got != want {
					t.Errorf("%s, window %d, on %q: hand-written %v, generic %v", pat, w, l, got, want)
				}
			}
		}
		if matched < 10 {
			t.Errorf("%s: only %d lines of the corpus match: the corpus does not exercise it", pat, matched)
		}
	}
}

// FuzzFastScanners looks for a line and window on which a hand-written
// scanner and its pattern disagree (make fuzz).
func FuzzFastScanners(f *testing.F) {
	for _, s := range []string{"java.lang.IllegalStateException: x", "Exception", "ERROR Error", "Throwable:", "ErrorException:",
		"E T Exceptio:n", "x Exception in thread \"main\" java.lang.Error: boom", "Throwabl Error"} {
		f.Add([]byte(s), 0)
		f.Add([]byte(s), 3)
	}
	generic := map[string]lineMatcher{}
	res := map[string]*regexp.Regexp{}
	for pat := range fastScanners {
		m, err := compileMatcher(pat, false)
		if err != nil {
			f.Fatal(err)
		}
		m.scanFast = nil
		generic[pat], res[pat] = m, regexp.MustCompile(pat)
	}
	f.Fuzz(func(t *testing.T, line []byte, window int) {
		window = max(window, 0)
		for pat, fn := range fastScanners {
			if got, want := fn(line, 0), res[pat].Match(line); got != want {
				t.Errorf("%s on %q: hand-written %v, regexp %v", pat, line, got, want)
			}
			m := generic[pat]
			m.window = window
			if got, want := fn(line, window), m.matchRaw(line); got != want {
				t.Errorf("%s, window %d, on %q: hand-written %v, generic %v", pat, window, line, got, want)
			}
		}
	})
}

// FuzzFastMatchers looks for a line on which a hand-written matcher and its
// pattern disagree (make fuzz).
func FuzzFastMatchers(f *testing.F) {
	for _, s := range []string{"goroutine 1 [running]:", "main.main()", "net/http.(*conn).serve(0xc000)",
		"pkg.F[...](...)", "\t... 3 more", "... 12 common frames omitted", "a/b[c]/d()"} {
		f.Add([]byte(s))
	}
	for _, s := range []string{"2026/11/27 09:01:02.5 http: panic serving x", "http: panic serving ", "2026/11/27 09:01:02 http: panic",
		"KeyError: 'x'", "a.b.C", "a..b:", ".a:", "a.:", "x(y):", "é.ü:", "a\vb:", "\xffx:"} {
		f.Add([]byte(s))
	}
	res := map[string]*regexp.Regexp{}
	for pat := range fastMatchers {
		res[pat] = regexp.MustCompile(pat)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		for pat, fn := range fastMatchers {
			if got, want := fn(line), res[pat].Match(line); got != want {
				t.Errorf("%s on %q: hand-written %v, regexp %v", pat, line, got, want)
			}
		}
	})
}
