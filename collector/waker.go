package collector

import (
	"context"
	"sync"
	"time"
)

// waker wakes readers later: a write to a file read less than read_wait ago
// wakes its reader only read_wait after that read, so that it reads the
// lines gathered meanwhile in one go, with one wake-up (the reader does not
// wake to wait). Due wake-ups are handed out in rounds of wakerTick, one
// timer for all files.
type waker struct {
	mu   sync.Mutex
	due  []dueWake
	next int64 // when the timer fires; 0 if it is stopped
	kick chan struct{}
}

type dueWake struct {
	f  *file
	at int64 // unix nanoseconds
}

// wakerTick is the granularity of delayed wake-ups.
const wakerTick = 10 * time.Millisecond

func newWaker() *waker { return &waker{kick: make(chan struct{}, 1)} }

// notify wakes f's reader now, or once its read_wait since its last read
// has passed.
func (w *waker) notify(f *file, now int64) {
	at := f.notBefore.Load()
	if at <= now {
		f.wake()
		return
	}
	if f.deferred.Swap(true) {
		return // already due
	}
	w.mu.Lock()
	w.due = append(w.due, dueWake{f, at})
	kick := w.next == 0 || at < w.next
	w.mu.Unlock()
	if kick {
		wake(w.kick)
	}
}

// run hands out due wake-ups until ctx is done.
func (w *waker) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		now := time.Now().UnixNano()
		w.mu.Lock()
		next := int64(0)
		keep := w.due[:0]
		for _, d := range w.due {
			if d.at <= now+int64(wakerTick)/2 {
				d.f.deferred.Store(false)
				d.f.wake()
				continue
			}
			keep = append(keep, d)
			if next == 0 || d.at < next {
				next = d.at
			}
		}
		clear(w.due[len(keep):])
		w.due = keep
		if next != 0 {
			next = max(next, now+int64(wakerTick))
			timer.Reset(time.Duration(next - now))
		} else {
			timer.Stop()
		}
		w.next = next
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-timer.C:
		}
	}
}
