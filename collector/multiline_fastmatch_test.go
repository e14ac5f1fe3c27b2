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
		" ", "\t", "7", "42", ":", "]:", "*", "x", "é", "\n", "\xff", "0x", "..."}
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

// FuzzFastMatchers looks for a line on which a hand-written matcher and its
// pattern disagree (make fuzz).
func FuzzFastMatchers(f *testing.F) {
	for _, s := range []string{"goroutine 1 [running]:", "main.main()", "net/http.(*conn).serve(0xc000)",
		"pkg.F[...](...)", "\t... 3 more", "... 12 common frames omitted", "a/b[c]/d()"} {
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
