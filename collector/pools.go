package collector

import "sync"

// pools recycles the two allocations every read makes, the read buffer and
// the slice of its records, once the batches using them are acknowledged
// (records are valid until then, see Batch), so that reading at full speed
// does not keep the garbage collector busy, which matters under the
// agent's memory limit.
type pools struct {
	size int // read_bytes: only buffers of this size are recycled
	bufs sync.Pool
	recs sync.Pool
	// heads are buffers of fingerprintMax bytes, for the first-line check
	// a reader makes before each read after a pause.
	heads sync.Pool
}

// head returns a buffer of fingerprintMax bytes; give it back with putHead.
func (p *pools) head() *[]byte {
	if b, ok := p.heads.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, fingerprintMax)
	return &b
}

func (p *pools) putHead(b *[]byte) { p.heads.Put(b) }

func newPools(readBytes int) *pools { return &pools{size: readBytes} }

// buffer returns a buffer of n bytes, not zeroed if recycled.
func (p *pools) buffer(n int) []byte {
	if n == p.size {
		if b, ok := p.bufs.Get().(*[]byte); ok {
			return (*b)[:n]
		}
	}
	return make([]byte, n)
}

func (p *pools) putBuffer(b []byte) {
	if cap(b) == p.size {
		b = b[:cap(b)]
		p.bufs.Put(&b)
	}
}

// records returns an empty slice with room for at least n records.
func (p *pools) records(n int) []Record {
	if r, ok := p.recs.Get().(*[]Record); ok && cap(*r) >= n {
		return (*r)[:0]
	}
	return make([]Record, 0, n)
}

func (p *pools) putRecords(r []Record) {
	if cap(r) == 0 {
		return
	}
	clear(r[:cap(r)]) // let go of what they point into
	r = r[:0]
	p.recs.Put(&r)
}
