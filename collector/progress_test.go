package collector

import (
	"math/rand/v2"
	"testing"
)

// The checkpoint rule, as a property: whatever the sizes of records and
// batches, records joined across batches, reads that emit nothing, and the
// order in which batches are acknowledged, the checkpoint never moves past
// the first byte of a record not yet acknowledged, never goes back, and
// reaches the end once everything is acknowledged.
func TestProgressNeverPassesAnUnacknowledgedRecord(t *testing.T) {
	for seed := range uint64(2000) {
		rng := rand.New(rand.NewPCG(seed, 7))
		p := newProgress(0)
		type batch struct {
			seq      uint64
			minStart int64 // first byte of its first record
			acked    bool
		}
		var batches []*batch
		pos := int64(0)
		pending := int64(-1) // first byte of the record being joined, -1 if none
		last := int64(0)
		check := func(step string) {
			acked, _ := p.offset()
			if acked < last {
				t.Fatalf("seed %d, %s: the checkpoint went back from %d to %d", seed, step, last, acked)
			}
			last = acked
			for _, b := range batches {
				if !b.acked && acked > b.minStart {
					t.Fatalf("seed %d, %s: checkpoint %d is past the record at %d of an unacknowledged batch", seed, step, acked, b.minStart)
				}
			}
			if acked > pos {
				t.Fatalf("seed %d, %s: checkpoint %d is past what was read (%d)", seed, step, acked, pos)
			}
		}
		safe := func() int64 {
			if pending >= 0 {
				return pending
			}
			return pos
		}
		for range 200 {
			switch rng.IntN(6) {
			case 0, 1: // a read with whole records, perhaps completing a joined one
				minStart := pos
				if pending >= 0 && rng.IntN(2) == 0 {
					minStart, pending = pending, -1
				}
				pos += 1 + rng.Int64N(5000)
				batches = append(batches, &batch{seq: p.add(safe()), minStart: minStart})
				check("add")
			case 2: // a read that only starts or extends a joined record
				if pending < 0 {
					pending = pos
				}
				pos += 1 + rng.Int64N(16384)
				p.advance(safe())
				check("advance")
			default: // an acknowledgement, in any order
				var open []*batch
				for _, b := range batches {
					if !b.acked {
						open = append(open, b)
					}
				}
				if len(open) > 0 {
					b := open[rng.IntN(len(open))]
					b.acked = true
					p.ack(b.seq)
					p.ack(b.seq) // a second ack changes nothing
					check("ack")
				}
			}
		}
		for _, b := range batches {
			if !b.acked {
				b.acked = true
				p.ack(b.seq)
				check("final ack")
			}
		}
		if acked, out := p.offset(); acked != safe() || out != 0 {
			t.Fatalf("seed %d: all acknowledged, checkpoint %d with %d outstanding; want %d", seed, acked, out, safe())
		}
	}
}
