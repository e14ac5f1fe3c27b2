package output

// chunkList is the open chunks in the order they were opened, which is the
// order they come due for batch_age: a doubly linked list through the chunks,
// so that a chunk sealed early (by size or freshness) leaves it in O(1).
type chunkList struct {
	head, tail *chunk
}

func (l *chunkList) pushBack(c *chunk) {
	c.prevOpen, c.nextOpen = l.tail, nil
	if l.tail != nil {
		l.tail.nextOpen = c
	} else {
		l.head = c
	}
	l.tail = c
}

func (l *chunkList) remove(c *chunk) {
	if c.prevOpen != nil {
		c.prevOpen.nextOpen = c.nextOpen
	} else if l.head == c {
		l.head = c.nextOpen
	}
	if c.nextOpen != nil {
		c.nextOpen.prevOpen = c.prevOpen
	} else if l.tail == c {
		l.tail = c.prevOpen
	}
	c.prevOpen, c.nextOpen = nil, nil
}

// chunkQueue is a FIFO of chunks. Entries whose chunk changed state since
// they were queued are skipped by the consumer, not removed.
type chunkQueue struct {
	q    []*chunk
	head int
}

func (q *chunkQueue) len() int { return len(q.q) - q.head }

func (q *chunkQueue) push(c *chunk) { q.q = append(q.q, c) }

func (q *chunkQueue) peek() *chunk { return q.q[q.head] }

// pushFront puts cs, in their order, before the queued chunks.
func (q *chunkQueue) pushFront(cs []*chunk) {
	q.q = append(cs[:len(cs):len(cs)], q.q[q.head:]...)
	q.head = 0
}

func (q *chunkQueue) pop() *chunk {
	c := q.q[q.head]
	q.q[q.head] = nil
	q.head++
	if q.head == len(q.q) {
		q.q, q.head = q.q[:0], 0
	} else if q.head >= 1024 && q.head*2 >= len(q.q) {
		n := copy(q.q, q.q[q.head:])
		clear(q.q[n:])
		q.q, q.head = q.q[:n], 0
	}
	return c
}
