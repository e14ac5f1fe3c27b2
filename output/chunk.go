package output

import (
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
	"github.com/logagent/logagent/collector"
	"github.com/tinylib/msgp/msgp"
)

// chunkState is where a chunk is in its life. All transitions happen under Forward.mu.
type chunkState uint8

const (
	chunkOpen     chunkState = iota // taking records for its tag
	chunkReady                      // sealed, waiting in Forward.ready for a connection
	chunkAssigned                   // in a connection's send queue
	chunkWriting                    // being written by the connection's writer
	chunkInFlight                   // written, waiting for its ack
	chunkDone                       // delivered; buffers released
)

// pending tracks one collector.Batch until every chunk holding its records
// has been delivered; then the batch is acknowledged.
type pending struct {
	b      *collector.Batch
	chunks int // chunks holding its records that are not delivered yet
}

// chunk is one PackedForward frame: consecutive entries of one tag, sent and
// acknowledged as a unit under one chunk id. Its records are never split or
// merged after sealing, so a re-send carries exactly the same entries.
type chunk struct {
	id      string // base64 of 128 random bits; the "chunk" option
	seq     uint64 // seal order, to re-queue failed chunks in order
	tag     string
	entries []byte // concatenated msgpack [EventTime, record] entries
	payload []byte // what follows the bin header on the wire: entries, or their gzip
	head    []byte // [array header, tag, bin header]
	opt     []byte // the option map
	records int
	bytes   int  // len(entries): uncompressed entry bytes, for metrics and the window
	gzip    bool // forward.gzip when it was sealed
	batches []*pending
	last    *pending // the batch whose records were appended last
	times   []int64  // each record's own time, for the age histogram at delivery

	ts                 *tagState // the tag it was opened for
	prevOpen, nextOpen *chunk    // Forward.opened, while open
	flushing           bool      // queued in Forward.flushq ...
	flushAt            time.Time // ... to be sealed then (or once there is room)

	state      chunkState
	conn       *conn
	opened     time.Time
	written    time.Time // when the last write of it completed (ack latency)
	sends      int
	avoid      *server // the server it last failed on: prefer another one
	ackedEarly bool    // its ack came while the writer was still in Write
	mem        int     // bytes counted against queue_bytes
}

// newChunkID returns base64 of 128 random bits, as the Forward protocol asks.
func newChunkID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms (Go 1.24+ panics
		// itself); keep the id unique regardless.
		panic(fmt.Sprintf("forward: crypto/rand: %v", err))
	}
	return base64.StdEncoding.EncodeToString(b[:])
}

// encoder appends Forward entries. It keeps an EventTime to hand to msgp by
// pointer, so that encoding a record allocates nothing.
type encoder struct {
	et fluent.EventTime
}

// appendEntry appends [EventTime, {"log", "stream", "kubernetes"}] for r.
// kube is already msgpack (a map) and is appended as it is. The log is sent
// as valid UTF-8 (see appendStr).
func (e *encoder) appendEntry(b []byte, r *collector.Record, kube []byte) []byte {
	b = msgp.AppendArrayHeader(b, 2)
	e.et = fluent.EventTime(time.Unix(0, r.Time))
	// AppendExtension fails only when the extension's MarshalBinaryTo does;
	// EventTime's never does.
	b, _ = msgp.AppendExtension(b, &e.et)
	if len(kube) > 0 {
		b = msgp.AppendMapHeader(b, 3)
	} else {
		b = msgp.AppendMapHeader(b, 2)
	}
	b = msgp.AppendString(b, "log")
	b = appendStr(b, r.Log)
	b = msgp.AppendString(b, "stream")
	b = msgp.AppendString(b, r.Stream.String())
	if len(kube) > 0 {
		b = msgp.AppendString(b, "kubernetes")
		b = append(b, kube...)
	}
	return b
}

// frame builds the chunk's head and option map around its payload. Called
// once, before the first write, by the connection writer that owns the chunk.
func (c *chunk) frame(requireAck, gzipped bool) {
	c.head = msgp.AppendArrayHeader(c.head[:0], 3)
	c.head = msgp.AppendString(c.head, c.tag)
	c.head = msgp.AppendBytesHeader(c.head, uint32(len(c.payload)))
	n := uint32(1)
	if requireAck {
		n++
	}
	if gzipped {
		n++
	}
	c.opt = msgp.AppendMapHeader(c.opt[:0], n)
	c.opt = msgp.AppendString(c.opt, "size")
	c.opt = msgp.AppendInt(c.opt, c.records)
	if requireAck {
		c.opt = msgp.AppendString(c.opt, "chunk")
		c.opt = msgp.AppendString(c.opt, c.id)
	}
	if gzipped {
		c.opt = msgp.AppendString(c.opt, "compressed")
		c.opt = msgp.AppendString(c.opt, "gzip")
	}
}

// wireSize is the frame's size on the wire.
func (c *chunk) wireSize() int { return len(c.head) + len(c.payload) + len(c.opt) }

// bufPool recycles entry and payload buffers: batch-sized ones for busy
// tags, and power-of-two classes from 1 KiB for the rest, so that a quiet
// tag's chunk does not pin a batch-sized buffer (a node has hundreds of
// quiet tags) and a growing one is reused. It also recycles the chunks'
// record-time lists.
type bufPool struct {
	classes  [numClasses]sync.Pool // class k: cap >= minClass<<k
	large    sync.Pool             // cap >= largeCap
	largeCap int
	times    sync.Pool
}

const (
	minClass   = 1 << 10
	numClasses = 10 // 1 KiB .. 512 KiB
)

func newBufPool(batchBytes int) *bufPool {
	return &bufPool{largeCap: batchBytes + batchBytes/4 + 4<<10}
}

// get returns an empty buffer that holds at least size bytes (a batch-sized
// one for size >= largeCap).
func (p *bufPool) get(size int) []byte {
	if size >= p.largeCap || size > minClass<<(numClasses-1) {
		if b, ok := p.large.Get().(*[]byte); ok {
			if cap(*b) >= size {
				return (*b)[:0]
			}
			p.large.Put(b)
		}
		return make([]byte, 0, max(size, p.largeCap))
	}
	k := 0
	for minClass<<k < size {
		k++
	}
	if b, ok := p.classes[k].Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, minClass<<k)
}

func (p *bufPool) put(b []byte) {
	c := cap(b)
	switch {
	case c >= p.largeCap && c <= 2*p.largeCap:
		p.large.Put(&b)
	case c >= minClass && c < p.largeCap:
		k := 0
		for k+1 < numClasses && minClass<<(k+1) <= c {
			k++
		}
		p.classes[k].Put(&b)
	}
	// Larger ones (one giant record) go to the GC.
}

// ensure returns b, or a pooled copy of it, with room for n more bytes; the
// buffer it outgrew goes back to the pool.
func (p *bufPool) ensure(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := append(p.get(max(len(b)+n, 2*cap(b))), b...)
	p.put(b)
	return nb
}

func (p *bufPool) getTimes() []int64 {
	if t, ok := p.times.Get().(*[]int64); ok {
		return (*t)[:0]
	}
	return nil
}

func (p *bufPool) putTimes(t []int64) {
	if cap(t) > 0 {
		p.times.Put(&t)
	}
}

// entrySize bounds the encoded size of r's entry: its message, the metadata
// and the fixed fields (a message with invalid UTF-8 may need more; append
// grows the buffer then).
func entrySize(r *collector.Record, kube []byte) int {
	return len(r.Log) + len(kube) + 64
}

// appendWriter lets gzip write into a byte slice.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

var gzipPool = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // BestSpeed: CPU per record matters more than bytes on the wire
	return w
}}

// gzipInto compresses src onto dst (reusing its capacity).
func gzipInto(dst, src []byte) ([]byte, error) {
	zw := gzipPool.Get().(*gzip.Writer)
	defer gzipPool.Put(zw)
	aw := appendWriter{b: dst[:0]}
	zw.Reset(&aw)
	if _, err := zw.Write(src); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return aw.b, nil
}
