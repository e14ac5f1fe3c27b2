package collector

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The built-in rules on traces that real programs print here and now: Go
// panics and goroutine dumps from a Go program, Python tracebacks from
// python3; Java's and Node.js's when those runtimes are installed (their
// committed samples in testdata/multiline are checked in any case). Each
// program prints "starting", then crashes; the test appends one more line,
// writes the output as a container runtime would (CRI lines on stderr),
// decodes it with the collector's decoder and joins it: the records must be
// "starting", the whole trace as one, and the line after it.

// criWrap writes text's lines as CRI stderr lines.
func criWrap(text string) []byte {
	var b bytes.Buffer
	ts := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		fmt.Fprintf(&b, "%s stderr F %s\n", ts.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), line)
	}
	return b.Bytes()
}

// decodeJoin decodes a CRI file's bytes and joins the records by rule.
func decodeJoin(t testing.TB, rule *MultilineRule, data []byte) []Record {
	t.Helper()
	var out []Record
	emit := func(r Record) { out = append(out, r) }
	d := newDecoder(0, nil)
	j := NewJoiner(rule, defaultLimits(), nil)
	pos := 0
	for pos < len(data) {
		i := bytes.IndexByte(data[pos:], '\n')
		if i < 0 {
			i = len(data) - pos
		}
		decodeStarts(d, data[pos:pos+i], int64(pos), func(r Record, start int64) { j.Add(r, start, emit) })
		pos += i + 1
	}
	d.flush(func(r Record) { j.Add(r, int64(len(data)), emit) })
	j.Flush(emit)
	return out
}

// checkWholeTrace checks that output (starting line, trace) joined, plus a
// line after it, gives exactly: "starting", the trace whole, the line.
func checkWholeTrace(t *testing.T, rule, output, firstLine string) {
	t.Helper()
	output = strings.TrimSuffix(output, "\n")
	start, trace, ok := strings.Cut(output, "\n")
	if !ok || start != "starting" || !strings.HasPrefix(trace, firstLine) {
		t.Fatalf("unexpected program output:\n%s", output)
	}
	recs := decodeJoin(t, testRule(t, rule), criWrap(output+"\nnext request\n"))
	var got []string
	for _, r := range recs {
		got = append(got, string(r.Log))
	}
	if want := []string{"starting", trace, "next request"}; !slices.Equal(got, want) {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(summary(got), "\n"), strings.Join(summary(want), "\n"))
	}
	if len(recs) == 3 && recs[1].Time != recs[0].Time+int64(time.Millisecond) {
		t.Errorf("the joined record's time is not its first line's")
	}
}

const goCrasher = `package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/debug"
	"syscall"
	"time"
)

type T struct{}

func (T) boom(n int) { panic(fmt.Sprintf("boom %d", n)) }

func rec(n int) int { return rec(n+1) + 1 }

func main() {
	fmt.Fprintln(os.Stderr, "starting")
	switch os.Args[1] {
	case "panic":
		go func() { select {} }()
		T{}.boom(3)
	case "nil":
		var p *struct{ x int }
		fmt.Println(p.x)
	case "repanic":
		defer func() { panic(recover()) }()
		var s []int
		_ = s[5]
	case "overflow":
		debug.SetMaxStack(1 << 16)
		rec(0)
	case "dump":
		go func() { select {} }()
		syscall.Kill(os.Getpid(), syscall.SIGQUIT)
		time.Sleep(10 * time.Second)
	case "http":
		srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("handler boom") }))
		http.Get(srv.URL)
		srv.Close()
	}
}
`

func TestRealGoPanics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a Go program")
	}
	dir := t.TempDir()
	for name, content := range map[string]string{"main.go": goCrasher, "go.mod": "module crasher\n\ngo 1.22\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", "crasher", ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct{ mode, first string }{
		{"panic", "panic: boom 3"},
		{"nil", "panic: runtime error: invalid memory address or nil pointer dereference"},
		{"repanic", "panic: runtime error: index out of range [5] with length 0"},
		{"overflow", "runtime: goroutine stack exceeds 65536-byte limit"},
		{"dump", "SIGQUIT: quit"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, filepath.Join(dir, "crasher"), tc.mode).CombinedOutput()
			if err == nil {
				t.Fatalf("the program did not crash:\n%s", out)
			}
			checkWholeTrace(t, "go", string(out), tc.first)
		})
	}
	t.Run("http", func(t *testing.T) {
		// net/http logs the handler's panic with its goroutine's stack
		// and goes on: "http: panic serving ..." after log's timestamp.
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, filepath.Join(dir, "crasher"), "http").CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		s := string(out)
		start, trace, _ := strings.Cut(strings.TrimSuffix(s, "\n"), "\n")
		if i := strings.Index(trace, "http: panic serving"); i < 0 || i > 40 {
			t.Fatalf("unexpected output:\n%s", s)
		}
		checkWholeTrace(t, "go", start+"\n"+trace, trace[:20])
	})
}

func TestRealPythonTracebacks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs python3")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	prelude := "import sys\nprint('starting', file=sys.stderr, flush=True)\n"
	for _, tc := range []struct {
		name, code, first string
		file              bool // run as a file, so the traceback shows source lines and ^ markers
	}{
		{"two frames, -c", prelude + "def load(k):\n    return {}[k]\ndef handle():\n    load('order')\nhandle()\n", "Traceback (most recent call last):", false},
		{"chained, from a file", prelude + `
def load(k):
    return {}[k]
def handle():
    try:
        load("order")
    except KeyError as e:
        raise ValueError("bad request") from e
def serve():
    try:
        handle()
    except ValueError:
        raise RuntimeError("500")
serve()
`, "Traceback (most recent call last):", true},
		{"exception group", prelude + "def a():\n    raise ExceptionGroup('eg', [ValueError('a'), TypeError('b')])\na()\n", "  + Exception Group Traceback (most recent call last):", true},
		{"syntax error", prelude + "exec('x = (1,')\n", "Traceback (most recent call last):", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cmd *exec.Cmd
			if tc.file {
				path := filepath.Join(t.TempDir(), "app.py")
				if err := os.WriteFile(path, []byte(tc.code), 0o644); err != nil {
					t.Fatal(err)
				}
				cmd = exec.Command("python3", path)
			} else {
				cmd = exec.Command("python3", "-c", tc.code)
			}
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("no exception:\n%s", out)
			}
			if strings.Contains(tc.name, "chained") && (!strings.Contains(string(out), "During handling") || !strings.Contains(string(out), "direct cause")) {
				t.Fatalf("not a chained traceback:\n%s", out)
			}
			checkWholeTrace(t, "python", string(out), tc.first)
		})
	}
}

// TestRealJavaAndNode runs the programs behind the committed Java and Node.js
// samples, when the runtimes are here, and checks their output joins as the
// samples do.
func TestRealJavaAndNode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs java and node")
	}
	abs, err := filepath.Abs(filepath.Join("testdata", "multiline"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rule, tool, sample string
		args               []string
	}{
		{"java", "java", "java.txt", []string{"Traces.java"}},
		{"nodejs", "node", "nodejs.txt", []string{"errors.js"}},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			if _, err := exec.LookPath(tc.tool); err != nil {
				t.Skipf("%s not installed", tc.tool)
			}
			cmd := exec.Command(tc.tool, tc.args...)
			cmd.Dir = abs
			out, _ := cmd.CombinedOutput()
			text := strings.ReplaceAll(string(out), abs, "/app")
			want := summary(joinText(t, testRule(t, tc.rule), defaultLimits(), readTestdata(t, tc.sample)))
			got := summary(decodeJoinText(t, tc.rule, text))
			// Frame counts differ between versions of the runtime; the
			// groups and their first lines must not.
			if len(got) != len(want) {
				t.Fatalf("records:\n%s\nsample's:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			for i := range got {
				_, g, _ := strings.Cut(got[i], " ")
				_, w, _ := strings.Cut(want[i], " ")
				if g != w {
					t.Errorf("record %d starts %q, the sample's %q", i, g, w)
				}
			}
		})
	}
}

func decodeJoinText(t testing.TB, rule, text string) []string {
	var out []string
	for _, r := range decodeJoin(t, testRule(t, rule), criWrap(text)) {
		out = append(out, string(r.Log))
	}
	return out
}
