// Package output delivers log records to Fluentd-compatible receivers over the
// Forward protocol v1 (PackedForward frames, optionally gzip-compressed, with
// acknowledgements, TLS and the shared-key handshake).
package output

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logagent/logagent/collector"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tinylib/msgp/msgp"
)

// ErrClosed is returned by Send once Close has been called.
var ErrClosed = errors.New("forward output closed")

// tagState is a tag's open chunk and a hint for sizing the next one.
type tagState struct {
	tag  string
	open *chunk
	next int // buffer size for its next chunk: the last one's, or batch-sized once one filled up
	// kubeOK is the metadata last checked to be one msgpack map: enrich and
	// the collector share one map per pod or file, so it is checked once.
	kubeOK []byte
}

// Forward is the Forward-protocol output: a collector.Sink that packs records
// into one open chunk per tag, sends sealed chunks round-robin over the
// healthy servers with a window of bytes in flight per connection, and
// acknowledges the input batches once every chunk holding their records is
// acknowledged by a server.
//
// A tag's chunk is sealed when it reaches batch_bytes, when it is batch_age
// old (the open chunks are kept in opening order, so only those due are
// looked at), or, for freshness, as soon as the collector has caught up with
// the tag's file (Batch.CaughtUp) and a connection has room in its window;
// without room it waits in line (flushq) and is sealed when room frees, while
// it keeps taking records. Nothing walks all tags or all waiting Sends: every
// step costs in proportion to the chunks it moves.
type Forward struct {
	log        *slog.Logger
	m          *metrics
	resolver   *net.Resolver // for discovery and for dialing host names
	requireAck bool          // cfg.RequireAck, which cannot change: read without the lock

	mu sync.Mutex
	// What Reconfigure changes; guarded by mu.
	cfg          ForwardConfig
	tls          *tlsFiles // nil without TLS
	selfHost     string
	bufs         *bufPool
	writeTimeout time.Duration
	tmpl         tagTemplate

	// The servers: live ones by address, and all of them (those draining
	// too) in the order they came. See servers.go.
	servers  []*server
	byAddr   map[string]*server
	disco    discovery
	runCtx   context.Context // Run's; nil before Run
	stopping bool            // Run is ending: no new loops
	loops    sync.WaitGroup  // server loops and draining connections

	enc            encoder
	bySource       map[*collector.Source]*tagState
	byTag          map[string]*tagState
	opened         chunkList  // open chunks, oldest first
	flushq         chunkQueue // open chunks whose file caught up, waiting for room in a window
	ready          chunkQueue // sealed chunks waiting for a connection, oldest first
	conns          []*conn    // established connections, retiring ones too
	seq            uint64
	queued         int // bytes counted against QueueBytes
	inFlight       int // chunks handed to a connection
	pendingChunks  int // chunks not yet delivered, open ones included
	pendingRecords int
	waiters        waitQueue     // Sends waiting for queue space, first come first served
	closeWake      chan struct{} // Close waits on it for deliveries; nil unless closing
	kick           chan struct{} // wakes the timer loop to re-arm earlier
	timerAt        time.Time     // when the timer loop will next look; zero: it sleeps
	nextAckCheck   time.Time
	flushRound     time.Time // when the current flush round ends
	closing        bool
	running        bool
	// acking counts batches being acknowledged outside the lock (Ack calls
	// into the collector): Close waits for them too. closed mirrors closing
	// for the ackers, so that only a closing output costs them the lock.
	acking         atomic.Int64
	closed         atomic.Bool
	runDone        bool
	started        time.Time
	lastUp         time.Time
	lastErr        error
	lastBadMetaLog time.Time
}

// NewForward checks cfg, loads the TLS files and registers the metrics on reg
// (nil for none). Nothing connects until Run.
func NewForward(cfg ForwardConfig, reg prometheus.Registerer, log *slog.Logger) (*Forward, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tmpl, err := parseTagTemplate(cfg.Tag)
	if err != nil {
		return nil, fmt.Errorf("forward.tag: %w", err)
	}
	f := &Forward{
		cfg:        cfg,
		log:        log,
		m:          newMetrics(reg, "forward"),
		resolver:   net.DefaultResolver,
		requireAck: cfg.RequireAck,
		bufs:       newBufPool(cfg.BatchBytes),
		tmpl:       tmpl,
		bySource:   make(map[*collector.Source]*tagState),
		byTag:      make(map[string]*tagState),
		byAddr:     make(map[string]*server),
		kick:       make(chan struct{}, 1),
		started:    time.Now(),
	}
	f.disco.wake = make(chan struct{}, 1)
	if err := f.loadSettings(cfg); err != nil {
		return nil, err
	}
	f.reconcileLocked()
	return f, nil
}

// Send encodes b's records into its tag's open chunk. It blocks while the
// output holds more than queue_bytes, and fails only when ctx is done or the
// output is closed. b is acknowledged once all its records are delivered.
// Once accepted, b belongs to the output: its Records are dropped (set to
// nil) as soon as they are encoded, so that the buffers they point into can
// be freed before the ack arrives.
func (f *Forward) Send(ctx context.Context, b *collector.Batch) error {
	if len(b.Records) == 0 {
		b.Ack() // nothing to deliver
		return nil
	}
	f.mu.Lock()
	var w *waiter
	for {
		if f.closing {
			f.waiters.remove(w)
			f.mu.Unlock()
			return ErrClosed
		}
		// First come, first served: a Send that finds others waiting
		// queues behind them rather than taking the space they wait for.
		if f.queued < f.cfg.QueueBytes && (f.waiters.len() == 0 || f.waiters.first() == w) {
			f.waiters.remove(w)
			break
		}
		// Full (or others wait first). If nothing sealed is on its way to
		// free space, send the oldest open chunk rather than wait for its age.
		if f.queued >= f.cfg.QueueBytes {
			f.relieveLocked()
		}
		if w == nil {
			w = f.waiters.push()
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			f.mu.Lock()
			f.waiters.remove(w)
			f.wakeLocked() // pass on a wake-up it may have taken
			f.mu.Unlock()
			return fmt.Errorf("forward send: %w", ctx.Err())
		case <-w.ch:
		}
		f.mu.Lock()
		w.woken = false
	}
	if err := ctx.Err(); err != nil {
		f.wakeLocked()
		f.mu.Unlock()
		return fmt.Errorf("forward send: %w", err)
	}
	f.appendBatchLocked(b, time.Now())
	f.wakeLocked() // room left: the next waiter may go too
	f.mu.Unlock()
	return nil
}

// relieveLocked seals the oldest open chunk when the output is full and no
// sealed chunk is waiting or in flight whose delivery would free space.
func (f *Forward) relieveLocked() {
	if f.ready.len() == 0 && f.opened.head != nil && f.roomLocked() {
		f.sealLocked(f.opened.head)
	}
}

// wakeLocked lets the first waiting Send go if there is space, or else
// makes sure something is on its way to free space.
func (f *Forward) wakeLocked() {
	if f.waiters.len() == 0 {
		return
	}
	if f.queued < f.cfg.QueueBytes || f.closing {
		f.waiters.wakeFirst()
	} else {
		f.relieveLocked()
	}
}

// tagStateLocked returns src's tag state, rendering its tag once per Source.
func (f *Forward) tagStateLocked(src *collector.Source) *tagState {
	if ts, ok := f.bySource[src]; ok {
		return ts
	}
	if len(f.bySource) >= maxCachedTags {
		// Sources come and go with files: start over rather than track
		// which are gone. Tags with an open chunk stay.
		clear(f.bySource)
		for tag, ts := range f.byTag {
			if ts.open == nil {
				delete(f.byTag, tag)
			}
		}
	}
	tag := f.tmpl.render(src)
	ts := f.byTag[tag]
	if ts == nil {
		ts = &tagState{tag: tag}
		f.byTag[tag] = ts
	}
	f.bySource[src] = ts
	return ts
}

func (f *Forward) appendBatchLocked(b *collector.Batch, now time.Time) {
	ts := f.tagStateLocked(b.Source)
	if ts.open != nil && now.Sub(ts.open.opened) >= f.cfg.BatchAge {
		f.sealLocked(ts.open)
	}
	p := &pending{b: b}
	kube := b.Kubernetes
	if len(kube) > 0 && !sameBytes(kube, ts.kubeOK) {
		if isOneMap(kube) {
			ts.kubeOK = kube
		} else {
			// Appending it raw would make the whole frame undecodable and lose
			// every record in it: send these records without it, counted.
			kube = nil
			f.m.badMetadata.Add(float64(len(b.Records)))
			if now.Sub(f.lastBadMetaLog) > 10*time.Second {
				f.lastBadMetaLog = now
				f.log.Warn("forward: batch metadata is not one msgpack map; records sent without \"kubernetes\"",
					"tag", ts.tag, "records", len(b.Records))
			}
		}
	}
	for i := range b.Records {
		r := &b.Records[i]
		c := ts.open
		if c == nil {
			c = f.openLocked(ts, now)
		}
		if c.last != p {
			c.batches = append(c.batches, p)
			c.last = p
			p.chunks++
		}
		c.entries = f.bufs.ensure(c.entries, entrySize(r, kube))
		c.entries = f.enc.appendEntry(c.entries, r, kube)
		c.times = append(c.times, r.Time)
		c.records++
		f.pendingRecords++
		if len(c.entries) >= f.cfg.BatchBytes {
			f.sealLocked(c)
			ts.next = f.bufs.largeCap
		}
	}
	b.Records = nil // encoded: let the collector's buffers go
	if c := ts.open; c != nil {
		f.accountLocked(c)
		if b.CaughtUp {
			f.flushLocked(c, now)
		}
	}
}

// sameBytes reports whether a and b are the same slice (not just equal).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// openLocked starts ts's next chunk.
func (f *Forward) openLocked(ts *tagState, now time.Time) *chunk {
	c := &chunk{id: newChunkID(), tag: ts.tag, ts: ts, entries: f.bufs.get(ts.next), times: f.bufs.getTimes(), opened: now}
	ts.open = c
	f.pendingChunks++
	f.opened.pushBack(c)
	if f.opened.head == c {
		f.armLocked(now.Add(f.cfg.BatchAge))
	}
	return c
}

// isOneMap reports whether b is exactly one msgpack map.
func isOneMap(b []byte) bool {
	if msgp.NextType(b) != msgp.MapType {
		return false
	}
	rest, err := msgp.Skip(b)
	return err == nil && len(rest) == 0
}

// accountLocked brings c's share of the queued bytes up to date.
func (f *Forward) accountLocked(c *chunk) {
	mem := cap(c.entries)
	if len(c.payload) > 0 && (len(c.entries) == 0 || &c.payload[0] != &c.entries[0]) {
		mem += cap(c.payload)
	}
	f.queued += mem - c.mem
	c.mem = mem
	f.m.queuedBytes.Set(float64(f.queued))
}

// flushDelay is how long a flush round gathers caught-up chunks before they
// are sealed: the chunks of every tag that catches up meanwhile go out
// together, in one write, and a busy file gets several lines per frame. It
// adds at most this to a record's latency.
const flushDelay = 5 * time.Millisecond

// flushLocked queues open chunk c, whose file has caught up, to be sealed at
// the end of the current flush round, or later when no connection has room
// (it keeps taking records meanwhile).
func (f *Forward) flushLocked(c *chunk, now time.Time) {
	if c.flushing {
		return
	}
	if !now.Before(f.flushRound) {
		f.flushRound = now.Add(min(flushDelay, f.cfg.BatchAge))
		f.armLocked(f.flushRound)
	}
	c.flushing = true
	c.flushAt = f.flushRound
	f.flushq.push(c)
}

// pumpLocked seals the queued caught-up chunks that are due, oldest first,
// while a connection has room.
func (f *Forward) pumpLocked(now time.Time) {
	for f.flushq.len() > 0 && f.roomLocked() {
		c := f.flushq.peek()
		if c.state == chunkOpen && now.Before(c.flushAt) {
			f.armLocked(c.flushAt)
			return
		}
		f.flushq.pop()
		if c.state == chunkOpen { // else sealed meanwhile, by size or age
			f.sealLocked(c)
		}
	}
}

// roomLocked reports whether a sealed chunk would go out at once: nothing
// waits for a connection and one that may take traffic has room in its window.
func (f *Forward) roomLocked() bool {
	if f.ready.len() > 0 {
		return false
	}
	primaryUp := f.primaryUpLocked()
	for _, cn := range f.conns {
		if usable(cn, primaryUp) && cn.loadBytes < f.cfg.WindowBytes {
			return true
		}
	}
	return false
}

// sealLocked closes open chunk c and queues it for sending.
func (f *Forward) sealLocked(c *chunk) {
	ts := c.ts
	ts.open = nil
	ts.next = len(c.entries) + len(c.entries)/4
	f.opened.remove(c)
	f.accountLocked(c)
	c.bytes = len(c.entries)
	c.gzip = f.cfg.Gzip
	c.last = nil
	c.state = chunkReady
	f.seq++
	c.seq = f.seq
	f.ready.push(c)
	f.dispatchLocked()
}

func (f *Forward) sealAllLocked() {
	for f.opened.head != nil {
		f.sealLocked(f.opened.head)
	}
}

// sealAgedLocked seals the chunks opened batch_age ago or earlier: the oldest
// are first, so it stops at the first that is younger.
func (f *Forward) sealAgedLocked(now time.Time) {
	for c := f.opened.head; c != nil && now.Sub(c.opened) >= f.cfg.BatchAge; c = f.opened.head {
		f.sealLocked(c)
	}
}

// armLocked makes the timer loop look again by at.
func (f *Forward) armLocked(at time.Time) {
	if f.timerAt.IsZero() || at.Before(f.timerAt) {
		f.timerAt = at
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// notifyCloseLocked wakes Close when it waits for deliveries.
func (f *Forward) notifyCloseLocked() {
	if f.closeWake != nil {
		close(f.closeWake)
		f.closeWake = nil
	}
}

// dispatchLocked hands ready chunks to connections with room in their
// window, round-robin; standby servers only while no primary is up.
func (f *Forward) dispatchLocked() {
	for f.ready.len() > 0 {
		c := f.ready.peek()
		cn := f.pickConnLocked(c)
		if cn == nil {
			return
		}
		f.ready.pop()
		c.state = chunkAssigned
		c.conn = cn
		cn.sendq = append(cn.sendq, c)
		cn.loadBytes += c.bytes
		cn.loadChunks++
		f.inFlight++
		if f.inFlight == 1 && f.requireAck {
			f.armLocked(time.Now().Add(f.ackCheckPeriod()))
		}
		f.m.inFlight.Set(float64(f.inFlight))
		select {
		case cn.wakeWriter <- struct{}{}:
		default:
		}
	}
}

// pickConnLocked chooses the connection c goes to, by weighted fair
// queueing over the servers' bytes: of the usable connections with room in
// their window, the one whose server has had the least traffic for its
// weight. Traffic so spreads in proportion to the weights while every
// server keeps up, and goes to the others while one is slow.
func (f *Forward) pickConnLocked(c *chunk) *conn {
	if len(f.conns) == 0 {
		return nil
	}
	primaryUp := f.primaryUpLocked()
	// A chunk that just failed on a server goes to another one if any is up;
	// it waits for room there rather than going back to where it failed.
	otherUp := false
	var best, fallback *conn
	for _, cn := range f.conns {
		if !usable(cn, primaryUp) {
			continue
		}
		hasRoom := cn.loadBytes < f.cfg.WindowBytes
		if c.avoid != nil && cn.srv == c.avoid {
			if fallback == nil && hasRoom {
				fallback = cn
			}
			continue
		}
		otherUp = true
		if hasRoom && (best == nil || cn.srv.vfinish < best.srv.vfinish) {
			best = cn
		}
	}
	if best == nil && !otherUp {
		best = fallback
	}
	if best != nil {
		s := best.srv
		s.vfinish += float64(c.bytes) / float64(s.spec.weight)
	}
	return best
}

// deliverLocked marks c delivered and returns the input batches it completes;
// the caller acknowledges them after unlocking (Ack calls into the collector).
func (f *Forward) deliverLocked(c *chunk, cn *conn, now time.Time) []*collector.Batch {
	c.state = chunkDone
	if cn != nil {
		cn.loadBytes -= c.bytes
		cn.loadChunks--
		cn.delivered++
		cn.srv.delivered += int64(c.records)
	}
	f.inFlight--
	f.m.inFlight.Set(float64(f.inFlight))
	f.pendingChunks--
	f.pendingRecords -= c.records
	f.m.recordsAcked.Add(float64(c.records))
	f.m.bytesAcked.Add(float64(c.bytes))
	f.m.batchesAcked.Inc()
	f.m.recordAge.observe(now, c.times)
	if f.requireAck {
		f.m.ackLatency.Observe(now.Sub(c.written).Seconds())
	}
	var done []*collector.Batch
	for _, p := range c.batches {
		p.chunks--
		if p.chunks == 0 {
			done = append(done, p.b)
		}
	}
	c.batches = nil
	f.acking.Add(int64(len(done)))
	f.releaseLocked(c)
	if cn != nil {
		f.closeIfDrainedLocked(cn)
	}
	f.dispatchLocked()
	f.pumpLocked(now)
	f.wakeLocked()
	f.notifyCloseLocked()
	return done
}

func (f *Forward) releaseLocked(c *chunk) {
	if len(c.payload) > 0 && (len(c.entries) == 0 || &c.payload[0] != &c.entries[0]) {
		f.bufs.put(c.payload)
	}
	f.bufs.put(c.entries)
	f.bufs.putTimes(c.times)
	c.entries, c.payload, c.times = nil, nil, nil
	f.queued -= c.mem
	c.mem = 0
	f.m.queuedBytes.Set(float64(f.queued))
}

// requeueLocked puts chunks back at the front of the ready queue, in their
// original order, to be sent again (preferably to another server).
func (f *Forward) requeueLocked(chunks []*chunk, from *server) {
	if len(chunks) == 0 {
		return
	}
	slices.SortFunc(chunks, func(a, b *chunk) int { return compareSeq(a.seq, b.seq) })
	for _, c := range chunks {
		c.state = chunkReady
		c.conn = nil
		c.avoid = from
		c.ackedEarly = false
		f.inFlight--
	}
	f.m.inFlight.Set(float64(f.inFlight))
	f.ready.pushFront(chunks)
}

func compareSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ackAll acknowledges the batches deliverLocked completed; called without the lock.
func (f *Forward) ackAll(bs []*collector.Batch) {
	if len(bs) == 0 {
		return
	}
	for _, b := range bs {
		b.Ack()
	}
	f.acking.Add(-int64(len(bs)))
	if f.closed.Load() {
		f.mu.Lock()
		f.notifyCloseLocked()
		f.mu.Unlock()
	}
}

// Run connects to the servers and keeps the connections (reconnecting with
// backoff) until ctx is done. Batches still unacknowledged then stay
// unacknowledged: the collector re-reads them after a restart.
func (f *Forward) Run(ctx context.Context) error {
	f.mu.Lock()
	if f.running {
		f.mu.Unlock()
		return errors.New("forward: Run called twice")
	}
	f.running = true
	f.runCtx = ctx
	for _, s := range f.servers {
		f.startLoopLocked(s)
	}
	f.loops.Go(func() { f.discoveryLoop(ctx) })
	f.loops.Go(func() { f.timerLoop(ctx) })
	f.mu.Unlock()

	<-ctx.Done()
	f.mu.Lock()
	f.stopping = true
	f.mu.Unlock()
	f.loops.Wait()

	f.mu.Lock()
	f.runDone = true
	f.notifyCloseLocked()
	f.mu.Unlock()
	return nil
}

func (f *Forward) ackCheckPeriod() time.Duration {
	return max(f.cfg.AckTimeout/8, 5*time.Millisecond)
}

// timerLoop seals chunks by age and caught-up chunks once due, and enforces
// the ack timeout. It sleeps until the next of these is due, so an idle
// output costs nothing.
func (f *Forward) timerLoop(ctx context.Context) {
	// Age deadlines at least this far apart: when chunks are flushed long
	// before their age, the deadline of one that is gone fires for nothing;
	// this bounds how often.
	t := time.NewTimer(time.Hour)
	t.Stop()
	var lastAge time.Time
	for {
		f.mu.Lock()
		minGap := max(f.cfg.BatchAge/16, time.Millisecond)
		now := time.Now()
		f.sealAgedLocked(now)
		f.pumpLocked(now)
		var next time.Time
		earliest := func(at time.Time) {
			if !at.IsZero() && (next.IsZero() || at.Before(next)) {
				next = at
			}
		}
		if c := f.opened.head; c != nil {
			at := c.opened.Add(f.cfg.BatchAge)
			if at.Sub(lastAge) < minGap {
				at = lastAge.Add(minGap)
			}
			earliest(at)
		}
		if f.flushq.len() > 0 && f.roomLocked() {
			earliest(f.flushq.peek().flushAt)
		}
		if f.requireAck && f.inFlight > 0 {
			if !now.Before(f.nextAckCheck) {
				f.checkAckTimeoutsLocked(now)
				f.nextAckCheck = now.Add(f.ackCheckPeriod())
			}
			earliest(f.nextAckCheck)
		}
		f.timerAt = next
		f.mu.Unlock()
		if !next.IsZero() {
			t.Reset(max(next.Sub(now), 0))
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case now := <-t.C:
			lastAge = now
		case <-f.kick:
			t.Stop()
		}
	}
}

func (f *Forward) checkAckTimeoutsLocked(now time.Time) {
	for _, cn := range slices.Clone(f.conns) {
		for _, c := range cn.inflight {
			if c.state == chunkInFlight && now.Sub(c.written) > f.cfg.AckTimeout {
				f.failConnLocked(cn, reasonAckTimeout, fmt.Errorf(
					"batch %s (%d records) not acknowledged within %s", c.id, c.records, f.cfg.AckTimeout))
				break
			}
		}
	}
}

// Close seals the open chunks, stops accepting batches and waits until every
// accepted record is delivered or ctx is done. Run must still be running for
// anything to be delivered; Close returns at once if Run has returned.
func (f *Forward) Close(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closing {
		f.closing = true
		f.closed.Store(true)
		f.sealAllLocked()
		f.waiters.wakeAll()
	}
	for f.pendingChunks > 0 || f.acking.Load() > 0 {
		if f.runDone && f.pendingChunks > 0 {
			return fmt.Errorf("forward close: %d records in %d batches not acknowledged: Run has returned",
				f.pendingRecords, f.pendingChunks)
		}
		if f.closeWake == nil {
			f.closeWake = make(chan struct{})
		}
		w := f.closeWake
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			f.mu.Lock()
			return fmt.Errorf("forward close: %d records in %d batches not acknowledged: %w",
				f.pendingRecords, f.pendingChunks, ctx.Err())
		case <-w:
		}
		f.mu.Lock()
	}
	return nil
}

// Ready fails while no server has ever been reached, and once none has been
// connected for ready_timeout.
func (f *Forward) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, cn := range f.conns {
		if !cn.retiring {
			return nil
		}
	}
	if f.lastUp.IsZero() {
		if f.lastErr != nil {
			return fmt.Errorf("forward: no server reached yet: %w", f.lastErr)
		}
		return errors.New("forward: no server reached yet")
	}
	if d := time.Since(f.lastUp); d > f.cfg.ReadyTimeout {
		if f.lastErr != nil {
			return fmt.Errorf("forward: no server reachable for %s: %w", d.Round(time.Second), f.lastErr)
		}
		return fmt.Errorf("forward: no server reachable for %s", d.Round(time.Second))
	}
	return nil
}

// backoffLocked is the delay before connection attempt n+1 to a failed server:
// exponential from retry_min to retry_max, with half of it random ("equal
// jitter") so that agents on many nodes do not reconnect in step.
func (f *Forward) backoffLocked(attempt int) time.Duration {
	d := f.cfg.RetryMax
	if attempt < 32 {
		if e := f.cfg.RetryMin << attempt; e > 0 && e < d {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}
