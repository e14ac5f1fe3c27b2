package collector

import (
	"context"
	"sync"
)

// semaphoreSize is the capacity of the budget's semaphore: more than any
// buffer_bytes. The part that is not the budget is held by the resizer.
const semaphoreSize = 1 << 50

// resizer changes the budget's size while readers use it (a reload of
// collector.buffer_bytes). The semaphore cannot change its capacity, so the
// resizer holds the part of it that is not the budget (the reserve): a
// larger budget is a release from the reserve, at once; a smaller one is an
// acquisition, which waits in the semaphore's line like a reader until
// enough is acknowledged, so that nothing already held has to be given
// back. The new size is in effect for every later request at once (the
// largest a reader may ask, what it may hold while waiting), so a request
// is never larger than the budget it waits in.
type resizer struct {
	b       *budget
	mu      sync.Mutex
	reserve int64 // of the semaphore, held back
	target  int64 // the size wanted
	running bool  // a goroutine is moving the reserve to the target
	ctx     context.Context
	stop    context.CancelFunc
}

func (z *resizer) init(b *budget, size int64) {
	z.b, z.target = b, size
	z.reserve = semaphoreSize - size
	z.ctx, z.stop = context.WithCancel(context.Background())
	if !b.sem.TryAcquire(z.reserve) {
		panic("budget: a new semaphore refused its reserve")
	}
}

// resize makes the budget size bytes: at once for growth, once enough is
// free for a shrink.
func (b *budget) resize(size int64) {
	z := &b.resizer
	z.mu.Lock()
	defer z.mu.Unlock()
	z.target = size
	b.bytes.Store(size)
	if !z.running {
		z.running = true
		go z.run()
	}
}

// close stops a shrink still waiting for room: the collector is closing.
func (b *budget) close() { b.resizer.stop() }

// run moves the reserve until the semaphore's free capacity is the target.
func (z *resizer) run() {
	for {
		z.mu.Lock()
		d := (semaphoreSize - z.target) - z.reserve
		switch {
		case d == 0:
			z.running = false
			z.mu.Unlock()
			return
		case d < 0: // grow: give room back at once
			z.b.sem.Release(-d)
			z.reserve += d
			z.mu.Unlock()
			continue
		}
		z.mu.Unlock()
		// Shrink: wait in line for the room to take out of use.
		if err := z.b.sem.Acquire(z.ctx, d); err != nil {
			z.mu.Lock()
			z.running = false
			z.mu.Unlock()
			return
		}
		z.mu.Lock()
		z.reserve += d
		z.mu.Unlock()
	}
}

// capacity is what the semaphore lets readers use now (the budget once a
// resize is done), for tests.
func (z *resizer) capacity() int64 {
	z.mu.Lock()
	defer z.mu.Unlock()
	return semaphoreSize - z.reserve
}
