package output

// waiter is one Send waiting for queue space.
type waiter struct {
	ch    chan struct{} // receives one wake-up
	woken bool
}

// waitQueue is the Sends waiting for space, first come first served. Space
// that frees wakes the first only; it wakes the next once it has taken its
// share (Forward.wakeLocked), so a freed chunk costs one wake-up, not one
// per waiting file.
type waitQueue struct {
	q []*waiter
}

func (q *waitQueue) len() int { return len(q.q) }

func (q *waitQueue) first() *waiter {
	if len(q.q) == 0 {
		return nil
	}
	return q.q[0]
}

func (q *waitQueue) push() *waiter {
	w := &waiter{ch: make(chan struct{}, 1)}
	q.q = append(q.q, w)
	return w
}

// remove takes w out of the queue (nil or absent: nothing).
func (q *waitQueue) remove(w *waiter) {
	if w == nil {
		return
	}
	if len(q.q) > 0 && q.q[0] == w { // the usual case: the first leaves
		q.q[0] = nil
		q.q = q.q[1:]
		return
	}
	for i, x := range q.q {
		if x == w {
			copy(q.q[i:], q.q[i+1:])
			q.q[len(q.q)-1] = nil
			q.q = q.q[:len(q.q)-1]
			return
		}
	}
}

// wakeFirst wakes the first waiter, once: it stays first until it leaves.
func (q *waitQueue) wakeFirst() {
	if len(q.q) == 0 {
		return
	}
	w := q.q[0]
	if !w.woken {
		w.woken = true
		w.ch <- struct{}{}
	}
}

func (q *waitQueue) wakeAll() {
	for _, w := range q.q {
		if !w.woken {
			w.woken = true
			w.ch <- struct{}{}
		}
	}
}
