package output

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logagent/logagent/collector"
	"github.com/logagent/logagent/output/forwardtest"
	dto "github.com/prometheus/client_model/go"
)

// caughtUp makes a batch of n records whose file had nothing more to read.
func (fd *feeder) caughtUp(n int) (*collector.Batch, []string) {
	b, logs := fd.batch(n)
	b.CaughtUp = true
	return b, logs
}

func (fd *feeder) accept(logs []string) {
	fd.mu.Lock()
	fd.expected = append(fd.expected, logs...)
	fd.sent++
	fd.mu.Unlock()
}

// TestCaughtUpSentWithoutWaitingForAge: with batch_age an hour, a batch whose
// file has caught up is delivered at once, and one whose file has more to
// read stays open, taking records.
func TestCaughtUpSentWithoutWaitingForAge(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	cfg := testConfig(r.Addr())
	cfg.BatchAge = time.Hour
	cfg.BatchBytes = 1 << 20
	h := startForward(t, cfg)
	waitFor(t, 10*time.Second, "connected", func() bool { return h.f.Ready() == nil })

	fresh := newFeeder(1, 10)
	b, logs := fresh.caughtUp(3)
	if err := h.f.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	fresh.accept(logs)
	waitFor(t, 10*time.Second, "the caught-up batch acknowledged", fresh.allAcked)

	busy := &feeder{perLine: 10, sources: []*collector.Source{testSource(7)}, next: 1000000}
	busy.sendN(t, h.f, 5, 3) // not caught up
	h.f.mu.Lock()
	open := h.f.opened.head
	h.f.mu.Unlock()
	if open == nil || open.records != 15 {
		t.Fatalf("open chunk %+v, want the busy file's 15 records waiting in it", open)
	}
	if tally.Frames() != 1 {
		t.Errorf("%d frames, want only the caught-up one", tally.Frames())
	}
	// Its file catches up: the records go, in one frame.
	b, logs = busy.caughtUp(1)
	if err := h.f.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	busy.accept(logs)
	waitFor(t, 10*time.Second, "the rest acknowledged", busy.allAcked)
	if tally.Frames() != 2 {
		t.Errorf("%d frames, want 2: the busy file's 16 records together", tally.Frames())
	}
	if dups, problems := tally.Check(append(fresh.want(), busy.want()...)); dups != 0 || len(problems) > 0 {
		t.Errorf("%d duplicates, %v", dups, problems)
	}
}

// TestCaughtUpWaitsForRoom: while the window is full, a caught-up tag's
// chunk keeps taking records; it goes, whole, once an ack frees room. So
// batches stay large under load and small when the output is idle.
func TestCaughtUpWaitsForRoom(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	r.HoldAcks()
	cfg := testConfig(r.Addr())
	cfg.BatchAge = time.Hour
	cfg.BatchBytes = 1 << 20
	cfg.WindowBytes = 1 // one frame in flight at a time
	h := startForward(t, cfg)
	waitFor(t, 10*time.Second, "connected", func() bool { return h.f.Ready() == nil })
	fd := newFeeder(1, 10)
	for i := range 20 {
		b, logs := fd.caughtUp(2)
		if err := h.f.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		fd.accept(logs)
		if i == 0 {
			waitFor(t, 10*time.Second, "the first frame", func() bool { return r.Held() == 1 })
		}
	}
	if r.Frames() != 1 {
		t.Fatalf("%d frames with the window full, want 1", r.Frames())
	}
	r.ReleaseAcks(false)
	waitFor(t, 10*time.Second, "the second frame", func() bool { return tally.Frames() == 2 })
	rc := tally.Receipts()
	if len(rc[0].Events) != 2 || len(rc[1].Events) != 38 {
		t.Errorf("frames of %d and %d records, want 2 and then the 38 that came while the window was full",
			len(rc[0].Events), len(rc[1].Events))
	}
	r.ReleaseAcks(false)
	waitFor(t, 10*time.Second, "all acknowledged", fd.allAcked)
	checkTally(t, tally, fd)
}

// TestManyWaitingSendsAllDelivered: hundreds of files block on a full output
// while no server is up; when one comes up every batch is delivered. Waiting
// Sends are woken one at a time: never more than one is woken and not yet
// running.
func TestManyWaitingSendsAllDelivered(t *testing.T) {
	skipShort(t)
	addr := freeAddr(t)
	cfg := testConfig(addr)
	cfg.QueueBytes = 64 << 10
	h := startForward(t, cfg)
	const files = 200
	fd := newFeeder(files, 50)
	var wg sync.WaitGroup
	errs := make(chan error, files)
	for i := range files {
		wg.Go(func() {
			src := fd.sources[i]
			for j := range 5 {
				logs := []string{fmt.Sprintf("file %d line %d %s", i, j, strings.Repeat("y", 50))}
				recs := []collector.Record{{Time: time.Now().UnixNano(), Log: []byte(logs[0])}}
				b := collector.NewBatch(src, recs, 60, func() { fd.acked.Add(1); fd.ackedRec.Add(1) })
				b.CaughtUp = true
				if err := h.f.Send(context.Background(), b); err != nil {
					errs <- err
					return
				}
				fd.accept(logs)
			}
		})
	}
	waitFor(t, 10*time.Second, "Sends waiting for space", func() bool {
		h.f.mu.Lock()
		defer h.f.mu.Unlock()
		return h.f.waiters.len() > files/2
	})
	tally := &forwardtest.Tally{}
	startReceiver(t, addr, forwardtest.Config{}, tally)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	maxWoken := 0
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(time.Millisecond):
		}
		h.f.mu.Lock()
		woken := 0
		for _, w := range h.f.waiters.q {
			if w.woken {
				woken++
			}
		}
		h.f.mu.Unlock()
		maxWoken = max(maxWoken, woken)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	closeForward(t, h.f)
	if dups := checkTally(t, tally, fd); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if maxWoken > 1 {
		t.Errorf("%d waiting Sends woken at once, want one at a time", maxWoken)
	}
}

// TestRecordAgeHistogram: each delivered record counts once, at its age:
// acknowledgement time minus its own time.
func TestRecordAgeHistogram(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	h := startForward(t, testConfig(r.Addr()))
	fd := newFeeder(2, 10)
	old, logs := fd.caughtUp(30)
	for i := range old.Records {
		old.Records[i].Time = time.Now().Add(-3 * time.Second).UnixNano() // between 2.5 s and 5 s old
	}
	future, logs2 := fd.caughtUp(5)
	for i := range future.Records {
		future.Records[i].Time = time.Now().Add(time.Hour).UnixNano() // a skewed clock: age 0
	}
	for _, b := range []*collector.Batch{old, future} {
		if err := h.f.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	fd.accept(logs)
	fd.accept(logs2)
	waitFor(t, 10*time.Second, "acks", fd.allAcked)
	checkTally(t, tally, fd)

	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var hist *dto.Histogram
	for _, mf := range mfs {
		if mf.GetName() == "logagent_output_record_age_seconds" {
			m := mf.GetMetric()[0]
			if l := m.GetLabel(); len(l) != 1 || l[0].GetName() != "output" || l[0].GetValue() != "forward" {
				t.Errorf("labels %v, want output=forward", l)
			}
			hist = m.GetHistogram()
		}
	}
	if hist == nil {
		t.Fatal("logagent_output_record_age_seconds not registered")
	}
	if hist.GetSampleCount() != 35 {
		t.Errorf("count %d, want 35", hist.GetSampleCount())
	}
	for _, b := range hist.GetBucket() {
		want := uint64(5) // the skewed ones, age 0
		if b.GetUpperBound() >= 5 {
			want = 35
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if s := hist.GetSampleSum(); s < 30*3 || s > 30*5 {
		t.Errorf("sum %v s, want about 30 × 3 s", s)
	}
}

// TestIdleOutputSleeps: once everything is delivered, the output schedules
// no wake-up at all (no ticker): an idle node costs it nothing.
func TestIdleOutputSleeps(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	cfg := testConfig(r.Addr())
	cfg.AckTimeout = 400 * time.Millisecond // ack checks every 50 ms while anything is in flight
	h := startForward(t, cfg)
	fd := newFeeder(3, 10)
	fd.sendN(t, h.f, 6, 5) // not caught up: sealed by age
	waitFor(t, 10*time.Second, "acks", fd.allAcked)
	waitFor(t, 10*time.Second, "no wake-up scheduled", func() bool {
		h.f.mu.Lock()
		defer h.f.mu.Unlock()
		return h.f.timerAt.IsZero() && h.f.opened.head == nil && h.f.inFlight == 0
	})
	checkTally(t, tally, fd)
}
