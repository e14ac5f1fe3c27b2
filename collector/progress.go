package collector

import (
	"sync"
	"sync/atomic"
)

// progress finds, for one file, the offset below which every record has been
// acknowledged. Batches may be acknowledged in any order (several Forward
// chunks in flight, to several servers); the offset only moves past a batch
// once every batch before it is acknowledged too.
type progress struct {
	mu    sync.Mutex
	acked int64 // the checkpoint: all records before it are delivered
	head  uint64
	queue []pendingBatch // batches not yet released, in the order they were read
	// changed, if set, counts changes of the checkpoint (Collector.version):
	// checkpoints are saved only when it moved.
	changed *atomic.Uint64
}

// bump notes a change; p.mu is held.
func (p *progress) bump() {
	if p.changed != nil {
		p.changed.Add(1)
	}
}

type pendingBatch struct {
	end  int64
	done bool
}

func newProgress(offset int64) *progress { return &progress{acked: offset} }

// add registers a batch that ends at file offset end and returns its sequence number.
func (p *progress) add(end int64) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	seq := p.head + uint64(len(p.queue))
	p.queue = append(p.queue, pendingBatch{end: end})
	return seq
}

// ack marks batch seq as delivered and advances the checkpoint as far as it can.
func (p *progress) ack(seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := seq - p.head
	if seq < p.head || i >= uint64(len(p.queue)) {
		return
	}
	p.queue[i].done = true
	n := 0
	for n < len(p.queue) && p.queue[n].done {
		p.acked = p.queue[n].end
		n++
	}
	if n > 0 {
		p.head += uint64(n)
		p.queue = append(p.queue[:0], p.queue[n:]...)
		p.bump()
	}
}

// advance moves the checkpoint to off when nothing is outstanding: for reads
// that produced no record but consumed bytes the checkpoint may skip.
func (p *progress) advance(off int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		if p.acked != off {
			p.acked = off
			p.bump()
		}
		return
	}
	// Behind an outstanding batch: record it as an already delivered entry.
	p.queue = append(p.queue, pendingBatch{end: off, done: true})
}

// reset restarts the file at off (after a copytruncate); outstanding batches of
// the old content no longer move the checkpoint.
func (p *progress) reset(off int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.head += uint64(len(p.queue))
	p.queue = p.queue[:0]
	p.acked = off
	p.bump()
}

func (p *progress) offset() (acked int64, outstanding int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked, len(p.queue)
}
