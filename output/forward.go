// Package output delivers log records to Fluentd-compatible receivers over the
// Forward protocol v1 (PackedForward frames, optionally gzip-compressed, with
// acknowledgements, TLS and the shared-key handshake).
package output

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/logagent/logagent/collector"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tinylib/msgp/msgp"
)

// ErrClosed is returned by Send once Close has been called.
var ErrClosed = errors.New("forward output closed")

// server is one configured endpoint. up is guarded by Forward.mu.
type server struct {
	addr    string
	host    string // for TLS server name
	standby bool
	up      bool
}

// tagState is a tag's open chunk and a hint for sizing the next one.
type tagState struct {
	open *chunk
	next int // buffer size for its next chunk: the last one's, or batch-sized once one filled up
}

// Forward is the Forward-protocol output: a collector.Sink that packs records
// into one open chunk per tag, sends sealed chunks round-robin over the
// healthy servers with a window of chunks in flight per connection, and
// acknowledges the input batches once every chunk holding their records is
// acknowledged by a server.
type Forward struct {
	cfg          ForwardConfig
	log          *slog.Logger
	m            *metrics
	tlsConf      *tls.Config // nil without TLS
	selfHost     string
	servers      []*server
	bufs         *bufPool
	writeTimeout time.Duration

	mu             sync.Mutex
	enc            encoder
	tags           *tagCache
	open           map[string]*tagState
	ready          []*chunk // sealed chunks waiting for a connection, oldest first
	conns          []*conn  // established connections
	rr             int      // round-robin position in conns
	seq            uint64
	queued         int // bytes counted against QueueBytes
	inFlight       int // chunks handed to a connection
	pendingChunks  int // chunks not yet delivered, open ones included
	pendingRecords int
	wake           chan struct{} // closed and replaced whenever space frees or chunks are delivered
	closing        bool
	running        bool
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
		cfg:          cfg,
		log:          log,
		m:            newMetrics(reg),
		bufs:         newBufPool(cfg.BatchBytes),
		tags:         newTagCache(tmpl),
		open:         make(map[string]*tagState),
		wake:         make(chan struct{}),
		started:      time.Now(),
		selfHost:     cfg.SelfHostname,
		writeTimeout: cfg.AckTimeout,
	}
	if f.writeTimeout <= 0 {
		f.writeTimeout = 30 * time.Second
	}
	if cfg.TLS.Enabled {
		if f.tlsConf, err = loadTLS(cfg.TLS); err != nil {
			return nil, err
		}
	}
	if f.selfHost == "" && cfg.SharedKey != "" {
		if f.selfHost, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("forward.self_hostname: not set and os.Hostname failed: %w", err)
		}
	}
	for _, s := range cfg.Servers {
		host, _, _ := net.SplitHostPort(s.Address) // checked by Validate
		f.servers = append(f.servers, &server{addr: s.Address, host: host, standby: s.Standby})
		f.m.serverUp.WithLabelValues(s.Address).Set(0)
	}
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
	for {
		if f.closing {
			f.mu.Unlock()
			return ErrClosed
		}
		if f.queued < f.cfg.QueueBytes {
			break
		}
		// Full: send what is open now rather than wait for batch_age.
		f.sealAllLocked()
		w := f.wake
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("forward send: %w", ctx.Err())
		case <-w:
		}
		f.mu.Lock()
	}
	if err := ctx.Err(); err != nil {
		f.mu.Unlock()
		return fmt.Errorf("forward send: %w", err)
	}
	f.appendBatchLocked(b, time.Now())
	f.mu.Unlock()
	return nil
}

func (f *Forward) appendBatchLocked(b *collector.Batch, now time.Time) {
	tag := f.tags.get(b.Source)
	ts := f.open[tag]
	if ts == nil {
		ts = &tagState{}
		f.open[tag] = ts
	}
	if ts.open != nil && now.Sub(ts.open.opened) >= f.cfg.BatchAge {
		f.sealLocked(ts)
	}
	p := &pending{b: b}
	kube := b.Kubernetes
	if len(kube) > 0 && !isOneMap(kube) {
		// Appending it raw would make the whole frame undecodable and lose
		// every record in it: send these records without it, counted.
		kube = nil
		f.m.badMetadata.Add(float64(len(b.Records)))
		if now.Sub(f.lastBadMetaLog) > 10*time.Second {
			f.lastBadMetaLog = now
			f.log.Warn("forward: batch metadata is not one msgpack map; records sent without \"kubernetes\"",
				"tag", tag, "records", len(b.Records))
		}
	}
	for i := range b.Records {
		c := ts.open
		if c == nil {
			c = &chunk{id: newChunkID(), tag: tag, entries: f.bufs.get(ts.next), opened: now}
			ts.open = c
			f.pendingChunks++
		}
		if c.last != p {
			c.batches = append(c.batches, p)
			c.last = p
			p.chunks++
		}
		c.entries = f.enc.appendEntry(c.entries, &b.Records[i], kube)
		c.records++
		f.pendingRecords++
		if len(c.entries) >= f.cfg.BatchBytes {
			f.sealLocked(ts)
			ts.next = f.bufs.largeCap
		}
	}
	if ts.open != nil {
		f.accountLocked(ts.open)
		if b.CaughtUp {
			// Nothing more of this file soon (read to its end, or the
			// collector waits for memory this chunk holds): send it now
			// rather than at batch_age.
			f.sealLocked(ts)
		}
	}
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

// sealLocked closes ts's open chunk and queues it for sending.
func (f *Forward) sealLocked(ts *tagState) {
	c := ts.open
	ts.open = nil
	ts.next = len(c.entries) + len(c.entries)/4
	f.accountLocked(c)
	c.bytes = len(c.entries)
	c.last = nil
	c.state = chunkReady
	f.seq++
	c.seq = f.seq
	f.ready = append(f.ready, c)
	f.dispatchLocked()
}

func (f *Forward) sealAllLocked() {
	for _, ts := range f.open {
		if ts.open != nil {
			f.sealLocked(ts)
		}
	}
}

// sealAgedLocked seals chunks older than batch_age and forgets idle tags.
func (f *Forward) sealAgedLocked(now time.Time) {
	for tag, ts := range f.open {
		if ts.open != nil && now.Sub(ts.open.opened) >= f.cfg.BatchAge {
			f.sealLocked(ts)
		}
		if ts.open == nil {
			delete(f.open, tag)
		}
	}
}

// notifyLocked wakes Sends waiting for space and Close waiting for delivery.
func (f *Forward) notifyLocked() {
	close(f.wake)
	f.wake = make(chan struct{})
}

// dispatchLocked hands ready chunks to connections with room in their
// window, round-robin; standby servers only while no primary is up.
func (f *Forward) dispatchLocked() {
	for len(f.ready) > 0 {
		c := f.ready[0]
		cn := f.pickConnLocked(c)
		if cn == nil {
			return
		}
		f.ready[0] = nil
		f.ready = f.ready[1:]
		c.state = chunkAssigned
		c.conn = cn
		cn.sendq = append(cn.sendq, c)
		cn.load++
		f.inFlight++
		f.m.inFlight.Set(float64(f.inFlight))
		select {
		case cn.wakeWriter <- struct{}{}:
		default:
		}
	}
}

func (f *Forward) pickConnLocked(c *chunk) *conn {
	n := len(f.conns)
	if n == 0 {
		return nil
	}
	primaryUp := false
	for _, cn := range f.conns {
		if !cn.srv.standby {
			primaryUp = true
			break
		}
	}
	eligible := func(cn *conn) bool { return cn.srv.standby != primaryUp }
	// A chunk that just failed on a server goes to another one if any is up;
	// it waits for room there rather than going back to where it failed.
	otherUp := false
	var fallback *conn
	for i := range n {
		cn := f.conns[(f.rr+i)%n]
		if !eligible(cn) {
			continue
		}
		if c.avoid != nil && cn.srv == c.avoid {
			if fallback == nil && cn.load < f.cfg.Window {
				fallback = cn
			}
			continue
		}
		otherUp = true
		if cn.load < f.cfg.Window {
			f.rr = (f.rr + i + 1) % n
			return cn
		}
	}
	if otherUp {
		return nil
	}
	return fallback
}

// deliverLocked marks c delivered and returns the input batches it completes;
// the caller acknowledges them after unlocking (Ack calls into the collector).
func (f *Forward) deliverLocked(c *chunk, cn *conn, now time.Time) []*collector.Batch {
	c.state = chunkDone
	if cn != nil {
		cn.load--
		cn.delivered++
	}
	f.inFlight--
	f.m.inFlight.Set(float64(f.inFlight))
	f.pendingChunks--
	f.pendingRecords -= c.records
	f.m.recordsAcked.Add(float64(c.records))
	f.m.bytesAcked.Add(float64(c.bytes))
	f.m.batchesAcked.Inc()
	if f.cfg.RequireAck {
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
	f.releaseLocked(c)
	f.notifyLocked()
	f.dispatchLocked()
	return done
}

func (f *Forward) releaseLocked(c *chunk) {
	if len(c.payload) > 0 && (len(c.entries) == 0 || &c.payload[0] != &c.entries[0]) {
		f.bufs.put(c.payload)
	}
	f.bufs.put(c.entries)
	c.entries, c.payload = nil, nil
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
	sort.Slice(chunks, func(i, j int) bool { return chunks[i].seq < chunks[j].seq })
	for _, c := range chunks {
		c.state = chunkReady
		c.conn = nil
		c.avoid = from
		c.ackedEarly = false
		f.inFlight--
	}
	f.m.inFlight.Set(float64(f.inFlight))
	f.ready = append(chunks, f.ready...)
}

func ackAll(bs []*collector.Batch) {
	for _, b := range bs {
		b.Ack()
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
	f.mu.Unlock()

	var wg sync.WaitGroup
	for _, s := range f.servers {
		wg.Go(func() { f.serverLoop(ctx, s) })
	}
	wg.Go(func() { f.tickLoop(ctx) })
	wg.Wait()

	f.mu.Lock()
	f.runDone = true
	f.notifyLocked()
	f.mu.Unlock()
	return nil
}

// tickLoop seals chunks by age and enforces the ack timeout.
func (f *Forward) tickLoop(ctx context.Context) {
	period := f.cfg.BatchAge / 2
	if f.cfg.RequireAck {
		period = min(period, f.cfg.AckTimeout/8)
	}
	period = max(period, 5*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			f.mu.Lock()
			f.sealAgedLocked(now)
			if f.cfg.RequireAck {
				f.checkAckTimeoutsLocked(now)
			}
			f.mu.Unlock()
		}
	}
}

func (f *Forward) checkAckTimeoutsLocked(now time.Time) {
	for _, cn := range append([]*conn(nil), f.conns...) {
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
		f.sealAllLocked()
		f.notifyLocked()
	}
	for f.pendingChunks > 0 {
		if f.runDone {
			return fmt.Errorf("forward close: %d records in %d batches not acknowledged: Run has returned",
				f.pendingRecords, f.pendingChunks)
		}
		w := f.wake
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

// Ready fails once no server has been connected for ready_timeout.
func (f *Forward) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.conns) > 0 {
		return nil
	}
	since := f.lastUp
	if since.IsZero() {
		since = f.started
	}
	if d := time.Since(since); d > f.cfg.ReadyTimeout {
		if f.lastErr != nil {
			return fmt.Errorf("forward: no server reachable for %s: %w", d.Round(time.Second), f.lastErr)
		}
		return fmt.Errorf("forward: no server reachable for %s", d.Round(time.Second))
	}
	return nil
}

// backoff is the delay before connection attempt n+1 to a failed server:
// exponential from retry_min to retry_max, with half of it random ("equal
// jitter") so that agents on many nodes do not reconnect in step.
func (f *Forward) backoff(attempt int) time.Duration {
	d := f.cfg.RetryMax
	if attempt < 32 {
		if e := f.cfg.RetryMin << attempt; e > 0 && e < d {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}
