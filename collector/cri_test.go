package collector

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestDecodeCRI(t *testing.T) {
	x8 := "abcdefgh"
	runDecodeCases(t, FormatCRI, []decodeCase{
		{name: "containerd full", lines: []string{ts0 + " stdout F hello world"},
			want: []out{{t0, Stdout, "hello world"}}},
		{name: "cri-o offset and trimmed fraction", lines: []string{ts2 + " stderr F x"},
			want: []out{{t2, Stderr, "x"}}},
		{name: "fallback timestamp parse", lines: []string{"2026-11-26T15:55:12,123456789Z stdout F comma"},
			want: []out{{t0, Stdout, "comma"}}},
		{name: "empty message", lines: []string{ts0 + " stdout F ", ts0 + " stderr F"},
			want: []out{{t0, Stdout, ""}, {t0, Stderr, ""}}},
		{name: "message keeps its spaces", lines: []string{ts0 + " stdout F   indented  ", ts0 + " stdout F a b  c"},
			want: []out{{t0, Stdout, "  indented  "}, {t0, Stdout, "a b  c"}}},
		{name: "tags beyond the first", lines: []string{ts0 + " stdout P:x one ", ts0 + " stdout F:y two", ts0 + " stdout PX three"},
			want: []out{{t0, Stdout, "one two"}, {t0, Stdout, "three"}}, joins: 1},
		{name: "crlf", lines: []string{ts0 + " stdout F hello\r", ts0 + " stdout F two\r\r", ts0 + " stdout F \r"},
			want: []out{{t0, Stdout, "hello"}, {t0, Stdout, "two\r"}, {t0, Stdout, ""}}},
		{name: "invalid utf-8 and NUL kept", lines: []string{ts0 + " stdout F a\xff\xfe\x00b\x00", ts0 + " stdout F \xc3"},
			want: []out{{t0, Stdout, "a\xff\xfe\x00b\x00"}, {t0, Stdout, "\xc3"}}},
		{name: "join", lines: []string{ts0 + " stdout P abc", ts1 + " stdout P def", ts2 + " stdout F ghi"},
			want: []out{{t0, Stdout, "abcdefghi"}}, joins: 1},
		{name: "join ending in an empty piece", lines: []string{ts0 + " stdout P abc", ts1 + " stdout F "},
			want: []out{{t0, Stdout, "abc"}}, joins: 1},
		{name: "join of empty pieces", lines: []string{ts0 + " stdout P ", ts1 + " stdout F"},
			want: []out{{t0, Stdout, ""}}, joins: 1},
		{name: "joined crlf split across pieces", lines: []string{ts0 + " stdout P abc\r", ts1 + " stdout F ", ts0 + " stdout P a\r", ts1 + " stdout F b\r"},
			want: []out{{t0, Stdout, "abc"}, {t0, Stdout, "a\rb"}}, joins: 2},
		{name: "interleaved streams", lines: []string{
			ts0 + " stdout P a", ts1 + " stderr P x", ts0 + " stdout P b", ts1 + " stderr F y", ts2 + " stdout F c"},
			want: []out{{t1, Stderr, "xy"}, {t0, Stdout, "abc"}}, joins: 2},
		{name: "full line of the other stream during a join", lines: []string{
			ts0 + " stdout P a", ts1 + " stderr F err", ts2 + " stdout F b"},
			want: []out{{t1, Stderr, "err"}, {t0, Stdout, "ab"}}, joins: 1},
		{name: "malformed lines", lines: []string{
			ts0 + " stdout F ok",
			"garbage",
			tsBad + " stdout F bad hour",
			ts1 + " stdx F bad stream",
			ts1 + " stdout",
			ts1 + " stdout  empty tag",
			ts1,
			"",
			"\x00\x00\x00",
			"2026-11-26T15:55:12.123456789Z\tstdout F tab",
			ts1 + " stderr F ok2",
			"after " + ts0,
		}, want: []out{
			{t0, Stdout, "ok"},
			{t0, Stdout, "garbage"},
			{t0, Stdout, tsBad + " stdout F bad hour"},
			{t0, Stdout, ts1 + " stdx F bad stream"},
			{t0, Stdout, ts1 + " stdout"},
			{t0, Stdout, ts1 + " stdout  empty tag"},
			{t0, Stdout, ts1},
			{t0, Stdout, ""},
			{t0, Stdout, "\x00\x00\x00"},
			{t0, Stdout, "2026-11-26T15:55:12.123456789Z\tstdout F tab"},
			{t1, Stderr, "ok2"},
			{t1, Stdout, "after " + ts0}, // the time of the last good line
		}, errs: 10},
		{name: "malformed crlf line kept whole", lines: []string{ts0 + " stdout F ok", "bad\r"},
			want: []out{{t0, Stdout, "ok"}, {t0, Stdout, "bad\r"}}, errs: 1},
		{name: "malformed line inside a join", lines: []string{ts0 + " stdout P ab", "oops", ts1 + " stdout F cd"},
			want: []out{{t0, Stdout, "oops"}, {t0, Stdout, "abcd"}}, joins: 1, errs: 1},
		{name: "unfinished join flushed", lines: []string{ts0 + " stdout P ab", ts0 + " stdout P cd"},
			flushed: []out{{t0, Stdout, "abcd"}}, joins: 1},

		// maxRecord 8.
		{name: "cap exactly", max: 8, lines: []string{ts0 + " stdout P abcd", ts1 + " stdout F efgh"},
			want: []out{{t0, Stdout, x8}}, joins: 1},
		{name: "cap exactly in one piece then empty", max: 8, lines: []string{ts0 + " stdout P " + x8, ts1 + " stdout F "},
			want: []out{{t0, Stdout, x8}}, joins: 1},
		{name: "cap exactly before a stripped CR", max: 8, lines: []string{ts0 + " stdout P " + x8, ts1 + " stdout F \r"},
			want: []out{{t0, Stdout, x8}}, joins: 1},
		{name: "cap exactly, single line", max: 8, lines: []string{ts0 + " stdout F " + x8},
			want: []out{{t0, Stdout, x8}}},
		{name: "cap exactly, single line and CR", max: 8, lines: []string{ts0 + " stdout F " + x8 + "\r"},
			want: []out{{t0, Stdout, x8}}},
		{name: "one byte beyond", max: 8, lines: []string{ts0 + " stdout P abcd", ts1 + " stdout F efghi"},
			want: []out{{t0, Stdout, "abcd"}, {t1, Stdout, "efghi"}}, splits: 1},
		{name: "one byte beyond in the last piece", max: 8, lines: []string{ts0 + " stdout P " + x8, ts1 + " stdout F i"},
			want: []out{{t0, Stdout, x8}, {t1, Stdout, "i"}}, splits: 1},
		{name: "one byte beyond, single line", max: 8, lines: []string{ts0 + " stdout F " + x8 + "i"},
			want: []out{{t0, Stdout, x8}, {t0, Stdout, "i"}}, splits: 1},
		{name: "cut at piece boundaries", max: 8, lines: []string{
			ts0 + " stdout P abc", ts0 + " stdout P def", ts1 + " stdout P ghi", ts1 + " stdout P jk", ts2 + " stdout F lmno"},
			want: []out{{t0, Stdout, "abcdef"}, {t1, Stdout, "ghijk"}, {t2, Stdout, "lmno"}}, joins: 2, splits: 2},
		{name: "pieces fill the cap exactly", max: 8, lines: []string{
			ts0 + " stdout P abc", ts0 + " stdout P def", ts1 + " stdout F gh"},
			want: []out{{t0, Stdout, x8}}, joins: 1},
		{name: "far beyond", max: 8, lines: []string{
			ts0 + " stdout P " + strings.Repeat("a", 20), ts1 + " stdout P " + strings.Repeat("b", 4), ts2 + " stdout F " + strings.Repeat("c", 9)},
			want: []out{
				{t0, Stdout, "aaaaaaaa"}, {t0, Stdout, "aaaaaaaa"}, // the first piece alone is cut in chunks
				{t0, Stdout, "aaaabbbb"}, // its rest joins the next piece
				{t2, Stdout, "cccccccc"}, {t2, Stdout, "c"},
			}, joins: 1, splits: 4},
		{name: "cap per stream", max: 8, lines: []string{
			ts0 + " stdout P abcd", ts1 + " stderr P 1234", ts0 + " stdout P efgh", ts1 + " stderr P 5678", ts2 + " stderr F 9", ts2 + " stdout F "},
			want: []out{{t1, Stderr, "12345678"}, {t2, Stderr, "9"}, {t0, Stdout, x8}}, joins: 2, splits: 1},
		{name: "flush after a cut", max: 8, lines: []string{ts0 + " stdout P " + x8, ts1 + " stdout P xyz"},
			want: []out{{t0, Stdout, x8}}, flushed: []out{{t1, Stdout, "xyz"}}, splits: 1},
		{name: "malformed line longer than the cap", max: 8, lines: []string{ts0 + " stdout F ok", "0123456789"},
			want: []out{{t0, Stdout, "ok"}, {t0, Stdout, "01234567"}, {t0, Stdout, "89"}}, errs: 1, splits: 1},
	})
}

// fuzzMax turns a fuzzer's number into a maxRecord: mostly tiny, to cut often,
// sometimes the default.
func fuzzMax(n uint16) int {
	if n%5 == 0 {
		return defaultMaxRecord
	}
	return int(n%64) + 1
}

// refCRI is an independent, simple reading of a CRI line (kubelet's way, with
// time.Parse), to check the decoder against.
func refCRI(line []byte) (s Stream, partial bool, msg []byte, ok bool) {
	f := bytes.SplitN(line, []byte(" "), 4)
	if len(f) < 3 || len(f[2]) == 0 {
		return 0, false, nil, false
	}
	if _, err := time.Parse(time.RFC3339Nano, string(f[0])); err != nil {
		return 0, false, nil, false
	}
	switch string(f[1]) {
	case "stdout":
		s = Stdout
	case "stderr":
		s = Stderr
	default:
		return 0, false, nil, false
	}
	if len(f) == 4 {
		msg = f[3]
	}
	return s, string(bytes.SplitN(f[2], []byte(":"), 2)[0]) == "P", msg, true
}

// checkNothingLost decodes lines and checks, against a reference model of the
// format, that every byte of input comes out: a malformed line comes out whole,
// right away, on stdout; the messages of good lines come out per stream, in
// order, joined (a CR stripped where a record ends). parse says how the
// reference reads a line: its stream, message piece and whether it ends a
// record.
func checkNothingLost(t *testing.T, lines [][]byte, max int,
	parse func(line []byte) (s Stream, piece []byte, final, ok bool)) {
	f, _ := newFeeder(t, max)
	var wantStream [2][]byte // reference: what each stream must carry
	var open [2][]byte       // reference: the record being joined
	var pending [2]bool      // reference: a record is being joined
	var gotStream [2][]byte
	for _, line := range lines {
		start := f.off
		f.d.decode(line, start, f.emit)
		f.off += int64(len(line)) + 1
		recs := f.recs
		f.recs = nil

		s, piece, final, ok := parse(line)
		if !ok {
			var whole []byte
			for _, r := range recs {
				if r.Stream != Stdout {
					t.Fatalf("malformed line %q came out on %v", line, r.Stream)
				}
				whole = append(whole, r.Log...)
			}
			if !bytes.Equal(whole, line) {
				t.Fatalf("malformed line %q came out as %q", line, whole)
			}
			continue
		}
		open[s] = append(open[s], piece...)
		pending[s] = !final
		if final {
			wantStream[s] = append(wantStream[s], trimCR(open[s])...)
			open[s] = nil
		}
		for _, r := range recs {
			gotStream[r.Stream] = append(gotStream[r.Stream], r.Log...)
		}
		// pendingStart never points past the line just read.
		if ps, ok := f.d.pendingStart(); ok && (ps < 0 || ps > start) {
			t.Fatalf("pendingStart %d beyond the last line's start %d", ps, start)
		}
		if _, ok := f.d.pendingStart(); ok != (pending[0] || pending[1]) {
			t.Fatalf("pendingStart ok=%v, but reference has pending %q, %q", ok, open[0], open[1])
		}
	}
	f.d.flush(f.emit)
	for _, r := range f.recs {
		gotStream[r.Stream] = append(gotStream[r.Stream], r.Log...)
	}
	for s := range open {
		wantStream[s] = append(wantStream[s], open[s]...)
	}
	if _, ok := f.d.pendingStart(); ok {
		t.Fatal("pending after flush")
	}
	for s := range gotStream {
		if !bytes.Equal(gotStream[s], wantStream[s]) {
			t.Fatalf("%v carried %q, want %q", Stream(s), gotStream[s], wantStream[s])
		}
	}
}

// fileIsDocker is the fuzz tests' own reading of a file's format: the first
// byte that is not JSON whitespace, '{' for Docker, anything else (a NUL
// included) for CRI. decided=false: the file is blank.
func fileIsDocker(lines [][]byte) (docker, decided bool) {
	for _, l := range lines {
		for _, c := range l {
			if c != ' ' && c != '\t' && c != '\r' {
				return c == '{', true
			}
		}
	}
	return false, false
}

func FuzzDecodeCRI(f *testing.F) {
	f.Add([]byte(ts0+" stdout F hello world\n"+ts2+" stderr F oops\r\n"), uint16(5))
	f.Add([]byte(ts0+" stdout P "+strings.Repeat("x", 100)+"\n"+ts0+" stderr P e\n"+ts1+" stdout F tail\n"+ts1+" stderr F \n"), uint16(17))
	f.Add([]byte(ts0+" stdout F {\"level\":\"info\",\"msg\":\"served\",\"status\":200}\ngarbage\n\n"+tsBad+" stdout F x"), uint16(40))
	f.Add([]byte("2026-11-26T15:55:12.1+05:30 stdout P:x a\xff\x00\n2026-11-26T15:55:12Z stdout F"), uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, maxN uint16) {
		lines := bytes.Split(data, []byte("\n"))
		if docker, _ := fileIsDocker(lines); docker {
			return // a Docker file: FuzzDecodeDocker's business
		}
		// Round trip: a full line of a stream with nothing pending comes
		// back as its message, CR stripped.
		for _, line := range lines {
			s, partial, msg, ok := refCRI(line)
			if !ok || partial {
				continue
			}
			d := newDecoder(defaultMaxRecord, nil)
			var recs []Record
			d.decode(line, 0, func(r Record) { recs = append(recs, r) })
			if len(recs) != 1 || recs[0].Stream != s || !bytes.Equal(recs[0].Log, trimCR(msg)) {
				t.Fatalf("%q: got %v, want %q on %v", line, outs(recs), trimCR(msg), s)
			}
			ts, _ := time.Parse(time.RFC3339Nano, string(bytes.SplitN(line, []byte(" "), 2)[0]))
			if recs[0].Time != ts.UnixNano() {
				t.Fatalf("%q: time %d, want %d", line, recs[0].Time, ts.UnixNano())
			}
		}
		checkNothingLost(t, lines, fuzzMax(maxN), func(line []byte) (Stream, []byte, bool, bool) {
			s, partial, msg, ok := refCRI(line)
			return s, msg, !partial, ok
		})
	})
}

// benchCorpus is a realistic mix of container output, the way genlogs.py
// writes it: short text, JSON application logs, stack traces, and now and then
// a 40 KB line the runtime split into 16 KiB pieces.
type benchMsg struct {
	stream Stream
	msg    string
}

func benchMessages(kind string, n int) []benchMsg {
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("request served user order payment cache miss hit retry upstream timeout " +
		"connection pool worker queue shard replica leader follower commit rollback token session")
	text := func(k int) string {
		w := make([]string, k)
		for i := range w {
			w[i] = words[rng.IntN(len(words))]
		}
		return strings.Join(w, " ")
	}
	var msgs []benchMsg
	for i := 0; len(msgs) < n; i++ {
		s := Stdout
		if rng.IntN(10) == 0 {
			s = Stderr
		}
		k := kind
		if kind == "mixed" {
			switch r := rng.IntN(100); {
			case i%200 == 199:
				k = "long"
			case r < 45:
				k = "text"
			case r < 90:
				k = "json"
			default:
				k = "stack"
			}
		}
		switch k {
		case "text":
			msgs = append(msgs, benchMsg{s, text(6+rng.IntN(25)) + fmt.Sprintf(" seq=%d", i)})
		case "json":
			msgs = append(msgs, benchMsg{s, fmt.Sprintf(`{"level":"info","msg":%q,"latency_ms":%d,"status":200,"trace_id":"%016x%016x","seq":%d}`,
				text(3+rng.IntN(10)), rng.IntN(900), rng.Uint64(), rng.Uint64(), i)})
		case "stack":
			msgs = append(msgs, benchMsg{s, fmt.Sprintf("ERROR unhandled exception seq=%d", i)},
				benchMsg{s, "Traceback (most recent call last):"},
				benchMsg{s, `  File "/app/server.py", line 88, in handle`},
				benchMsg{s, "    result = self.dispatch(request)"},
				benchMsg{s, "KeyError: '/api/v1/orders'"})
		case "long":
			msgs = append(msgs, benchMsg{s, strings.Repeat(strings.Repeat("x", 64)+" ", 40000/65) + fmt.Sprintf("long seq=%d", i)})
		}
	}
	return msgs[:n]
}

// criLines writes messages as containerd does, splitting at 16 KiB.
func criLines(msgs []benchMsg) [][]byte {
	var lines [][]byte
	base := time.Date(2026, 11, 26, 15, 55, 12, 0, time.UTC)
	for i, m := range msgs {
		ts := base.Add(time.Duration(i) * 1013 * time.Microsecond).Format(time.RFC3339Nano)
		msg := m.msg
		for len(msg) > 16384 {
			lines = append(lines, []byte(ts+" "+m.stream.String()+" P "+msg[:16384]))
			msg = msg[16384:]
		}
		lines = append(lines, []byte(ts+" "+m.stream.String()+" F "+msg))
	}
	return lines
}

// benchDecode decodes the lines in a loop, as the tailer would, and reports
// records per second of CPU (one goroutine) alongside ns/op and allocs.
func benchDecode(b *testing.B, lines [][]byte) {
	var size int64
	for _, l := range lines {
		size += int64(len(l)) + 1
	}
	d := newDecoder(0, newMetrics(nil))
	var records int64
	var sink int
	emit := func(r Record) { records++; sink += len(r.Log) }
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var off int64
		for _, l := range lines {
			d.decode(l, off, emit)
			off += int64(len(l)) + 1
		}
	}
	d.flush(emit)
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(records), "ns/record")
	if sink == 0 {
		b.Fatal("nothing decoded")
	}
}

func BenchmarkDecodeCRI(b *testing.B) {
	for _, kind := range []string{"text", "json", "long", "mixed"} {
		n := 10000
		if kind == "long" {
			n = 100
		}
		lines := criLines(benchMessages(kind, n))
		b.Run(kind, func(b *testing.B) { benchDecode(b, lines) })
	}
}
