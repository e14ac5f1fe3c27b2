package forwardtest

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Event is one decoded Forward entry.
type Event struct {
	Time       time.Time
	Log        string
	Stream     string
	Kubernetes []byte // the raw msgpack value of the "kubernetes" key, nil if absent; shared, read-only
}

// Receipt is one frame as a receiver took it in.
type Receipt struct {
	Tag        string
	Chunk      string // the "chunk" option, "" without one
	Compressed bool
	Events     []Event
	// Acked is set once the ack was written back.
	Acked bool
	// ConnKilled is set when the receiver closed the frame's connection on
	// purpose (reset, Close): an ack written just before may never reach the client.
	ConnKilled bool
}

// Tally collects what one or more receivers took in. Share one Tally between
// a receiver and its restarted successor to count a whole run.
type Tally struct {
	// CountOnly skips decoding records and keeps no receipts: for benchmarks.
	CountOnly bool
	// Observe, when set, is called for every entry received (CountOnly or
	// not) with the time its frame arrived, before the frame is acknowledged.
	// Receivers call it from one goroutine per connection: it must be safe
	// for concurrent use. ev is only valid during the call.
	Observe func(arrived time.Time, ev *Event)

	mu       sync.Mutex
	records  int
	frames   int
	invalid  int
	errs     []string
	receipts []*Receipt
	counts   map[string]int
	changed  chan struct{}
}

func (t *Tally) add(r *Receipt, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.records += n
	t.frames++
	if !t.CountOnly {
		t.receipts = append(t.receipts, r)
		if t.counts == nil {
			t.counts = make(map[string]int)
		}
		for _, e := range r.Events {
			t.counts[e.Log]++
		}
	}
	t.notifyLocked()
}

func (t *Tally) invalidEntry(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.invalid++
	if len(t.errs) < 10 {
		t.errs = append(t.errs, fmt.Sprintf(format, args...))
	}
	t.notifyLocked()
}

func (t *Tally) notifyLocked() {
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
}

// Changed returns a channel closed at the next change.
func (t *Tally) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
	return t.changed
}

// Records is the number of entries received, duplicates included.
func (t *Tally) Records() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.records
}

// Frames is the number of frames received.
func (t *Tally) Frames() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.frames
}

// Invalid is the number of entries or frames that did not follow the spec, and
// the first errors.
func (t *Tally) Invalid() (int, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.invalid, append([]string(nil), t.errs...)
}

// Count is how often a record with this log was received.
func (t *Tally) Count(log string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts[log]
}

// Distinct is the number of distinct logs received.
func (t *Tally) Distinct() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.counts)
}

// Receipts returns copies of the receipts so far.
func (t *Tally) Receipts() []Receipt {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Receipt, len(t.receipts))
	for i, r := range t.receipts {
		out[i] = *r
	}
	return out
}

func (t *Tally) markAcked(r *Receipt) {
	t.mu.Lock()
	r.Acked = true
	t.mu.Unlock()
}

func (t *Tally) markKilled(rs []*Receipt) {
	t.mu.Lock()
	for _, r := range rs {
		r.ConnKilled = true
	}
	t.mu.Unlock()
}

// Check verifies a run: every expected log arrived, nothing else did, every
// entry was valid, and every duplicate is explained by a frame whose ack was
// lost (not written, or its connection killed by the receiver). It returns
// the number of duplicate records and a description of each violation.
func (t *Tally) Check(expected []string) (duplicates int, problems []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.invalid > 0 {
		problems = append(problems, fmt.Sprintf("%d invalid entries, first: %v", t.invalid, t.errs))
	}
	want := make(map[string]bool, len(expected))
	missing := 0
	for _, l := range expected {
		want[l] = true
		if t.counts[l] == 0 {
			missing++
			if missing <= 5 {
				problems = append(problems, fmt.Sprintf("lost: %q", l))
			}
		}
	}
	if missing > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d records lost", missing, len(expected)))
	}
	// Occurrences of each log in frames whose ack may have been lost.
	lostAck := make(map[string]int)
	for _, r := range t.receipts {
		if !r.Acked || r.ConnKilled {
			for _, e := range r.Events {
				lostAck[e.Log]++
			}
		}
	}
	var unexplained []string
	for l, n := range t.counts {
		if !want[l] {
			problems = append(problems, fmt.Sprintf("unexpected record %q", l))
			continue
		}
		if n > 1 {
			duplicates += n - 1
			if lostAck[l] < n-1 {
				unexplained = append(unexplained, l)
			}
		}
	}
	if len(unexplained) > 0 {
		sort.Strings(unexplained)
		problems = append(problems, fmt.Sprintf("%d records duplicated though their acks were delivered, e.g. %q",
			len(unexplained), unexplained[0]))
	}
	return duplicates, problems
}
