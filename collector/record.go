package collector

import (
	"context"
	"sync/atomic"
)

// Stream is the container output stream a record was written to.
type Stream uint8

const (
	Stdout Stream = iota
	Stderr
)

func (s Stream) String() string {
	if s == Stderr {
		return "stderr"
	}
	return "stdout"
}

// Record is one log record, as the container wrote it.
type Record struct {
	// Time is the event time from the runtime's header, in Unix nanoseconds.
	Time int64
	// Stream is stdout or stderr.
	Stream Stream
	// Log is the message without the runtime's header and without its trailing newline.
	// It may point into a buffer shared by the batch: treat it as read-only,
	// and do not keep it after the batch's Ack (the collector reuses the buffer).
	Log []byte
}

// Source says where a file's records come from. The collector fills it from the
// kubelet's paths (/var/log/pods/<ns>_<pod>_<uid>/<container>/N.log and the
// /var/log/containers/<pod>_<ns>_<container>-<id>.log link), so every record
// carries its origin even when the API server is unreachable. A Source is shared
// by every batch of a file and is never modified after the file is opened.
type Source struct {
	Path        string // the file under /var/log/pods
	Link        string // the /var/log/containers symlink, "" if none is known
	Namespace   string
	Pod         string
	PodUID      string
	Container   string
	ContainerID string // from the link's name, "" if unknown
	Node        string // the node this agent runs on
	// Kubernetes is the msgpack-encoded "kubernetes" map of the path metadata
	// (namespace_name, pod_name, pod_id, container_name, host, and container_id
	// when known), encoded once per file.
	Kubernetes []byte
}

// Batch is a run of consecutive records from one file. It is the unit that moves
// down the pipeline and is acknowledged: when every record in it has been
// delivered (or deliberately dropped and counted), the receiver calls Ack exactly
// once, and the collector may move that file's checkpoint past it.
type Batch struct {
	Source  *Source
	Records []Record
	// Kubernetes is the msgpack-encoded map to attach under the record's
	// "kubernetes" key. The collector sets it to Source.Kubernetes; enrich may
	// replace it with the pod's full metadata. Shared between batches: read-only.
	Kubernetes []byte
	// Bytes is the memory this batch holds against collector.buffer_bytes
	// until it is acknowledged: the copies its records own, and the read
	// buffer they point into (counted by the first batch pointing into it).
	Bytes int
	// CaughtUp says that when this batch was cut, no more records of its
	// file would follow soon: the file had nothing more to read, or the
	// collector's memory (collector.buffer_bytes) was full, so that its next
	// read waits for acknowledgements. An output may send what it holds for
	// the file's tag at once instead of waiting for its batch age, so that a
	// quiet node delivers fresh records quickly, and memory held by batches
	// waiting for their age does not stall reading.
	CaughtUp bool

	acked atomic.Bool
	ack   func()
}

// NewBatch returns a batch whose Ack calls ack. Mostly for tests of later
// pipeline stages; the collector builds its own.
func NewBatch(src *Source, recs []Record, bytes int, ack func()) *Batch {
	b := &Batch{Source: src, Records: recs, Bytes: bytes, ack: ack}
	if src != nil {
		b.Kubernetes = src.Kubernetes
	}
	return b
}

// Ack marks every record of the batch as delivered. Only the first call
// counts. After it the batch's Records must not be read: the collector
// reuses their memory.
func (b *Batch) Ack() {
	if b.acked.CompareAndSwap(false, true) && b.ack != nil {
		b.ack()
	}
}

// Acked reports whether Ack was called.
func (b *Batch) Acked() bool { return b.acked.Load() }

// Sink takes batches from the stage before it. Send may block to push back
// (the collector then stops reading); it returns an error only when ctx is done
// or the sink is closed. A sink that accepts a batch owns it: it must
// eventually call Ack, or drop it with a counted reason and call Ack.
type Sink interface {
	Send(ctx context.Context, b *Batch) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, b *Batch) error

func (f SinkFunc) Send(ctx context.Context, b *Batch) error { return f(ctx, b) }
