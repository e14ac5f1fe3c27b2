package collector

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// dl is a Docker json-file line; log is JSON string content (escapes as written).
func dl(log, stream, ts string) string {
	return `{"log":"` + log + `","stream":"` + stream + `","time":"` + ts + `"}`
}

func TestDecodeDocker(t *testing.T) {
	x8 := "abcdefgh"
	runDecodeCases(t, FormatDocker, []decodeCase{
		{name: "plain", lines: []string{dl(`hello world\n`, "stdout", ts0)},
			want: []out{{t0, Stdout, "hello world"}}},
		{name: "stderr, offset time", lines: []string{dl(`x\n`, "stderr", ts2)},
			want: []out{{t2, Stderr, "x"}}},
		{name: "time without fraction", lines: []string{dl(`x\n`, "stdout", "2026-11-26T15:55:12Z")},
			want: []out{{t0 - 123456789, Stdout, "x"}}},
		{name: "escapes", lines: []string{
			dl(`a\tb \"q\" \\ \/ \b\f \u00e9 \u00E9 \ud83d\ude00 \u003cx\u003e \u0026\n`, "stdout", ts0),
			dl(`{\"level\":\"info\",\"msg\":\"served\"}\n`, "stdout", ts0),
			dl(`path\\n\n`, "stdout", ts0),
		}, want: []out{
			{t0, Stdout, "a\tb \"q\" \\ / \b\f é é 😀 <x> &"},
			{t0, Stdout, `{"level":"info","msg":"served"}`},
			{t0, Stdout, `path\n`},
		}},
		{name: "lone surrogates", lines: []string{dl(`a\ud800b\udc00c\ud83d\u0041\n`, "stdout", ts0)},
			want: []out{{t0, Stdout, "a\uFFFDb\uFFFDc\uFFFDA"}}},
		{name: "newline as \\u000a", lines: []string{dl(`one\u000a`, "stdout", ts0), dl(`two\u000A`, "stdout", ts0)},
			want: []out{{t0, Stdout, "one"}, {t0, Stdout, "two"}}},
		{name: "embedded newlines", lines: []string{dl(`a\nb\n`, "stdout", ts0)},
			want: []out{{t0, Stdout, "a\nb"}}},
		{name: "empty", lines: []string{dl(`\n`, "stdout", ts0), dl(`\r\n`, "stdout", ts0)},
			want: []out{{t0, Stdout, ""}, {t0, Stdout, ""}}},
		{name: "crlf", lines: []string{dl(`hi\r\n`, "stdout", ts0), dl(`two\r\r\n`, "stdout", ts0), dl(`é\r\n`, "stdout", ts0)},
			want: []out{{t0, Stdout, "hi"}, {t0, Stdout, "two\r"}, {t0, Stdout, "é"}}},
		{name: "NUL and invalid utf-8 kept", lines: []string{
			dl(`a\u0000b\n`, "stdout", ts0),
			dl("raw\xff\xfe"+`\n`, "stdout", ts0),
			`{"log":"slow` + "\xff" + `\t\n","stream":"stdout","time":"` + ts0 + `","attrs":{"k":"v"}}`,
		}, want: []out{{t0, Stdout, "a\x00b"}, {t0, Stdout, "raw\xff\xfe"}, {t0, Stdout, "slow\xff\t"}}},
		{name: "other key orders and extra keys", lines: []string{
			`{"stream":"stderr","log":"reordered\n","time":"` + ts0 + `"}`,
			`{"log":"attrs\n","stream":"stdout","attrs":{"tag":"x"},"time":"` + ts1 + `"}`,
			`{"log":"attrs last\n","stream":"stdout","time":"` + ts1 + `","attrs":{"tag":"x"}}`,
			`{ "log" : "spaced\n" , "stream" : "stdout" , "time" : "` + ts2 + `" }`,
			`{"log":"esc in stream\n","stream":"std\u006fut","time":"` + ts2 + `"}`,
			`{"log":"attrs, escapes\n","stream":"stderr","attrs":{"a\"}":"}\\","":""},"time":"` + ts0 + `"}`,
			`{"log":"attrs not strings\n","stream":"stderr","attrs":{"n":1,"o":{"p":[true]}},"time":"` + ts0 + `"}`,
		}, want: []out{
			{t0, Stderr, "reordered"},
			{t1, Stdout, "attrs"},
			{t1, Stdout, "attrs last"},
			{t2, Stdout, "spaced"},
			{t2, Stdout, "esc in stream"},
			{t0, Stderr, "attrs, escapes"},
			{t0, Stderr, "attrs not strings"},
		}},
		{name: "whitespace before the first line's object", lines: []string{
			" \t" + dl(`first\n`, "stdout", ts0), dl(`second\n`, "stderr", ts1), "\r" + dl(`third\n`, "stdout", ts2)},
			want: []out{{t0, Stdout, "first"}, {t1, Stderr, "second"}, {t2, Stdout, "third"}}},
		{name: "join", lines: []string{dl(`abc`, "stdout", ts0), dl(`d\"f`, "stdout", ts1), dl(`ghi\n`, "stdout", ts2)},
			want: []out{{t0, Stdout, `abcd"fghi`}}, joins: 1},
		{name: "join, slow path pieces", lines: []string{
			`{"stream":"stdout","log":"abc","time":"` + ts0 + `"}`, dl(`def\n`, "stdout", ts1)},
			want: []out{{t0, Stdout, "abcdef"}}, joins: 1},
		{name: "join ending in a lone newline", lines: []string{dl(`abc\r`, "stdout", ts0), dl(`\n`, "stdout", ts1)},
			want: []out{{t0, Stdout, "abc"}}, joins: 1},
		{name: "escaped backslash before n is not a newline", lines: []string{dl(`a\\n`, "stdout", ts0), dl(`b\n`, "stdout", ts0)},
			want: []out{{t0, Stdout, `a\nb`}}, joins: 1},
		{name: "surrogate pair split across pieces", lines: []string{dl(`\ud83d`, "stdout", ts0), dl(`\ude00\n`, "stdout", ts0)},
			want: []out{{t0, Stdout, "\uFFFD\uFFFD"}}, joins: 1}, // Docker never splits inside an escape; each piece decodes alone
		{name: "interleaved streams", lines: []string{
			dl(`a`, "stdout", ts0), dl(`x`, "stderr", ts1), dl(`b`, "stdout", ts0), dl(`y\n`, "stderr", ts1), dl(`c\n`, "stdout", ts2)},
			want: []out{{t1, Stderr, "xy"}, {t0, Stdout, "abc"}}, joins: 2},
		{name: "no final newline, flushed", lines: []string{dl(`exit without newline`, "stdout", ts0)},
			flushed: []out{{t0, Stdout, "exit without newline"}}},
		{name: "malformed", lines: []string{
			dl(`ok\n`, "stdout", ts0),
			`{"log":"unterminated`,
			`{garbage}`,
			`{"foo":1}`,
			`{"log":1,"stream":"stdout","time":"` + ts1 + `"}`,
			`{"log":null,"stream":"stdout","time":"` + ts1 + `"}`,
			dl(`bad stream\n`, "stdin", ts1),
			dl(`bad time\n`, "stdout", tsBad),
			dl(`bad escape \x\n`, "stdout", ts1),
			dl(`short \u12\n`, "stdout", ts1),
			`{"log":"x\","stream":"stdout","time":"` + ts1 + `"}`,
			`{"log":"no time\n","stream":"stdout"}`,
			`{"log":"x\n","stream":"stdout","time":"` + ts1 + `"} trailing`,
			"not json at all",
			"",
			dl(`ok2\n`, "stderr", ts1),
		}, want: []out{
			{t0, Stdout, "ok"},
			{t0, Stdout, `{"log":"unterminated`},
			{t0, Stdout, `{garbage}`},
			{t0, Stdout, `{"foo":1}`},
			{t0, Stdout, `{"log":1,"stream":"stdout","time":"` + ts1 + `"}`},
			{t0, Stdout, `{"log":null,"stream":"stdout","time":"` + ts1 + `"}`},
			{t0, Stdout, dl(`bad stream\n`, "stdin", ts1)},
			{t0, Stdout, dl(`bad time\n`, "stdout", tsBad)},
			{t0, Stdout, dl(`bad escape \x\n`, "stdout", ts1)},
			{t0, Stdout, dl(`short \u12\n`, "stdout", ts1)},
			{t0, Stdout, `{"log":"x\","stream":"stdout","time":"` + ts1 + `"}`},
			{t0, Stdout, `{"log":"no time\n","stream":"stdout"}`},
			{t0, Stdout, `{"log":"x\n","stream":"stdout","time":"` + ts1 + `"} trailing`},
			{t0, Stdout, "not json at all"},
			{t0, Stdout, ""},
			{t1, Stderr, "ok2"},
		}, errs: 14},
		{name: "bad escape inside a join leaves the join intact", lines: []string{
			dl(`ab`, "stdout", ts0), dl(`\q`, "stdout", ts1), dl(`cd\n`, "stdout", ts2)},
			want: []out{{t0, Stdout, dl(`\q`, "stdout", ts1)}, {t0, Stdout, "abcd"}}, joins: 1, errs: 1},

		// maxRecord 8.
		{name: "cap exactly", max: 8, lines: []string{dl(`abcd`, "stdout", ts0), dl(`efgh\n`, "stdout", ts1)},
			want: []out{{t0, Stdout, x8}}, joins: 1},
		{name: "cap exactly with escapes", max: 8, lines: []string{dl(`\u00e9\u00e9`, "stdout", ts0), dl(`\t\t\t\t\r\n`, "stdout", ts1)},
			want: []out{{t0, Stdout, "éé\t\t\t\t"}}, joins: 1},
		{name: "one byte beyond", max: 8, lines: []string{dl(`abcd`, "stdout", ts0), dl(`efghi\n`, "stdout", ts1)},
			want: []out{{t0, Stdout, "abcd"}, {t1, Stdout, "efghi"}}, splits: 1},
		{name: "far beyond", max: 8, lines: []string{dl(strings.Repeat("a", 20), "stdout", ts0), dl(strings.Repeat("b", 9)+`\n`, "stdout", ts1)},
			want:   []out{{t0, Stdout, "aaaaaaaa"}, {t0, Stdout, "aaaaaaaa"}, {t0, Stdout, "aaaa"}, {t1, Stdout, "bbbbbbbb"}, {t1, Stdout, "b"}},
			splits: 4},
	})
}

// TestDecodeDockerBadFirstPiece: a first piece with a bad escape is passed on
// as a malformed line and starts no join.
func TestDecodeDockerBadFirstPiece(t *testing.T) {
	f, m := newFeeder(t, 0)
	f.line(dl(`good\n`, "stdout", ts0))
	f.take()
	f.line(dl(`\q`, "stdout", ts1))
	if _, ok := f.d.pendingStart(); ok {
		t.Error("bad line started a join")
	}
	f.line(dl(`cd\n`, "stdout", ts2))
	want := []out{{t0, Stdout, dl(`\q`, "stdout", ts1)}, {t2, Stdout, "cd"}}
	if got := f.take(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if n := testutil.ToFloat64(m.parseErrors.WithLabelValues("docker")); n != 1 {
		t.Errorf("parseErrors = %v", n)
	}
}

// TestScanDockerFastShapes: which lines the allocation-free scanner takes.
func TestScanDockerFastShapes(t *testing.T) {
	for _, tc := range []struct {
		line   string
		shaped bool
		log    string
		stream Stream
	}{
		{dl(`x\n`, "stdout", ts0), true, `x\n`, Stdout},
		{dl(`a\"b\\`, "stderr", ts0), true, `a\"b\\`, Stderr},
		{`{"log":"x\n","stream":"stdout","attrs":{},"time":"` + ts0 + `"}`, true, `x\n`, Stdout},
		{`{"log":"x\n","stream":"stdout","attrs":{"app":"web","env":"prod"},"time":"` + ts0 + `"}`, true, `x\n`, Stdout},
		{`{"log":"x\n","stream":"stdout","attrs":{"n":1},"time":"` + ts0 + `"}`, false, "", 0},
		{`{"log":"x\n","stream":"stdout","attrs":{"a":"b"}}`, false, "", 0},
		{`{"log":"x\n","stream":"stdout","time":"` + ts0 + `","attrs":{}}`, false, "", 0},
		{`{"stream":"stdout","log":"x\n","time":"` + ts0 + `"}`, false, "", 0},
		{`{"log":"x\n","stream":"stdin","time":"` + ts0 + `"}`, false, "", 0},
		{`{"log":"x\n","stream":"stdout","time":"` + ts0 + `"} `, false, "", 0},
		{`{"log":"x\n","stream":"stdout","time":"` + ts0, false, "", 0},
		{`{"log":"x\n","stream":"std`, false, "", 0},
		{`{"log":"x\"}`, false, "", 0},
	} {
		raw, s, ts, shaped := scanDockerFast([]byte(tc.line))
		if shaped != tc.shaped || shaped && (string(raw) != tc.log || s != tc.stream || string(ts) != ts0) {
			t.Errorf("%s: shaped=%v log=%q stream=%v time=%q; want %v %q %v %q", tc.line, shaped, raw, s, ts, tc.shaped, tc.log, tc.stream, ts0)
		}
	}
}

func TestSkipStringObject(t *testing.T) {
	for in, want := range map[string]int{
		`{}`: 2, `{}x`: 2, `{"a":"b"}`: 9, `{"a":"b","c":"d"},`: 17, `{"a\"":"\\"}`: 12,
		`{`: -1, `{"a":1}`: -1, `{"a":"b"`: -1, `{"a":"b",}`: -1, `{"a""b"}`: -1, `{"a":"b"]`: -1, `x`: -1, ``: -1, `{"a`: -1,
	} {
		if got := skipStringObject([]byte(in)); got != want {
			t.Errorf("skipStringObject(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestStringEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{`abc"`, 3},
		{`"`, 0},
		{`a\"b"`, 4},
		{`a\\"`, 3},
		{`a\\\"b"`, 6},
		{`\\\\"x"`, 4},
		{`abc`, -1},
		{`abc\"`, -1},
	} {
		if got := stringEnd([]byte(tc.in)); got != tc.want {
			t.Errorf("stringEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestRawEndsWithNewline(t *testing.T) {
	for in, want := range map[string]bool{
		`\n`: true, `a\n`: true, `a\\\n`: true, `\u000a`: true, `x\u000A`: true, `\\\u000a`: true,
		`n`: false, `a\\n`: false, `\\u000a`: false, `a`: false, ``: false, `\u000b`: false, `\r`: false,
	} {
		if got := rawEndsWithNewline([]byte(in)); got != want {
			t.Errorf("rawEndsWithNewline(%q) = %v, want %v", in, got, want)
		}
	}
}

// FuzzUnescape checks the JSON string decoder against encoding/json (on valid
// UTF-8, which encoding/json would otherwise rewrite).
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{`plain`, `a\tb\"c\\d\/e\u00e9\ud83d\ude00`, `\ud800\u0041`, `\udc00`, `\u12`, `\x`, `\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := appendUnescaped(nil, []byte(s))
		if len(got) > len(s) {
			t.Fatalf("%q: decoded %d bytes, more than its %d", s, len(got), len(s))
		}
		quoted := `"` + s + `"`
		if stringEnd([]byte(s+`"`)) != len(s) || !utf8.ValidString(s) {
			return // not a JSON string by itself
		}
		var want string
		err := json.Unmarshal([]byte(quoted), &want)
		if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 }) {
			// encoding/json rejects raw control characters; we keep them.
			return
		}
		if (err == nil) != ok {
			t.Fatalf("%q: encoding/json err=%v, appendUnescaped ok=%v", s, err, ok)
		}
		if ok && string(got) != want {
			t.Fatalf("%q: got %q, encoding/json %q", s, got, want)
		}
	})
}

// refDocker is an independent reading of a Docker line through encoding/json,
// the log string decoded by appendUnescaped (checked by FuzzUnescape) so that
// bytes stay as they are. The fast path deliberately accepts lines of Docker's
// exact shape that strict JSON would not (raw control characters in the log):
// those are read by shape.
func refDocker(line []byte) (s Stream, log []byte, ok bool) {
	raw, s, ts, shaped := scanDockerFast(line)
	if !shaped {
		var obj map[string]json.RawMessage
		if json.Unmarshal(line, &obj) != nil {
			return 0, nil, false
		}
		var lg, st, tm string
		if json.Unmarshal(obj["log"], &lg) != nil || json.Unmarshal(obj["stream"], &st) != nil ||
			json.Unmarshal(obj["time"], &tm) != nil || obj["log"][0] != '"' {
			return 0, nil, false
		}
		switch st {
		case "stdout":
			s = Stdout
		case "stderr":
			s = Stderr
		default:
			return 0, nil, false
		}
		raw, ts = obj["log"][1:len(obj["log"])-1], []byte(tm)
	}
	if _, err := time.Parse(time.RFC3339Nano, string(ts)); err != nil {
		return 0, nil, false
	}
	log, ok = appendUnescaped(nil, raw)
	return s, log, ok
}

func FuzzDecodeDocker(f *testing.F) {
	f.Add([]byte(dl(`hello world\n`, "stdout", ts0)+"\n"+dl(`oops\r\n`, "stderr", ts2)), uint16(5))
	f.Add([]byte(dl(strings.Repeat("x", 100), "stdout", ts0)+"\n"+dl(`e`, "stderr", ts0)+"\n"+
		dl(`tail\n`, "stdout", ts1)+"\n"+dl(`\n`, "stderr", ts1)+"\n"), uint16(17))
	f.Add([]byte(dl(`{\"level\":\"info\",\"msg\":\"served \u003cok\u003e\"}\n`, "stdout", ts0)+"\ngarbage\n\n"+
		`{"stream":"stderr","log":"x\ud83d\ude00\n","time":"`+ts0+`","attrs":{"a":"b"}}`), uint16(40))
	f.Add([]byte(`{"log":"labelled\n","stream":"stdout","attrs":{"app":"web","q":"\""},"time":"`+ts2+`"}`), uint16(0))
	f.Add([]byte(dl("a\xff\x00\\u0000", "stdout", ts0)+"\n"+dl(`\\\n`, "stdout", "2026-11-26T15:55:12Z")), uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, maxN uint16) {
		lines := bytes.Split(data, []byte("\n"))
		if docker, decided := fileIsDocker(lines); decided && !docker {
			return // a CRI file: FuzzDecodeCRI's business
		}
		// Round trip: a whole line of a stream with nothing pending comes
		// back as its message.
		for _, line := range lines {
			s, log, ok := refDocker(line)
			if !ok || len(log) == 0 || log[len(log)-1] != '\n' {
				continue
			}
			d := newDecoder(defaultMaxRecord, nil)
			var recs []Record
			d.decode(line, 0, func(r Record) { recs = append(recs, r) })
			if want := trimCR(log[:len(log)-1]); len(recs) != 1 || recs[0].Stream != s || !bytes.Equal(recs[0].Log, want) {
				t.Fatalf("%q: got %v, want %q on %v", line, outs(recs), want, s)
			}
			// Cross-check with encoding/json where it keeps bytes as they are.
			var v struct{ Log string }
			if utf8.Valid(line) && json.Unmarshal(line, &v) == nil && v.Log != string(log) {
				t.Fatalf("%q: log %q, encoding/json %q", line, log, v.Log)
			}
		}
		checkNothingLost(t, lines, fuzzMax(maxN), func(line []byte) (Stream, []byte, bool, bool) {
			s, log, ok := refDocker(line)
			final := ok && len(log) > 0 && log[len(log)-1] == '\n'
			if final {
				log = log[:len(log)-1]
			}
			return s, log, final, ok
		})
	})
}

// dockerLines writes messages as Docker's json-file driver does, splitting at 16 KiB.
func dockerLines(msgs []benchMsg) [][]byte {
	type entry struct {
		Log    string    `json:"log"`
		Stream string    `json:"stream"`
		Time   time.Time `json:"time"`
	}
	var lines [][]byte
	base := time.Date(2026, 11, 26, 15, 55, 12, 0, time.UTC)
	for i, m := range msgs {
		ts := base.Add(time.Duration(i) * 1013 * time.Microsecond)
		msg := m.msg + "\n"
		for len(msg) > 0 {
			n := min(len(msg), 16384)
			b, err := json.Marshal(entry{msg[:n], m.stream.String(), ts})
			if err != nil {
				panic(err)
			}
			lines = append(lines, b)
			msg = msg[n:]
		}
	}
	return lines
}

func BenchmarkDecodeDocker(b *testing.B) {
	for _, kind := range []string{"text", "json", "long", "mixed"} {
		n := 10000
		if kind == "long" {
			n = 100
		}
		lines := dockerLines(benchMessages(kind, n))
		b.Run(kind, func(b *testing.B) { benchDecode(b, lines) })
	}
}

// TestDecodeDockerArena: decoded messages share arena blocks; none may be
// overwritten by a later one, whatever the sizes (the large ones get their own
// allocation).
func TestDecodeDockerArena(t *testing.T) {
	d := newDecoder(0, nil)
	var recs []Record
	emit := func(r Record) { recs = append(recs, r) }
	var want []string
	var off int64
	for i := range 3000 {
		msg := fmt.Sprintf(`{"seq":%d,"pad":"%s"}`, i, strings.Repeat("é", i%700)) // up to ~1.4 KB, around arenaMaxOne
		line, err := json.Marshal(map[string]string{"log": msg + "\n", "stream": "stdout", "time": ts0})
		if err != nil {
			t.Fatal(err)
		}
		// encoding/json sorts keys (log, stream, time): Docker's own order.
		d.decode(line, off, emit)
		off += int64(len(line)) + 1
		want = append(want, msg)
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if string(r.Log) != want[i] {
			t.Fatalf("record %d = %q, want %q", i, r.Log, want[i])
		}
	}
}
