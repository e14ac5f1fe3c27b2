package enrich

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logagent/logagent/collector"
)

// parker holds the batches of pods not yet in the cache, one FIFO queue per
// pod, so a pod's later batches wait behind its first and per-file order is
// kept, while other pods' batches pass. A queue is released when its pod
// shows up or its deadline passes, by one releaser (Run) or by Close.
type parker struct {
	m *metrics

	// nQueues mirrors len(queues) so the hit path skips the lock when
	// nothing waits, the usual state.
	nQueues atomic.Int64

	mu     sync.Mutex
	queues map[string]*parkedQueue
	closed bool // no new queues: Close is releasing, or has released, everything

	wake chan struct{} // a queue was added or a pod arrived
	idle chan struct{} // a drain finished (for Close waiting on the releaser)
}

type parkedQueue struct {
	batches  []*collector.Batch
	deadline time.Time // zero: release at the next pass
	draining bool      // one drainer at a time keeps the queue's order
}

func newParker(m *metrics) *parker {
	return &parker{
		m:      m,
		queues: make(map[string]*parkedQueue),
		wake:   make(chan struct{}, 1),
		idle:   make(chan struct{}, 1),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// join appends b to its pod's queue if the pod has one, and reports whether
// it did. The queue lives until its last batch has been delivered, so a batch
// that finds none can go straight on without overtaking earlier ones.
func (p *parker) join(key string, b *collector.Batch) bool {
	if p.nQueues.Load() == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queues[key]
	if q == nil {
		return false
	}
	q.batches = append(q.batches, b)
	p.m.parked.Inc()
	return true
}

// park starts or extends a pod's queue. It reports false once Close has
// begun: the caller then delivers the batch itself.
func (p *parker) park(key string, b *collector.Batch, deadline time.Time) bool {
	p.mu.Lock()
	q := p.queues[key]
	if q == nil {
		if p.closed {
			p.mu.Unlock()
			return false
		}
		q = &parkedQueue{deadline: deadline}
		p.queues[key] = q
		p.nQueues.Add(1)
	}
	q.batches = append(q.batches, b)
	p.m.parked.Inc()
	p.mu.Unlock()
	signal(p.wake)
	return true
}

// due claims the queues to release now: those whose pod is ready (per the
// head batch) or whose deadline passed. It returns the claimed keys and the
// earliest deadline of the rest (zero if none).
func (p *parker) due(now time.Time, ready func(*collector.Batch) bool) (keys []string, next time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, q := range p.queues {
		if q.draining {
			continue
		}
		if !now.Before(q.deadline) || ready(q.batches[0]) {
			q.draining = true
			keys = append(keys, k)
			continue
		}
		if next.IsZero() || q.deadline.Before(next) {
			next = q.deadline
		}
	}
	return keys, next
}

// drain delivers, in order, the batches the claimed queue holds now (not
// those that join meanwhile, so one busy pod cannot starve the others); the
// queue is removed once empty. On a delivery error the batch goes back to the
// queue's head and the error is returned.
func (p *parker) drain(ctx context.Context, key string, deliver func(context.Context, *collector.Batch) error) error {
	p.mu.Lock()
	n := len(p.queues[key].batches)
	p.mu.Unlock()
	for ; n > 0; n-- {
		p.mu.Lock()
		q := p.queues[key]
		b := q.batches[0]
		q.batches[0] = nil
		q.batches = q.batches[1:]
		p.mu.Unlock()

		if err := deliver(ctx, b); err != nil {
			p.mu.Lock()
			q.batches = append([]*collector.Batch{b}, q.batches...)
			q.draining = false
			p.mu.Unlock()
			signal(p.idle)
			return err
		}
		p.m.parked.Dec()
	}
	p.mu.Lock()
	q := p.queues[key]
	q.draining = false
	if len(q.batches) == 0 {
		delete(p.queues, key)
		p.nQueues.Add(-1)
	} else {
		q.deadline = time.Time{} // the rest joined while draining: next pass
	}
	p.mu.Unlock()
	signal(p.idle)
	signal(p.wake)
	return nil
}

// closeAll stops new queues and releases every parked batch, waiting for a
// concurrent drain by the releaser to finish its part.
func (p *parker) closeAll(ctx context.Context, deliver func(context.Context, *collector.Batch) error) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	for {
		p.mu.Lock()
		var key string
		busy := false
		for k, q := range p.queues {
			if q.draining {
				busy = true
				continue
			}
			q.draining = true
			key = k
			break
		}
		empty := len(p.queues) == 0
		p.mu.Unlock()
		switch {
		case key != "":
			if err := p.drain(ctx, key, deliver); err != nil {
				return err
			}
		case empty:
			return nil
		case busy:
			select {
			case <-p.idle:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// len is the number of parked batches.
func (p *parker) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, q := range p.queues {
		n += len(q.batches)
	}
	return n
}
