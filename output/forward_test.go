package output

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/logagent/logagent/collector"
	"github.com/logagent/logagent/output/forwardtest"
	"github.com/tinylib/msgp/msgp"
)

func TestForwardDeliversEveryRecord(t *testing.T) {
	skipShort(t)
	for _, tc := range []struct {
		name       string
		gzip, ack  bool
		batchBytes int
	}{
		{"packed+ack", false, true, 4 << 10},
		{"gzip+ack", true, true, 4 << 10},
		{"packed no ack", false, false, 4 << 10},
		{"gzip no ack", true, false, 4 << 10},
		{"one chunk holds many batches", false, true, 256 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tally := &forwardtest.Tally{}
			r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
			cfg := testConfig(r.Addr())
			cfg.Gzip, cfg.RequireAck, cfg.BatchBytes = tc.gzip, tc.ack, tc.batchBytes
			h := startForward(t, cfg)
			fd := newFeeder(3, 100)
			fd.sendN(t, h.f, 60, 50) // 3000 records, ~400 KB
			waitFor(t, 20*time.Second, "all batches acknowledged", fd.allAcked)
			if !tc.ack {
				// Delivered means written: the receiver may still be reading.
				waitFor(t, 10*time.Second, "the receiver to read everything", func() bool { return tally.Distinct() == 3000 })
			}
			if dups := checkTally(t, tally, fd); dups != 0 {
				t.Errorf("%d duplicates without any failure", dups)
			}
			receipts := tally.Receipts()
			for _, rc := range receipts {
				if rc.Compressed != tc.gzip {
					t.Fatalf("frame compressed=%v, want %v", rc.Compressed, tc.gzip)
				}
				if (rc.Chunk != "") != tc.ack {
					t.Fatalf("frame chunk option %q with require_ack=%v", rc.Chunk, tc.ack)
				}
				if !strings.HasPrefix(rc.Tag, "kube.var.log.containers.pod") || !strings.HasSuffix(rc.Tag, ".log") {
					t.Fatalf("tag %q does not follow the kube.* convention", rc.Tag)
				}
			}
			if got := h.metric(h.f.m.recordsAcked); got != 3000 {
				t.Errorf("records_acked_total = %v, want 3000", got)
			}
			if got := h.metric(h.f.m.queuedBytes); got != 0 {
				t.Errorf("queued_bytes = %v after everything was delivered, want 0", got)
			}
			if got := h.metric(h.f.m.inFlight); got != 0 {
				t.Errorf("batches_in_flight = %v after everything was delivered", got)
			}
		})
	}
}

func TestForwardRecordContent(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	h := startForward(t, testConfig(r.Addr()))
	fd := newFeeder(1, 0)
	b, logs := fd.batch(2)
	b.Records[0].Time = 1700000000123456789
	b.Records[1].Time = 4102444800000000001 // 2100-01-01: beyond int32 seconds
	if err := h.f.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	fd.expected, fd.sent = logs, 1
	waitFor(t, 10*time.Second, "ack", fd.allAcked)
	rc := tally.Receipts()
	if len(rc) != 1 || len(rc[0].Events) != 2 {
		t.Fatalf("got %d frames, want 1 with 2 events", len(rc))
	}
	ev := rc[0].Events
	if got := ev[0].Time.UnixNano(); got != 1700000000123456789 {
		t.Errorf("EventTime = %d, want nanoseconds kept (1700000000123456789)", got)
	}
	// The receiver decodes EventTime's seconds as int32, as fluent-logger-golang does:
	// the wire carries uint32 seconds, so compare the low 32 bits.
	if got := uint32(ev[1].Time.Unix()); got != uint32(4102444800) {
		t.Errorf("EventTime seconds after 2038 = %d, want %d (uint32 on the wire)", got, uint32(4102444800))
	}
	if ev[0].Log != logs[0] || ev[0].Stream != "stdout" || ev[1].Stream != "stderr" {
		t.Errorf("events = %+v", ev)
	}
	m, _, err := msgp.ReadMapStrIntfBytes(ev[0].Kubernetes, nil)
	if err != nil || m["pod_name"] != "pod0" || m["namespace_name"] != "ns0" {
		t.Errorf("kubernetes = %v (%v), want the source's map", m, err)
	}
	want := "kube.var.log.containers.pod0_ns0_app-" + strings.Repeat("0", 64) + ".log"
	if rc[0].Tag != want {
		t.Errorf("tag = %q, want %q", rc[0].Tag, want)
	}
}

func TestAcksWithheldThenGiven(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	r.HoldAcks()
	cfg := testConfig(r.Addr())
	// Chunks sealed by size only (4 KiB and a record more): three fill the window.
	cfg.WindowBytes = 3 * cfg.BatchBytes
	cfg.BatchAge = time.Hour
	h := startForward(t, cfg)
	fd := newFeeder(2, 200)
	fd.sendN(t, h.f, 40, 20) // ~190 KB: far more than 3 chunks of 4 KiB
	waitFor(t, 10*time.Second, "a full window of frames held", func() bool { return r.Held() == 3 })
	if got := fd.acked.Load(); got != 0 {
		t.Fatalf("%d batches acknowledged while every ack is withheld", got)
	}
	if got := h.metric(h.f.m.inFlight); got != 3 {
		t.Errorf("batches_in_flight = %v, want the window (3 chunks)", got)
	}
	if r.Frames() != 3 {
		t.Errorf("receiver got %d frames, want no more than the window (3)", r.Frames())
	}
	r.ReleaseAcks(false)
	closeForward(t, h.f) // seals the last open chunks and waits for every ack
	if dups := checkTally(t, tally, fd); dups != 0 {
		t.Errorf("%d duplicates though every ack arrived within ack_timeout", dups)
	}
}

func TestAcksOutOfOrder(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	cfg := testConfig(r.Addr())
	cfg.WindowBytes = 8 * cfg.BatchBytes // eight chunks sealed by size
	cfg.BatchAge = time.Hour
	h := startForward(t, cfg)
	fd := newFeeder(4, 200)
	for round := range 5 {
		r.HoldAcks()
		fd.sendN(t, h.f, 20, 20) // ~29 chunks: a backlog beyond the window
		waitFor(t, 10*time.Second, "a full window held", func() bool { return r.Held() == 8 })
		before := fd.acked.Load()
		r.ReleaseAcks(true) // newest first
		waitFor(t, 20*time.Second, "batches acknowledged", func() bool { return fd.acked.Load() > before })
		t.Logf("round %d: %d batches acknowledged", round, fd.acked.Load())
	}
	closeForward(t, h.f)
	if dups := checkTally(t, tally, fd); dups != 0 {
		t.Errorf("%d duplicates: reversed acks must be matched by id, not treated as failures", dups)
	}
	if got := h.metric(h.f.m.retries.WithLabelValues(r.Addr(), reasonAckTimeout)); got != 0 {
		t.Errorf("retries = %v, want 0", got)
	}
}

func TestAckTimeoutResendsOnlyLostAcks(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	r.HoldAcks()
	cfg := testConfig(r.Addr())
	cfg.AckTimeout = 300 * time.Millisecond
	h := startForward(t, cfg)
	fd := newFeeder(1, 100)
	fd.sendN(t, h.f, 5, 10)
	retries := h.f.m.retries.WithLabelValues(r.Addr(), reasonAckTimeout)
	waitFor(t, 10*time.Second, "an ack timeout", func() bool { return h.metric(retries) >= 1 })
	// Release the acks once the receiver has seen that connection end, so
	// that it does not count them as delivered: they are lost.
	waitFor(t, 10*time.Second, "the receiver to see the connection closed", func() bool { return r.Ended() >= 1 })
	r.ReleaseAcks(false)
	waitFor(t, 20*time.Second, "all batches acknowledged", fd.allAcked)
	dups := checkTally(t, tally, fd)
	if dups == 0 {
		t.Errorf("no duplicates, though acks were withheld past ack_timeout (the receiver saw %d frames)", r.Frames())
	}
	if got := h.metric(h.f.m.errors.WithLabelValues(r.Addr(), reasonAckTimeout)); got < 1 {
		t.Errorf("errors{reason=ack_timeout} = %v", got)
	}
	if n := h.logs.count("reason=ack_timeout"); n < 1 {
		t.Errorf("no error log line for the ack timeout:\n%s", h.logs)
	}
}

func TestConnectionResetAfterBatch(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	r.ResetAfter(3)
	h := startForward(t, testConfig(r.Addr()))
	fd := newFeeder(2, 200)
	fd.sendN(t, h.f, 50, 20)
	waitFor(t, 20*time.Second, "all batches acknowledged", fd.allAcked)
	checkTally(t, tally, fd)
	if r.Connections() < 2 {
		t.Errorf("%d connections: the client did not reconnect after the reset", r.Connections())
	}
	// The reset is seen by the reader, or by a write that was under way.
	read, write := h.metric(h.f.m.errors.WithLabelValues(r.Addr(), reasonRead)), h.metric(h.f.m.errors.WithLabelValues(r.Addr(), reasonWrite))
	if read+write < 1 {
		t.Errorf("errors{reason=read} = %v, errors{reason=write} = %v after a reset", read, write)
	}
}

func TestOneOfTwoServersDown(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	up := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	downAddr := freeAddr(t)
	h := startForward(t, testConfig(up.Addr(), downAddr))
	fd := newFeeder(3, 100)
	fd.sendN(t, h.f, 30, 20)
	waitFor(t, 20*time.Second, "all batches acknowledged", fd.allAcked)
	if got := h.metric(h.f.m.errors.WithLabelValues(downAddr, reasonDial)); got < 1 {
		t.Errorf("errors{server=down,reason=dial} = %v", got)
	}
	if got := h.metric(h.f.m.serverUp.WithLabelValues(downAddr)); got != 0 {
		t.Errorf("server_up{down} = %v", got)
	}
	if h.f.Ready() != nil {
		t.Errorf("Ready: %v with one server up", h.f.Ready())
	}

	// The second server comes up: traffic is spread over both.
	second := startReceiver(t, downAddr, forwardtest.Config{}, tally)
	waitFor(t, 10*time.Second, "second server up", func() bool {
		return h.metric(h.f.m.serverUp.WithLabelValues(downAddr)) == 1
	})
	before := up.Frames()
	fd.sendN(t, h.f, 60, 20)
	waitFor(t, 20*time.Second, "all batches acknowledged", fd.allAcked)
	if second.Frames() == 0 || up.Frames() == before {
		t.Errorf("frames after both up: first %d, second %d; want round-robin over both", up.Frames()-before, second.Frames())
	}
	if dups := checkTally(t, tally, fd); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

func TestStandbyOnlyWhenPrimariesDown(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	primary := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	standby := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	primaryAddr := primary.Addr()
	cfg := testConfig(primaryAddr)
	cfg.Servers = append(cfg.Servers, Server{Address: standby.Addr(), Standby: true})
	h := startForward(t, cfg)
	fd := newFeeder(2, 100)
	waitFor(t, 10*time.Second, "both connected", func() bool {
		return h.metric(h.f.m.serverUp.WithLabelValues(standby.Addr())) == 1 &&
			h.metric(h.f.m.serverUp.WithLabelValues(primaryAddr)) == 1
	})
	fd.sendN(t, h.f, 20, 20)
	waitFor(t, 20*time.Second, "acknowledged by the primary", fd.allAcked)
	if standby.Frames() != 0 {
		t.Fatalf("standby got %d frames while the primary was up", standby.Frames())
	}

	primary.Close()
	waitFor(t, 10*time.Second, "primary down", func() bool {
		return h.metric(h.f.m.serverUp.WithLabelValues(primaryAddr)) == 0
	})
	fd.sendN(t, h.f, 20, 20)
	waitFor(t, 20*time.Second, "acknowledged by the standby", fd.allAcked)
	if standby.Frames() == 0 {
		t.Fatal("standby got nothing while the primary was down")
	}

	primary2 := startReceiver(t, primaryAddr, forwardtest.Config{}, tally)
	waitFor(t, 10*time.Second, "primary back", func() bool {
		return h.metric(h.f.m.serverUp.WithLabelValues(primaryAddr)) == 1
	})
	standbyFrames := standby.Frames()
	fd.sendN(t, h.f, 20, 20)
	waitFor(t, 20*time.Second, "acknowledged by the primary again", fd.allAcked)
	if primary2.Frames() == 0 || standby.Frames() != standbyFrames {
		t.Errorf("after the primary came back: primary %d frames, standby %d more; want all on the primary",
			primary2.Frames(), standby.Frames()-standbyFrames)
	}
	if dups := checkTally(t, tally, fd); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

func TestReceiverKilledAndRestartedMidStream(t *testing.T) {
	skipShort(t)
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "packed", true: "gzip"}[gz], func(t *testing.T) {
			tally := &forwardtest.Tally{}
			r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
			addr := r.Addr()
			cfg := testConfig(addr)
			cfg.Gzip = gz
			cfg.QueueBytes = 256 << 10 // small: the sender blocks while the receiver is down
			h := startForward(t, cfg)
			fd := newFeeder(4, 150)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sent := make(chan error, 1)
			stop := make(chan struct{})
			go func() {
				for {
					select {
					case <-stop:
						sent <- nil
						return
					default:
					}
					if err := fd.send(ctx, t, h.f, 25); err != nil {
						sent <- err
						return
					}
				}
			}()
			for kill := range 3 {
				waitFor(t, 20*time.Second, "frames flowing", func() bool { return r.Frames() >= 10 })
				r.Close()
				waitFor(t, 10*time.Second, "the client to see the server down", func() bool {
					return h.metric(h.f.m.errors.WithLabelValues(addr, reasonDial)) >= float64(kill+1)
				})
				r = startReceiver(t, addr, forwardtest.Config{}, tally)
			}
			waitFor(t, 20*time.Second, "frames flowing after the last restart", func() bool { return r.Frames() >= 10 })
			close(stop)
			if err := <-sent; err != nil {
				t.Fatalf("send: %v", err)
			}
			waitFor(t, 30*time.Second, "all batches acknowledged", fd.allAcked)
			dups := checkTally(t, tally, fd)
			t.Logf("%d records, %d duplicates after 3 kills", len(fd.want()), dups)
		})
	}
}

func TestBackpressureWhenAllServersDown(t *testing.T) {
	skipShort(t)
	addr := freeAddr(t)
	cfg := testConfig(addr)
	cfg.QueueBytes = 64 << 10
	h := startForward(t, cfg)
	fd := newFeeder(2, 200)
	blocked := false
	for range 1000 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := fd.send(ctx, t, h.f, 20)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			blocked = true
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !blocked {
		t.Fatal("Send never blocked with every server down")
	}
	if q := h.metric(h.f.m.queuedBytes); q < float64(cfg.QueueBytes) {
		t.Errorf("queued_bytes = %v when Send blocks, want >= queue_bytes %d", q, cfg.QueueBytes)
	}
	if fd.acked.Load() != 0 {
		t.Fatal("batches acknowledged with no server")
	}

	tally := &forwardtest.Tally{}
	startReceiver(t, addr, forwardtest.Config{}, tally)
	waitFor(t, 20*time.Second, "every accepted batch acknowledged", fd.allAcked)
	if dups := checkTally(t, tally, fd); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	// And Send flows again.
	fd.sendN(t, h.f, 10, 20)
	waitFor(t, 20*time.Second, "new batches acknowledged", fd.allAcked)
}

func TestBatchSplitAcrossChunksAckedOnce(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	r.HoldAcks()
	cfg := testConfig(r.Addr())
	cfg.WindowBytes = 4 * cfg.BatchBytes // four chunks sealed by size
	h := startForward(t, cfg)
	fd := newFeeder(1, 1000)
	fd.sendN(t, h.f, 1, 20) // ~20 KB in 4 KiB chunks: 5+ chunks
	waitFor(t, 10*time.Second, "the window held", func() bool { return r.Held() == 4 })
	if fd.acked.Load() != 0 {
		t.Fatal("batch acknowledged before all of its chunks were")
	}
	r.ReleaseAcks(true)
	waitFor(t, 10*time.Second, "batch acknowledged", fd.allAcked)
	if tally.Frames() < 5 {
		t.Errorf("%d frames, want the batch split over >= 5", tally.Frames())
	}
	checkTally(t, tally, fd)
}

func TestCloseFlushesAndWaits(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	cfg := testConfig(r.Addr())
	cfg.BatchAge = time.Hour
	cfg.BatchBytes = 1 << 20
	h := startForward(t, cfg)
	fd := newFeeder(3, 10)
	fd.sendN(t, h.f, 3, 5)
	if tally.Frames() != 0 {
		t.Fatalf("frames sent before batch_age or batch_bytes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.f.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !fd.allAcked() {
		t.Fatal("Close returned before every batch was acknowledged")
	}
	checkTally(t, tally, fd)
	if err := fd.send(context.Background(), t, h.f, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
}

func TestCloseGivesUpAtDeadline(t *testing.T) {
	skipShort(t)
	h := startForward(t, testConfig(freeAddr(t)))
	fd := newFeeder(1, 10)
	fd.sendN(t, h.f, 2, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := h.f.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "10 records") {
		t.Fatalf("Close with no server = %v, want a deadline error naming 10 records", err)
	}
	if fd.acked.Load() != 0 {
		t.Error("undelivered batches acknowledged")
	}
}

func TestReady(t *testing.T) {
	skipShort(t)
	addr := freeAddr(t)
	cfg := testConfig(addr)
	cfg.ReadyTimeout = 50 * time.Millisecond
	h := startForward(t, cfg)
	waitFor(t, 10*time.Second, "a failed dial", func() bool {
		return h.metric(h.f.m.errors.WithLabelValues(addr, reasonDial)) >= 1
	})
	if err := h.f.Ready(); err == nil || !strings.Contains(err.Error(), "no server reached yet") || !strings.Contains(err.Error(), "dial") {
		t.Errorf("Ready = %v, want it to name the cause", err)
	}
	r := startReceiver(t, addr, forwardtest.Config{}, &forwardtest.Tally{})
	waitFor(t, 10*time.Second, "ready", func() bool { return h.f.Ready() == nil })
	r.Close()
	waitFor(t, 10*time.Second, "not ready once ready_timeout has passed without a server", func() bool { return h.f.Ready() != nil })
	if err := h.f.Ready(); !strings.Contains(err.Error(), "no server reachable for") {
		t.Errorf("Ready = %v, want how long no server was reachable", err)
	}
}

// TestNotReadyUntilFirstConnection: /readyz fails at once while no server
// has ever been reached, not only after ready_timeout (issue 13), and a
// server lost later is given ready_timeout before readiness fails.
func TestNotReadyUntilFirstConnection(t *testing.T) {
	skipShort(t)
	addr := freeAddr(t)
	cfg := testConfig(addr)
	cfg.ReadyTimeout = time.Hour
	f, err := NewForward(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Ready(); err == nil || !strings.Contains(err.Error(), "no server reached yet") {
		t.Fatalf("Ready before Run = %v, want an error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := f.Ready(); err == nil {
		t.Fatal("ready with nothing listening, long before ready_timeout")
	}
	r := startReceiver(t, addr, forwardtest.Config{}, &forwardtest.Tally{})
	waitFor(t, 10*time.Second, "ready", func() bool { return f.Ready() == nil })
	r.Close()
	waitFor(t, 10*time.Second, "the connection lost", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.conns) == 0
	})
	if err := f.Ready(); err != nil {
		t.Errorf("Ready = %v within ready_timeout of the last connection", err)
	}
}

func TestSendHonoursContextAndEmptyBatches(t *testing.T) {
	f, err := NewForward(testConfig("127.0.0.1:1"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fd := newFeeder(1, 0)
	b, _ := fd.batch(0)
	if err := f.Send(context.Background(), b); err != nil || !b.Acked() {
		t.Fatalf("empty batch: err %v, acked %v; want accepted and acknowledged", err, b.Acked())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b, _ = fd.batch(1)
	if err := f.Send(ctx, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a done context = %v", err)
	}
	if err := f.Close(context.Background()); err != nil {
		t.Fatalf("Close with nothing pending: %v", err)
	}
}

func TestInvalidMetadataIsLeftOutNotFatal(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	h := startForward(t, testConfig(r.Addr()))
	fd := newFeeder(1, 10)
	good, goodLogs := fd.batch(3)
	bad, badLogs := fd.batch(3)
	bad.Kubernetes = []byte{0x83, 0xa1} // a truncated map
	for _, b := range []*collector.Batch{good, bad} {
		if err := h.f.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	fd.expected, fd.sent = append(goodLogs, badLogs...), 2
	waitFor(t, 10*time.Second, "acks", fd.allAcked)
	checkTally(t, tally, fd)
	if got := h.metric(h.f.m.badMetadata); got != 3 {
		t.Errorf("records_without_metadata_total = %v, want 3", got)
	}
	if h.logs.count("not one msgpack map") != 1 {
		t.Errorf("want one warning:\n%s", h.logs)
	}
	for _, rc := range tally.Receipts() {
		for _, ev := range rc.Events {
			if strings.HasPrefix(ev.Log, "rec-0000003") || strings.HasPrefix(ev.Log, "rec-0000004") || strings.HasPrefix(ev.Log, "rec-0000005") {
				if ev.Kubernetes != nil {
					t.Errorf("%q carries the invalid metadata", ev.Log)
				}
			} else if ev.Kubernetes == nil {
				t.Errorf("%q lost its valid metadata", ev.Log)
			}
		}
	}
}

func TestServerByHostName(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	_, port, _ := net.SplitHostPort(r.Addr())
	h := startForward(t, testConfig(net.JoinHostPort("localhost", port)))
	fd := newFeeder(1, 10)
	fd.sendN(t, h.f, 5, 10)
	waitFor(t, 10*time.Second, "acks", fd.allAcked)
	checkTally(t, tally, fd)
}

func TestAckTimeoutResendsToAnotherServer(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	mute := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	mute.HoldAcks() // takes frames, never acks
	good := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	cfg := testConfig(mute.Addr(), good.Addr())
	cfg.AckTimeout = 200 * time.Millisecond
	h := startForward(t, cfg)
	waitFor(t, 10*time.Second, "both connected", func() bool {
		return h.metric(h.f.m.serverUp.WithLabelValues(mute.Addr())) == 1 && h.metric(h.f.m.serverUp.WithLabelValues(good.Addr())) == 1
	})
	fd := newFeeder(2, 100)
	fd.sendN(t, h.f, 40, 20)
	waitFor(t, 30*time.Second, "every batch acknowledged by the server that acks", fd.allAcked)
	if mute.Frames() == 0 {
		t.Fatal("round-robin never used the mute server")
	}
	if got := h.metric(h.f.m.retries.WithLabelValues(mute.Addr(), reasonAckTimeout)); got < 1 {
		t.Errorf("retries{mute, ack_timeout} = %v", got)
	}
	checkTally(t, tally, fd)
}
