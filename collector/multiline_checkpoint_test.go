package collector

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// decodeStarts decodes one line as decoder.decode does and gives each record
// the file offset of its first line, which the joiner needs (a record
// completing a partial one starts where its first piece did): the
// decoder's emitAt, as the read loop uses it.
func decodeStarts(d *decoder, line []byte, start int64, emit func(Record, int64)) {
	d.decode(line, start, func(r Record) { emit(r, d.emitAt) })
}

// tailSim reads a file the way the tailer does, in chunks, and applies the
// checkpoint rule the read loop does (reader.safeOffset): a batch ends at the consumed offset,
// or before it at the oldest partial line the decoder holds, or the oldest
// group the joiner holds. Every batch is acknowledged at once, so the
// checkpoint is the last batch's end.
type tailSim struct {
	dec        *decoder
	j          *Joiner
	off        int64 // consumed
	carry      []byte
	checkpoint int64
	got        []string
}

func newTailSim(rule *MultilineRule, from int64) *tailSim {
	return &tailSim{dec: newDecoder(0, nil), j: NewJoiner(rule, defaultLimits(), nil), off: from, checkpoint: from}
}

// read consumes chunk, the file's bytes from s.off on.
func (s *tailSim) read(chunk []byte) {
	data := append(s.carry, chunk...)
	start := s.off - int64(len(s.carry))
	s.off += int64(len(chunk))
	emit := func(r Record) { s.got = append(s.got, string(r.Log)) }
	pos := 0
	for {
		i := bytes.IndexByte(data[pos:], '\n')
		if i < 0 {
			break
		}
		decodeStarts(s.dec, data[pos:pos+i], start+int64(pos), func(r Record, at int64) { s.j.Add(r, at, emit) })
		pos += i + 1
	}
	s.carry = bytes.Clone(data[pos:])
	safe := start + int64(pos)
	if ps, ok := s.dec.pendingStart(); ok && ps < safe {
		safe = ps
	}
	if js, ok := s.j.OpenStart(); ok && js < safe {
		safe = js
	}
	if safe < s.checkpoint {
		panic(fmt.Sprintf("checkpoint would move back from %d to %d", s.checkpoint, safe))
	}
	s.checkpoint = safe
}

// finish is the end of the file: what is held goes out.
func (s *tailSim) finish() {
	emit := func(r Record) { s.got = append(s.got, string(r.Log)) }
	s.dec.flush(func(r Record) { s.j.Add(r, s.off, emit) })
	s.j.Flush(emit)
}

// killTestFile is a container's CRI log: numbered lines on both streams,
// Java traces on one or the other, and long lines the runtime split into
// partial pieces, some of them inside a trace.
func killTestFile(rng *rand.Rand) []byte {
	var b strings.Builder
	ts := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	n := 0
	line := func(stream, tag, msg string) {
		fmt.Fprintf(&b, "%s %s %s %s\n", ts.Add(time.Duration(n)*time.Microsecond).Format(time.RFC3339Nano), stream, tag, msg)
		n++
	}
	streams := []string{"stdout", "stderr"}
	for i := range 300 {
		s := streams[rng.IntN(2)]
		switch rng.IntN(10) {
		case 0:
			line(s, "F", fmt.Sprintf("java.lang.IllegalStateException: seq=%d", i))
			for k := range rng.IntN(6) + 1 {
				if rng.IntN(8) == 0 {
					// The other stream writes in the middle.
					line(streams[1-rng.IntN(2)], "F", fmt.Sprintf("interleaved seq=%d.%d", i, k))
				}
				line(s, "F", fmt.Sprintf("\tat a.B.f%d(B.java:%d)", k, i))
			}
			if rng.IntN(3) == 0 {
				line(s, "F", fmt.Sprintf("Caused by: java.io.IOException: seq=%d", i))
				line(s, "P", "\tat c.D.")
				line(s, "F", fmt.Sprintf("g(D.java:%d)", i))
			}
		case 1:
			line(s, "P", fmt.Sprintf("long seq=%d part one ", i))
			line(s, "P", "part two ")
			line(s, "F", "part three")
		default:
			line(s, "F", fmt.Sprintf("plain seq=%d", i))
		}
	}
	return []byte(b.String())
}

// TestJoinerCheckpointSurvivesKill: the agent is killed at any point, with
// a stack trace half read, a partial line half joined or both, and resumes
// from the checkpoint the read loop kept. Every record arrives whole (a trace
// is never split or lost), and nothing arrives that the whole file read in
// one go would not give; a record may arrive twice only if it was read after
// the checkpoint.
func TestJoinerCheckpointSurvivesKill(t *testing.T) {
	rule := testRule(t, "java")
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		data := killTestFile(rng)
		want := map[string]int{}
		whole := newTailSim(rule, 0)
		whole.read(data)
		whole.finish()
		for _, r := range whole.got {
			want[r]++
		}
		for range 10 {
			kill := rng.IntN(len(data))
			first := newTailSim(rule, 0)
			for first.off < int64(kill) {
				n := min(int64(rng.IntN(300)+1), int64(kill)-first.off)
				first.read(data[first.off : first.off+n])
			}
			// Killed: what the joiner and decoder held is gone.
			second := newTailSim(rule, first.checkpoint)
			for second.off < int64(len(data)) {
				n := min(int64(rng.IntN(300)+1), int64(len(data))-second.off)
				second.read(data[second.off : second.off+n])
			}
			second.finish()
			got := map[string]int{}
			for _, r := range append(first.got, second.got...) {
				got[r]++
				if want[r] == 0 {
					t.Fatalf("seed %d, kill at %d (checkpoint %d): record %q is not one of the file's", seed, kill, first.checkpoint, r)
				}
			}
			for r, n := range want {
				if got[r] < n {
					t.Fatalf("seed %d, kill at %d (checkpoint %d): record %q arrived %d times, want %d", seed, kill, first.checkpoint, r, got[r], n)
				}
			}
			// Duplicates: only what the first run delivered from the
			// checkpoint on, which the second reads again.
			if dup := len(first.got) + len(second.got) - len(whole.got); dup > len(first.got) {
				t.Fatalf("seed %d: %d duplicates, more than the first run delivered", seed, dup)
			}
		}
	}
}
