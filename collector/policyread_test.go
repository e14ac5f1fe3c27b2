package collector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// criText writes msgs as CRI lines of one stream, each "F" unless it is
// given as "P:<piece>" (a partial piece the runtime split off).
func criText(stream string, msgs ...string) string {
	var b strings.Builder
	ts := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	for i, m := range msgs {
		tag := "F"
		if p, ok := strings.CutPrefix(m, "P:"); ok {
			tag, m = "P", p
		}
		fmt.Fprintf(&b, "%s %s %s %s\n", ts.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), stream, tag, m)
	}
	return b.String()
}

// javaTrace is trace i's lines; the second frame is written by the runtime
// in two partial pieces.
func javaTrace(i int) (lines []string, joined string) {
	lines = []string{
		fmt.Sprintf("java.lang.IllegalStateException: trace=%d", i),
		"\tat com.example.A.f(A.java:1)",
		"P:\tat com.example.B.",
		"g(B.java:2)",
		fmt.Sprintf("Caused by: java.io.IOException: cause of %d", i),
		"\tat com.example.C.h(C.java:3)",
		"\t... 2 more",
	}
	joined = strings.Join([]string{lines[0], lines[1], lines[2][2:] + lines[3], lines[4], lines[5], lines[6]}, "\n")
	return lines, joined
}

func fileOffset(c *Collector, path string) (acked int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forEachFile(func(f *file) {
		if f.path == path {
			acked, _ = f.prog.offset()
			ok = true
		}
	})
	return acked, ok
}

// TestMultilineInReadLoop: a container selected for java by the
// configuration: traces arrive as one record each (partial lines inside
// joined first), plain lines and the other stream's lines alone and
// unchanged, and while a trace is open its file's checkpoint stays at its
// first line, even with everything before it acknowledged.
func TestMultilineInReadLoop(t *testing.T) {
	n := newNode(t)
	live := n.container("shop", "api-1", "app")
	cfg := n.config()
	cfg.Multiline.Select = []MultilineSelect{{Namespaces: []string{"shop"}, Rule: "java"}}
	cfg.Multiline.FlushTimeout = time.Minute // only the next line closes a group
	var text strings.Builder
	var want []string
	for i := range 20 {
		text.WriteString(criText("stdout", fmt.Sprintf("plain before %d", i)))
		lines, joined := javaTrace(i)
		// The other stream writes in the middle of the trace.
		text.WriteString(criText("stdout", lines[:3]...))
		text.WriteString(criText("stderr", fmt.Sprintf("stderr %d", i)))
		text.WriteString(criText("stdout", lines[3:]...))
		want = append(want, fmt.Sprintf("plain before %d", i), joined, fmt.Sprintf("stderr %d", i))
	}
	appendFile(t, live, text.String())
	sink := newCapture()
	run := start(t, cfg, sink)

	// The last trace stays open: no line has closed it yet.
	waitFor(t, "all but the last trace", func() bool { return sink.distinct() == len(want)-1 })
	last := want[len(want)-2]
	if sink.count(last) != 0 {
		t.Fatal("the last trace was sent while still open")
	}
	openAt := int64(strings.LastIndex(text.String(), "java.lang.IllegalStateException: trace=19"))
	openAt = int64(strings.LastIndexByte(text.String()[:openAt], '\n') + 1)
	waitFor(t, "the checkpoint to reach the open trace", func() bool {
		off, _ := fileOffset(run.c, live)
		return off == openAt
	})
	time.Sleep(100 * time.Millisecond) // several read loop turns: it must not move
	if off, _ := fileOffset(run.c, live); off != openAt {
		t.Fatalf("checkpoint at %d with a trace open at %d", off, openAt)
	}
	appendFile(t, live, criText("stdout", "after"))
	want = append(want, "after")
	waitFor(t, "every record", func() bool { return sink.distinct() == len(want) })
	waitFor(t, "the checkpoint at the end", func() bool {
		off, _ := fileOffset(run.c, live)
		return off == fileSize(t, live)
	})
	for _, w := range want {
		if n := sink.count(w); n != 1 {
			t.Errorf("%q arrived %d times", w, n)
		}
	}
	if got := testutil.ToFloat64(run.c.pol.ml.groups.WithLabelValues("java")); got != 20 {
		t.Errorf("multiline_groups_total{rule=java} = %v, want 20", got)
	}
}

// TestMultilineFlushTimeout: the last trace before a quiet spell goes out
// flush_timeout after its last line, joined, counted as a timeout cut.
func TestMultilineFlushTimeout(t *testing.T) {
	n := newNode(t)
	live := n.container("shop", "api-1", "app")
	cfg := n.config()
	cfg.PollInterval = time.Hour // the wake-up comes from the group's due time
	cfg.Multiline.Select = []MultilineSelect{{Containers: []string{"app"}, Rule: "java"}}
	cfg.Multiline.FlushTimeout = 200 * time.Millisecond
	lines, joined := javaTrace(1)
	appendFile(t, live, criText("stdout", lines...))
	sink := newCapture()
	run := start(t, cfg, sink)
	waitFor(t, "the trace", func() bool { return sink.count(joined) == 1 })
	if got := testutil.ToFloat64(run.c.pol.ml.cut[cutTimeout]); got != 1 {
		t.Errorf("multiline_cut_total{reason=timeout} = %v, want 1", got)
	}
	waitFor(t, "the checkpoint at the end", func() bool {
		off, _ := fileOffset(run.c, live)
		return off == fileSize(t, live)
	})
}

// TestMultilineBounds: max_lines cuts a long trace into parts, each a
// record, none lost.
func TestMultilineBounds(t *testing.T) {
	n := newNode(t)
	live := n.container("shop", "api-1", "app")
	cfg := n.config()
	cfg.Multiline.Select = []MultilineSelect{{Rule: "java"}}
	cfg.Multiline.MaxLines = 10
	msgs := []string{"java.lang.RuntimeException: deep"}
	for i := range 24 {
		msgs = append(msgs, fmt.Sprintf("\tat com.example.Deep.f%d(Deep.java:%d)", i, i))
	}
	appendFile(t, live, criText("stdout", append(msgs, "done")...))
	sink := newCapture()
	run := start(t, cfg, sink)
	parts := []string{strings.Join(msgs[:10], "\n"), strings.Join(msgs[10:20], "\n"), strings.Join(msgs[20:], "\n"), "done"}
	waitFor(t, "the parts", func() bool { return sink.distinct() == len(parts) })
	for _, p := range parts {
		if sink.count(p) != 1 {
			t.Errorf("part %q arrived %d times", strings.SplitN(p, "\n", 2)[0], sink.count(p))
		}
	}
	if got := testutil.ToFloat64(run.c.pol.ml.cut[cutMaxLines]); got != 2 {
		t.Errorf("multiline_cut_total{reason=max_lines} = %v, want 2", got)
	}
}

// switchSource is a PolicySource a test changes.
type switchSource struct {
	mu  chan struct{}
	pol Policy
}

func newSwitchSource(p Policy) *switchSource {
	s := &switchSource{mu: make(chan struct{}, 1), pol: p}
	return s
}

func (s *switchSource) Policy(*Source) Policy {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.pol
}

func (s *switchSource) set(p Policy) {
	s.mu <- struct{}{}
	s.pol = p
	<-s.mu
}

// TestRateLimitSlowsReading: a container limited to 64 KiB/s with ~0.6 MB
// on disk is read at that pace (bytes read never ahead of burst + rate ×
// time, with a read's worth of slack), every line arrives, the namespace's
// throttle series show the wait, and they go once the limit is lifted. With
// a burst smaller than a read, a read waits for several bursts' worth: it
// is never cut short (a line longer than the burst would never be read).
func TestRateLimitSlowsReading(t *testing.T) {
	for _, tc := range []struct {
		name              string
		rate, burst, read int
	}{
		{"burst as large as a read", 64 << 10, 16 << 10, 16 << 10},
		{"burst smaller than a read", 128 << 10, 4 << 10, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			live := n.container("loud", "spam-1", "app")
			cfg := n.config()
			cfg.ReadBytes = tc.read
			appendFile(t, live, numberedLines("spam", 0, 12000)) // ~0.6 MB
			size := fileSize(t, live)
			src := newSwitchSource(Policy{RateLimit: RateLimit{BytesPerSecond: int64(tc.rate), Burst: int64(tc.burst)}})
			sink := newCapture()
			run := startWithSource(t, cfg, sink, src)
			began := time.Now()
			for {
				read := fileReadOf(run.c, live)
				if el := time.Since(began).Seconds(); read > int64(tc.burst+2*tc.read)+int64(float64(tc.rate)*el) {
					t.Fatalf("%d bytes read after %.2fs: more than the limit allows", read, el)
				}
				if read >= size/3 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			waited := testutil.ToFloat64(run.c.pol.throttles.m.waited.WithLabelValues("loud"))
			if waited <= 0 {
				t.Errorf("rate_limit_wait_seconds_total{namespace=loud} = %v after a third of the file", waited)
			}
			// Lifted: the rest is read at once, and the series go.
			src.set(Policy{})
			waitFor(t, "every line", func() bool { return sink.distinct() == 12000 })
			sink.expectLines(t, "spam", 0, 12000)
			waitFor(t, "the series deleted", func() bool {
				return testutil.CollectAndCount(run.c.pol.throttles.m.waited) == 0 && testutil.CollectAndCount(run.c.pol.throttles.m.behind) == 0
			})
		})
	}
}

// startWithSource runs a collector whose policies come from src.
func startWithSource(t *testing.T, cfg Config, sink Sink, src PolicySource) *running {
	t.Helper()
	return startWith(t, cfg, sink, func(c *Collector) { c.SetPolicySource(src) })
}

func fileReadOf(c *Collector, path string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	c.forEachFile(func(f *file) {
		if f.path == path {
			n = f.read.Load()
		}
	})
	return n
}

// TestMultilineGroupEndsWithItsFile: the kubelet rotates the file in the
// middle of a trace. The group does not span the two files: the rotated
// file's part goes out, joined, when that file is drained, and the new
// file's lines are joined on their own; nothing is lost, and both files'
// checkpoints reach their ends.
func TestMultilineGroupEndsWithItsFile(t *testing.T) {
	n := newNode(t)
	live := n.container("shop", "api-1", "app")
	cfg := n.config()
	cfg.Multiline.Select = []MultilineSelect{{Rule: "java"}}
	cfg.Multiline.FlushTimeout = time.Minute
	msgs := []string{"java.lang.IllegalStateException: rotated", "\tat a.B.f(B.java:1)", "\tat a.B.g(B.java:2)", "\tat a.B.h(B.java:3)"}
	appendFile(t, live, criText("stdout", msgs[:2]...))
	sink := newCapture()
	run := start(t, cfg, sink)
	waitFor(t, "the trace's first lines read", func() bool { return fileReadOf(run.c, live) == fileSize(t, live) })
	rotated := rotate(t, live, "20261127-080000")
	appendFile(t, live, criText("stdout", append(msgs[2:], "after")...))
	first, rest := strings.Join(msgs[:2], "\n"), strings.Join(msgs[2:], "\n")
	waitFor(t, "both parts", func() bool { return sink.count(first) == 1 && sink.count("after") == 1 })
	// The new file's frames continue no group of their own: they go alone.
	for _, m := range msgs[2:] {
		if sink.count(m) != 1 {
			t.Errorf("%q arrived %d times, want once, alone", m, sink.count(m))
		}
	}
	if sink.count(rest) != 0 {
		t.Error("the new file's frames were joined as if they continued a group")
	}
	waitFor(t, "both checkpoints at their ends", func() bool {
		a, _ := fileOffset(run.c, rotated)
		b, _ := fileOffset(run.c, live)
		return a == fileSize(t, rotated) && b == fileSize(t, live)
	})
}

// TestMultilineUnderMemoryPressure: a buffer of 12 KiB, batches
// acknowledged slowly, traces with partial lines in them: readers wait for
// memory, give back what they join and read it again, and the joiner's
// groups outlive the read buffers they came from. Every record arrives
// exactly once, as reading the file in one go with the same bounds gives it.
func TestMultilineUnderMemoryPressure(t *testing.T) {
	n := newNode(t)
	live := n.container("shop", "api-1", "app")
	cfg := n.config()
	cfg.MaxRecordBytes, cfg.ReadBytes = 4096, 4096
	cfg.BufferBytes = 2*cfg.MaxRecordBytes + cfg.ReadBytes
	cfg.Multiline.Select = []MultilineSelect{{Rule: "java"}}
	cfg.Multiline.MaxBytes = 4096
	// Long enough that no wait for memory, however slow the machine,
	// outlasts it: groups end by their rule or max_bytes, as in one go.
	cfg.Multiline.FlushTimeout = 2 * time.Second
	var text strings.Builder
	frame := strings.Repeat("y", 1200)
	for i := range 300 {
		text.WriteString(criText("stdout", fmt.Sprintf("plain %d", i)))
		if i%3 == 0 {
			lines, _ := javaTrace(i)
			text.WriteString(criText("stdout", lines...))
			// A long frame in pieces, and more frames: some groups
			// reach max_bytes.
			text.WriteString(criText("stdout", "P:\tat long."+frame, "P:"+frame, frame))
			for k := range i % 7 {
				text.WriteString(criText("stdout", fmt.Sprintf("\tat f%d.%s", k, frame)))
			}
			text.WriteString(criText("stderr", fmt.Sprintf("err %d", i)))
		}
	}
	data := text.String()
	appendFile(t, live, data)

	// What reading it in one go gives.
	want := map[string]int{}
	d := newDecoder(cfg.MaxRecordBytes, nil)
	p, err := NewPolicies(cfg)
	if err != nil {
		t.Fatal(err)
	}
	j := NewJoiner(p.Select("shop", "app", nil), p.Limits(), nil)
	add := func(r Record) { want[string(r.Log)]++ }
	for pos := 0; pos < len(data); {
		i := strings.IndexByte(data[pos:], '\n')
		d.decode([]byte(data[pos:pos+i]), int64(pos), func(r Record) { j.Add(r, d.emitAt, add) })
		pos += i + 1
	}
	d.flush(func(r Record) { j.Add(r, d.emitAt, add) })
	j.Flush(add)
	total := 0
	for _, c := range want {
		total += c
	}

	sink := newCapture()
	sink.setHold(true)
	run := start(t, cfg, sink)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
				sink.release(1)
			}
		}
	}()
	waitFor(t, "every record", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.order) >= total
	})
	waitFor(t, "the checkpoint at the end", func() bool {
		off, _ := fileOffset(run.c, live)
		return off == int64(len(data))
	})
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for r, c := range want {
		if sink.counts[r] != c {
			t.Errorf("%.60q arrived %d times, want %d", r, sink.counts[r], c)
		}
	}
	if len(sink.order) != total {
		t.Errorf("%d records, want %d", len(sink.order), total)
	}
	stalls := testutil.ToFloat64(run.c.m.memoryStalls)
	if stalls == 0 {
		t.Error("no reader gave back what it was joining: the test does not exercise it")
	}
	t.Logf("%d records, %d bytes, %v memory stalls", total, len(data), stalls)
}

// A line the runtime has only half written when the reader reads it is read
// again, whole, once the rest is there: the rate limit counts its bytes
// once, not at each read.
func TestRateLimitCountsARereadLineOnce(t *testing.T) {
	n := newNode(t)
	live := n.container("loud", "half-1", "app")
	cfg := n.config()
	// A bucket that barely refills: what was taken from it is what the
	// reads were charged.
	const burst = 1 << 20
	src := newSwitchSource(Policy{RateLimit: RateLimit{BytesPerSecond: 1, Burst: burst}})
	sink := newCapture()
	run := startWithSource(t, cfg, sink, src)
	first := numberedLines("half", 0, 10)
	line := numberedLines("half", 10, 11)
	appendFile(t, live, first+line[:len(line)/2])
	waitFor(t, "the complete lines", func() bool { return sink.distinct() == 10 })
	waitFor(t, "the half line read", func() bool { return fileReadOf(run.c, live) == int64(len(first)+len(line)/2) })
	appendFile(t, live, line[len(line)/2:])
	waitFor(t, "the last line", func() bool { return sink.distinct() == 11 })
	var lim *RateLimiter
	run.c.mu.Lock()
	run.c.forEachFile(func(f *file) {
		if f.path == live && f.reader != nil {
			lim = f.reader.lim
		}
	})
	run.c.mu.Unlock()
	if lim == nil {
		t.Fatal("the file's reader has no rate limiter")
	}
	spent := burst - lim.tokens(time.Now())
	size := float64(len(first) + len(line))
	// The bucket refills by a byte a second while the test runs.
	if spent < size-30 || spent > size {
		t.Errorf("the reads took %.0f bytes from the bucket, for a file of %.0f bytes", spent, size)
	}
}
