package collector

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// out is a Record with a comparable message.
type out struct {
	Time   int64
	Stream Stream
	Log    string
}

func (o out) String() string { return fmt.Sprintf("{%d %s %q}", o.Time, o.Stream, o.Log) }

// feeder plays the tailer: it hands a decoder lines at increasing offsets,
// each in a buffer of its own, and collects what comes out.
type feeder struct {
	t    testing.TB
	d    *decoder
	off  int64
	recs []Record
}

func newFeeder(t testing.TB, max int) (*feeder, *metrics) {
	m := newMetrics(nil)
	return &feeder{t: t, d: newDecoder(max, m)}, m
}

func (f *feeder) emit(r Record) {
	if len(r.Log) > f.d.maxRecord {
		f.t.Errorf("record of %d bytes > maxRecord %d", len(r.Log), f.d.maxRecord)
	}
	if cap(r.Log) != len(r.Log) {
		f.t.Errorf("record capacity %d > length %d: an append would write past it", cap(r.Log), len(r.Log))
	}
	f.recs = append(f.recs, r)
}

// line decodes s and returns the offset it was given.
func (f *feeder) line(s string) int64 {
	start := f.off
	f.d.decode([]byte(s), start, f.emit)
	f.off += int64(len(s)) + 1
	return start
}

func (f *feeder) take() []out {
	o := outs(f.recs)
	f.recs = nil
	return o
}

func outs(recs []Record) []out {
	o := make([]out, 0, len(recs))
	for _, r := range recs {
		o = append(o, out{r.Time, r.Stream, string(r.Log)})
	}
	return o
}

// Timestamps used throughout, as containerd and CRI-O write them.
const (
	ts0   = "2026-11-26T15:55:12.123456789Z"
	ts1   = "2026-11-26T15:55:13.5Z"
	ts2   = "2026-11-26T10:55:14.000001-05:00" // CRI-O: offset, trimmed fraction
	tsBad = "2026-11-26T25:55:12.123456789Z"
)

var (
	t0 = time.Date(2026, 11, 26, 15, 55, 12, 123456789, time.UTC).UnixNano()
	t1 = time.Date(2026, 11, 26, 15, 55, 13, 500000000, time.UTC).UnixNano()
	t2 = time.Date(2026, 11, 26, 15, 55, 14, 1000, time.UTC).UnixNano()
)

// decodeCase is a file's lines and what must come of them.
type decodeCase struct {
	name    string
	max     int // maxRecord; 0: default
	lines   []string
	want    []out // emitted while decoding
	flushed []out // emitted by flush at the end
	joins   float64
	splits  float64
	errs    float64 // parse errors, under the file's format
}

func runDecodeCases(t *testing.T, format Format, cases []decodeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, m := newFeeder(t, tc.max)
			for _, l := range tc.lines {
				f.line(l)
			}
			if got := f.take(); !slices.Equal(got, tc.want) {
				t.Errorf("records:\n got %v\nwant %v", got, tc.want)
			}
			f.d.flush(f.emit)
			if got := f.take(); !slices.Equal(got, tc.flushed) {
				t.Errorf("flushed:\n got %v\nwant %v", got, tc.flushed)
			}
			if _, ok := f.d.pendingStart(); ok {
				t.Errorf("something pending after flush")
			}
			if got := f.d.format(); got != format {
				t.Errorf("format %v, want %v", got, format)
			}
			if got := testutil.ToFloat64(m.partialJoins); got != tc.joins {
				t.Errorf("partialJoins = %v, want %v", got, tc.joins)
			}
			if got := testutil.ToFloat64(m.recordsSplit); got != tc.splits {
				t.Errorf("recordsSplit = %v, want %v", got, tc.splits)
			}
			if got := testutil.ToFloat64(m.parseErrors.WithLabelValues(format.String())); got != tc.errs {
				t.Errorf("parseErrors{format=%q} = %v, want %v", format, got, tc.errs)
			}
		})
	}
}

func TestDetectFormat(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Format
	}{
		{`{"log":"x\n","stream":"stdout","time":"` + ts0 + `"}`, FormatDocker},
		{`{`, FormatDocker},
		{ts0 + " stdout F x", FormatCRI},
		{"garbage", FormatCRI},
		{" {", FormatDocker}, // JSON whitespace before the object
		{"\t\r {\"log\":", FormatDocker},
		{" 2026", FormatCRI},
		{"", FormatUnknown},
		{" \t\r", FormatUnknown}, // blank: the next line decides
	} {
		if got := detectFormat([]byte(tc.line)); got != tc.want {
			t.Errorf("detectFormat(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
	for f, s := range map[Format]string{FormatUnknown: "unknown", FormatCRI: "cri", FormatDocker: "docker", 7: "unknown"} {
		if f.String() != s {
			t.Errorf("Format(%d).String() = %q, want %q", f, f.String(), s)
		}
	}
}

// TestDecodeEmptyFirstLine: an empty or blank line before the format is
// known is passed on (counted under "unknown"); the next line decides the
// format.
func TestDecodeEmptyFirstLine(t *testing.T) {
	for _, tc := range []struct {
		first, next string
		want        out
		format      Format
	}{
		{"", ts0 + " stderr F x", out{t0, Stderr, "x"}, FormatCRI},
		{" \t\r", ts0 + " stderr F x", out{t0, Stderr, "x"}, FormatCRI},
		{" ", dl(`x\n`, "stderr", ts0), out{t0, Stderr, "x"}, FormatDocker},
	} {
		f, m := newFeeder(t, 0)
		before := time.Now().UnixNano()
		f.line(tc.first)
		after := time.Now().UnixNano()
		f.line(tc.next)
		got := f.take()
		if len(got) != 2 || got[0].Log != tc.first || got[0].Stream != Stdout || got[0].Time < before || got[0].Time > after ||
			got[1] != tc.want {
			t.Errorf("%q then %q: got %v", tc.first, tc.next, got)
		}
		if f.d.format() != tc.format {
			t.Errorf("%q then %q: format %v, want %v", tc.first, tc.next, f.d.format(), tc.format)
		}
		if n := testutil.ToFloat64(m.parseErrors.WithLabelValues("unknown")); n != 1 {
			t.Errorf("%q then %q: parseErrors{unknown} = %v", tc.first, tc.next, n)
		}
	}
}

// TestDecodeMalformedFirstLine: with no good line before it, a malformed
// line gets the time it was read.
func TestDecodeMalformedFirstLine(t *testing.T) {
	for _, line := range []string{"garbage", `{"log":`} {
		f, _ := newFeeder(t, 0)
		before := time.Now().UnixNano()
		f.line(line)
		after := time.Now().UnixNano()
		got := f.take()
		if len(got) != 1 || got[0].Log != line || got[0].Stream != Stdout || got[0].Time < before || got[0].Time > after {
			t.Errorf("%q: got %v, want %q at a time in [%d, %d]", line, got, line, before, after)
		}
	}
}

// TestDecodeZeroCopyAndOwnership: a single-line record points into the line
// (no copy); a joined one owns its bytes, so the tailer may reuse its buffers.
func TestDecodeZeroCopyAndOwnership(t *testing.T) {
	for _, tc := range []struct {
		name     string
		full     string // a single full line
		pieces   []string
		wantFull string
		wantJoin string
	}{
		{"cri", ts0 + " stdout F hello", []string{ts0 + " stdout P abc", ts0 + " stdout F def"}, "hello", "abcdef"},
		{"docker", `{"log":"hello\n","stream":"stdout","time":"` + ts0 + `"}`,
			[]string{`{"log":"abc","stream":"stdout","time":"` + ts0 + `"}`, `{"log":"def\n","stream":"stdout","time":"` + ts0 + `"}`},
			"hello", "abcdef"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDecoder(0, nil)
			var recs []Record
			emit := func(r Record) { recs = append(recs, r) }
			full := []byte(tc.full)
			d.decode(full, 0, emit)
			if len(recs) != 1 || string(recs[0].Log) != tc.wantFull {
				t.Fatalf("full: %v", outs(recs))
			}
			if &recs[0].Log[0] != &full[bytes.Index(full, []byte(tc.wantFull))] {
				t.Errorf("single-line record was copied")
			}
			recs = nil
			var bufs [][]byte
			for _, p := range tc.pieces {
				b := []byte(p)
				bufs = append(bufs, b)
				d.decode(b, 100, emit)
			}
			for _, b := range bufs { // the tailer moves on and reuses its buffers
				for i := range b {
					b[i] = 'Z'
				}
			}
			if len(recs) != 1 || string(recs[0].Log) != tc.wantJoin {
				t.Errorf("joined record changed with the line buffers: %v", outs(recs))
			}
		})
	}
}

// TestDecodePendingStart follows pendingStart through interleaved joins: it is
// always the start of the line holding the oldest byte not yet emitted.
func TestDecodePendingStart(t *testing.T) {
	type step struct {
		line     string
		wantFrom int // index of the step whose line start pendingStart must be; -1: none pending
		wantRecs []out
	}
	for _, tc := range []struct {
		name  string
		max   int
		steps []step
	}{
		{"cri interleaved", 0, []step{
			{ts0 + " stdout F one", -1, []out{{t0, Stdout, "one"}}},
			{ts0 + " stdout P a", 1, nil},
			{ts1 + " stderr P x", 1, nil},
			{ts0 + " stdout P b", 1, nil},
			{ts1 + " stdout F c", 2, []out{{t0, Stdout, "abc"}}}, // now the stderr piece's line
			{"garbage", 2, []out{{t1, Stdout, "garbage"}}},
			{ts2 + " stderr F y", -1, []out{{t1, Stderr, "xy"}}},
		}},
		{"cri cut moves the start", 4, []step{
			{ts0 + " stdout P ab", 0, nil},
			{ts0 + " stdout P cd", 0, nil},
			{ts1 + " stdout P ef", 2, []out{{t0, Stdout, "abcd"}}}, // cut before "ef": the rest starts on this line
			{ts2 + " stdout F g", -1, []out{{t1, Stdout, "efg"}}},
		}},
		{"cri piece longer than the cap", 4, []step{
			{ts0 + " stdout P abcdefghij", 0, []out{{t0, Stdout, "abcd"}, {t0, Stdout, "efgh"}}},
			{ts1 + " stdout F k", -1, []out{{t0, Stdout, "ijk"}}},
		}},
		{"docker", 0, []step{
			{`{"log":"a","stream":"stderr","time":"` + ts0 + `"}`, 0, nil},
			{`{"log":"1\n","stream":"stdout","time":"` + ts0 + `"}`, 0, []out{{t0, Stdout, "1"}}},
			{`{"log":"b","stream":"stdout","time":"` + ts1 + `"}`, 0, nil},
			{`{"log":"c\n","stream":"stderr","time":"` + ts1 + `"}`, 2, []out{{t0, Stderr, "ac"}}},
			{`{"log":"d\n","stream":"stdout","time":"` + ts2 + `"}`, -1, []out{{t1, Stdout, "bd"}}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newFeeder(t, tc.max)
			var starts []int64
			for i, s := range tc.steps {
				starts = append(starts, f.line(s.line))
				got, ok := f.d.pendingStart()
				if s.wantFrom < 0 && ok || s.wantFrom >= 0 && (!ok || got != starts[s.wantFrom]) {
					t.Errorf("step %d %q: pendingStart = %d, %v; want the start of step %d", i, s.line, got, ok, s.wantFrom)
				}
				if recs := f.take(); !slices.Equal(recs, s.wantRecs) {
					t.Errorf("step %d: records %v, want %v", i, recs, s.wantRecs)
				}
			}
		})
	}
}

// TestDecodeRestartAtPendingStart: a tailer that checkpoints at pendingStart
// and restarts there (with a new decoder) gets the long record whole. Records
// of the other stream between the checkpoint and the crash come again
// (at-least-once), none is lost.
func TestDecodeRestartAtPendingStart(t *testing.T) {
	lines := []string{
		ts0 + " stdout F before",
		ts0 + " stdout P aaaa",
		ts0 + " stderr F err",
		ts0 + " stdout P bbbb",
		// crash here
		ts0 + " stdout F cccc",
		ts0 + " stdout F after",
	}
	f, _ := newFeeder(t, 0)
	var offs []int64
	for _, l := range lines[:4] {
		offs = append(offs, f.line(l))
	}
	first := f.take()
	cp, ok := f.d.pendingStart()
	if !ok || cp != offs[1] {
		t.Fatalf("pendingStart = %d, %v; want %d", cp, ok, offs[1])
	}
	// Restart: a new decoder reads from the checkpoint on; records that came
	// out of lines before it were delivered before the crash.
	g, _ := newFeeder(t, 0)
	g.off = cp
	for _, l := range lines[1:] {
		g.line(l)
	}
	second := g.take()
	wantFirst := []out{{t0, Stdout, "before"}, {t0, Stderr, "err"}}
	wantSecond := []out{{t0, Stderr, "err"}, {t0, Stdout, "aaaabbbbcccc"}, {t0, Stdout, "after"}}
	if !slices.Equal(first, wantFirst) || !slices.Equal(second, wantSecond) {
		t.Errorf("before crash %v, after restart %v; want %v, %v", first, second, wantFirst, wantSecond)
	}
}

func TestDecodeFlush(t *testing.T) {
	f, m := newFeeder(t, 0)
	f.line(ts1 + " stderr P x\r") // stderr is the older one
	f.line(ts0 + " stdout P abc")
	f.line(ts0 + " stdout P def\r")
	if got := f.take(); len(got) != 0 {
		t.Fatalf("emitted before flush: %v", got)
	}
	f.d.flush(f.emit)
	// As they are: the record never ended, so its '\r' is content.
	want := []out{{t1, Stderr, "x\r"}, {t0, Stdout, "abcdef\r"}}
	if got := f.take(); !slices.Equal(got, want) {
		t.Errorf("flush: %v, want %v", got, want)
	}
	if _, ok := f.d.pendingStart(); ok {
		t.Error("pending after flush")
	}
	if n := testutil.ToFloat64(m.partialJoins); n != 1 {
		t.Errorf("partialJoins = %v, want 1", n)
	}
	f.d.flush(f.emit)
	if got := f.take(); len(got) != 0 {
		t.Errorf("second flush emitted %v", got)
	}
	// The decoder goes on working.
	f.line(ts0 + " stdout F z")
	if got := f.take(); !slices.Equal(got, []out{{t0, Stdout, "z"}}) {
		t.Errorf("after flush: %v", got)
	}
}

func TestDecodeReset(t *testing.T) {
	f, _ := newFeeder(t, 0)
	f.line(ts0 + " stdout P lost-with-the-truncation")
	f.line(ts0 + " stderr P this-too")
	if f.d.format() != FormatCRI {
		t.Fatalf("format %v", f.d.format())
	}
	f.d.reset()
	if _, ok := f.d.pendingStart(); ok {
		t.Error("pending after reset")
	}
	if f.d.format() != FormatUnknown {
		t.Errorf("format after reset %v", f.d.format())
	}
	// The file now holds Docker lines: the format is detected again.
	f.line(`{"log":"new\n","stream":"stdout","time":"` + ts1 + `"}`)
	if f.d.format() != FormatDocker {
		t.Errorf("format %v, want docker", f.d.format())
	}
	f.d.flush(f.emit)
	if got, want := f.take(), []out{{t1, Stdout, "new"}}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestDecodeCapSingleLines: a single line longer than maxRecord is cut too,
// in both formats, without copying.
func TestDecodeCapSingleLines(t *testing.T) {
	long := strings.Repeat("0123456789", 3) // 30 bytes
	for _, tc := range []struct {
		name string
		line string
	}{
		{"cri", ts0 + " stdout F " + long},
		{"docker", `{"log":"` + long + `\n","stream":"stdout","time":"` + ts0 + `"}`},
		{"docker escaped", `{"log":"` + long + `\t\n","stream":"stdout","time":"` + ts0 + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, m := newFeeder(t, 8)
			f.line(tc.line)
			var got []string
			for _, o := range f.take() {
				got = append(got, o.Log)
			}
			want := []string{"01234567", "89012345", "67890123", "456789"}
			if tc.name == "docker escaped" {
				want[3] += "\t"
			}
			if !slices.Equal(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
			if n := testutil.ToFloat64(m.recordsSplit); n != 3 {
				t.Errorf("recordsSplit = %v, want 3", n)
			}
		})
	}
}
