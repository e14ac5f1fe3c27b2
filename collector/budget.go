package collector

import (
	"context"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
)

// budget is collector.buffer_bytes: every byte of log data the collector
// holds counts against it, whoever holds it:
//
//   - a batch holds its read buffer (records point into it), the copies its
//     records own (joined or unescaped messages) until it is acknowledged;
//   - a reader holds the records it is joining from partial lines, and
//     while it decodes a read, the read buffer and what decoding allocates.
//
// Reading waits for room, in turn (the semaphore is FIFO: a large request is
// not overtaken by small ones, so a file with a long record is not starved).
// Readers that wait while holding memory could each hold part of what the
// others wait for. So a reader waits holding the records it is joining only
// if they are small and, with those of the other readers waiting so, within a
// quarter of the budget; no request is larger than the other three quarters,
// so the first in line always gets its turn once batches are acknowledged.
// Otherwise it gives them back and reads their pieces again when its turn
// comes (decoder.stall), asking then for room for all of them at once. So a
// record longer than what is free waits until enough is acknowledged, and
// is then joined whole.
type budget struct {
	sem      *semaphore.Weighted
	bytes    atomic.Int64 // buffer_bytes: its size (see resize)
	used     prometheus.Gauge
	inUse    atomic.Int64
	waitHeld atomic.Int64 // held by readers waiting for more
	resizer  resizer      // budgetresize.go
}

// size is the budget's size: buffer_bytes.
func (b *budget) size() int64 { return b.bytes.Load() }

// maxRequest is the most a reader asks for at once.
func (b *budget) maxRequest() int64 { s := b.size(); return s - s/4 }

// smallHold is the most a reader may hold while it waits for more: a
// read and a record being joined, in a budget of the default size.
func (b *budget) smallHold() int64 { return min(512<<10, b.size()/8) }

// holdWhileWaiting reserves, for a reader about to wait, the right to keep h
// bytes meanwhile; false: it must give them back first.
func (b *budget) holdWhileWaiting(h int64) bool {
	if h > b.smallHold() {
		return false
	}
	for {
		cur := b.waitHeld.Load()
		if cur+h > b.size()/4 {
			return false
		}
		if b.waitHeld.CompareAndSwap(cur, cur+h) {
			return true
		}
	}
}

func (b *budget) doneWaiting(h int64) { b.waitHeld.Add(-h) }

func newBudget(size int64, used prometheus.Gauge) *budget {
	// The semaphore is larger than any budget; what is not the budget's is
	// held back (resizer.reserve), so that a reload can resize it.
	b := &budget{sem: semaphore.NewWeighted(semaphoreSize), used: used}
	b.bytes.Store(size)
	b.resizer.init(b, size)
	return b
}

// tryAcquire takes n bytes if they are free and nobody waits before.
func (b *budget) tryAcquire(n int64) bool {
	if n <= 0 {
		return true
	}
	if !b.sem.TryAcquire(n) {
		return false
	}
	b.inUse.Add(n)
	b.used.Add(float64(n))
	return true
}

// acquire waits for n bytes (at most the whole budget).
func (b *budget) acquire(ctx context.Context, n int64) (int64, error) {
	n = min(n, b.size())
	if n <= 0 {
		return 0, nil
	}
	if err := b.sem.Acquire(ctx, n); err != nil {
		return 0, err
	}
	b.inUse.Add(n)
	b.used.Add(float64(n))
	return n, nil
}

// readSlack is room, beyond a read, for what decoding it allocates (a 16 KiB
// runtime line joined or unescaped, an arena block), so that the common case
// takes the budget once per read.
const readSlack = 64 << 10

// tight reports whether n more bytes are not free now: a reader asking for
// them would wait.
func (b *budget) tight(n int64) bool { return b.size()-b.inUse.Load() < n }

// slack is readSlack, or less in a small budget.
func (b *budget) slack() int64 { return min(readSlack, b.size()/16) }

func (b *budget) release(n int64) {
	if n <= 0 {
		return
	}
	b.inUse.Add(-n)
	b.used.Sub(float64(n))
	b.sem.Release(n)
}
