package output

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/logagent/logagent/collector"
	"github.com/tinylib/msgp/msgp"
)

// conn is one established connection to a server (after TLS and handshake).
// Its fields other than the immutable ones are guarded by Forward.mu.
type conn struct {
	srv *server
	raw net.Conn     // the TCP connection: closing it unblocks everything
	nc  net.Conn     // raw, or TLS over raw
	r   *msgp.Reader // reads acks (and read the handshake before)

	sendq      []*chunk          // assigned, not yet written
	inflight   map[string]*chunk // by chunk id: being written or waiting for an ack
	loadBytes  int               // entry bytes assigned to it and not delivered: the window
	loadChunks int               // chunks assigned to it and not delivered
	delivered  int
	failed     bool
	retiring   bool // takes no new chunks; closed once those it has are delivered
	cleanClose bool // the server closed it while idle
	opened     time.Time
	wakeWriter chan struct{}
	done       chan struct{} // closed when failed
}

// connectError says at which stage connecting failed.
type connectError struct {
	reason string
	err    error
}

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// connect dials s (resolving its host name again), runs TLS and the
// shared-key handshake, all within dial_timeout, with the settings as they
// are now: TLS files and secret files are read again for each connection.
func (f *Forward) connect(ctx context.Context, s *server) (*conn, error) {
	f.mu.Lock()
	spec, dialTimeout, tlsFiles, selfHost := s.spec, f.cfg.DialTimeout, f.tls, f.selfHost
	f.mu.Unlock()
	var key, user, password string
	if spec.auth.enabled() {
		var err error
		if key, user, password, err = spec.auth.secrets(); err != nil {
			return nil, &connectError{reasonAuth, err}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second, Resolver: f.resolver}
	raw, err := d.DialContext(ctx, "tcp", spec.dial)
	if err != nil {
		return nil, &connectError{reasonDial, err}
	}
	nc := raw
	if tlsFiles != nil {
		tc := tlsFiles.config()
		if tc.ServerName == "" {
			tc = tc.Clone()
			tc.ServerName = spec.host
		}
		tlsConn := tls.Client(raw, tc)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, &connectError{reasonTLS, fmt.Errorf("tls handshake: %w", err)}
		}
		nc = tlsConn
	}
	cn := &conn{
		srv:        s,
		raw:        raw,
		nc:         nc,
		r:          newServerReader(nc),
		inflight:   make(map[string]*chunk),
		opened:     time.Now(),
		wakeWriter: make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	if key != "" {
		deadline, _ := ctx.Deadline()
		raw.SetDeadline(deadline)
		err := sharedKeyHandshake(cn.r, nc, selfHost, key, user, password)
		if err != nil {
			raw.Close()
			return nil, &connectError{classify(err, reasonHandshake), err}
		}
		raw.SetDeadline(time.Time{})
	}
	return cn, nil
}

// classify names the reason of a connection error; def if nothing more specific.
func classify(err error, def string) string {
	var (
		ce       *connectError
		ae       *authError
		he       *handshakeError
		alert    tls.AlertError
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
		typeErr  msgp.TypeError
		op       *net.OpError
	)
	switch {
	case errors.As(err, &ae):
		return reasonAuth
	case errors.As(err, &he):
		return reasonHandshake
	case errors.As(err, &alert), errors.As(err, &verify), errors.As(err, &unknown),
		errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &record):
		return reasonTLS
	case errors.As(err, &op) && op.Op == "remote error":
		// crypto/tls reports an alert from the peer (e.g. it rejected our
		// client certificate, seen on the first read under TLS 1.3) this way.
		return reasonTLS
	case errors.As(err, &ce):
		return ce.reason
	case errors.As(err, &typeErr), errors.Is(err, errServerLimit):
		return reasonProtocol
	}
	return def
}

// serverLoop keeps one connection to s until ctx is done or s is removed:
// connect, run, and after a failure reconnect with backoff while the other
// servers take the traffic. A removed server's connection is drained before
// the loop ends; a recycled one drains beside its successor.
func (f *Forward) serverLoop(ctx context.Context, s *server) {
	defer f.serverExited(s)
	var drains sync.WaitGroup // replaced connections still delivering
	defer drains.Wait()
	attempt := 0
	for {
		f.mu.Lock()
		select {
		case <-s.recycle: // this connection is made with the spec as it is now
		default:
		}
		s.state = stateConnecting
		f.mu.Unlock()
		if s.ctx.Err() != nil {
			return
		}
		cn, err := f.connect(s.ctx, s)
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			reason := classify(err, reasonDial)
			f.mu.Lock()
			delay := f.backoffLocked(attempt)
			addr := s.spec.addr
			f.lastErr = fmt.Errorf("%s: %s: %w", addr, reason, err)
			s.lastErr, s.lastErrAt, s.state = f.lastErr, time.Now(), stateBackoff
			f.mu.Unlock()
			attempt++
			f.log.Error("forward: cannot connect to server; batches stay queued",
				"server", addr, "reason", reason, "error", err, "retry_in", delay.Round(time.Millisecond))
			f.m.errors.WithLabelValues(addr, reason).Inc()
			if !sleepCtx(s.ctx, delay) {
				return
			}
			continue
		}
		if !f.registerConn(cn) {
			cn.raw.Close() // removed while connecting
			return
		}

		writerDone := make(chan struct{})
		go func() { defer close(writerDone); f.writer(cn) }()
		readerDone := make(chan struct{})
		go func() { defer close(readerDone); f.reader(cn) }()
		// drain waits for a retiring cn to deliver what it has (or fail),
		// unless Run ends first.
		drain := func() {
			select {
			case <-cn.done:
			case <-ctx.Done():
				f.mu.Lock()
				f.failConnLocked(cn, "", nil)
				f.mu.Unlock()
			}
			<-writerDone
			<-readerDone
		}
		select {
		case <-cn.done:
		case <-s.ctx.Done(): // removed, or Run ends
			f.mu.Lock()
			if ctx.Err() != nil {
				f.failConnLocked(cn, "", nil)
			} else {
				f.retireConnLocked(cn)
			}
			f.mu.Unlock()
		case <-s.recycle:
			f.mu.Lock()
			f.retireConnLocked(cn)
			f.mu.Unlock()
			drains.Go(drain)
			attempt = 0
			continue
		}
		drain()
		if s.ctx.Err() != nil {
			return
		}
		f.mu.Lock()
		healthy := cn.delivered > 0 || (cn.cleanClose && time.Since(cn.opened) > f.cfg.RetryMin)
		delay := f.backoffLocked(attempt)
		if !healthy {
			s.state = stateBackoff
		}
		f.mu.Unlock()
		if healthy {
			// It worked until now: try again at once, then back off.
			attempt = 0
			continue
		}
		attempt++
		if !sleepCtx(s.ctx, delay) {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// registerConn makes cn take traffic; false if its server was removed meanwhile.
func (f *Forward) registerConn(cn *conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := cn.srv
	if s.removed || s.ctx.Err() != nil {
		return false
	}
	now := time.Now()
	f.conns = append(f.conns, cn)
	s.conn, s.state, s.connectedSince = cn, stateConnected, now
	f.levelLocked(s)
	f.refreshUpLocked(s.spec.addr)
	f.lastUp = now
	f.log.Info("forward: connected", "server", s.spec.addr, "origin", s.spec.origin, "standby", s.spec.standby,
		"weight", s.spec.weight, "tls", f.tls != nil, "shared_key", s.spec.auth.enabled())
	f.dispatchLocked()
	f.pumpLocked(now)
	f.wakeLocked() // Sends waiting while no server was up
	return true
}

// failConnLocked closes cn and puts its unacknowledged chunks back in the
// ready queue. reason "" means an orderly close (shutdown, idle close).
func (f *Forward) failConnLocked(cn *conn, reason string, err error) {
	if cn.failed {
		return
	}
	cn.failed = true
	cn.raw.Close()
	close(cn.done)
	for i, c := range f.conns {
		if c == cn {
			f.conns = append(f.conns[:i], f.conns[i+1:]...)
			break
		}
	}
	s := cn.srv
	addr := s.spec.addr
	if s.conn == cn {
		s.conn = nil
	}
	f.refreshUpLocked(addr)
	f.lastUp = time.Now()

	// Written chunks lose their ack with the connection: they are re-sent.
	// The one being written is the writer's to re-queue.
	var resend []*chunk
	for id, c := range cn.inflight {
		if c.state == chunkInFlight {
			resend = append(resend, c)
			delete(cn.inflight, id)
		}
	}
	retried := len(resend)
	resend = append(resend, cn.sendq...)
	cn.sendq = nil
	if retried > 0 {
		r := reason
		if r == "" {
			r = "shutdown"
		}
		f.m.retries.WithLabelValues(addr, r).Add(float64(retried))
	}
	f.requeueLocked(resend, s)
	if reason != "" {
		f.lastErr = fmt.Errorf("%s: %s: %w", addr, reason, err)
		s.lastErr, s.lastErrAt = f.lastErr, time.Now()
		f.log.Error("forward: connection failed; unacknowledged batches will be sent again",
			"server", addr, "reason", reason, "error", err, "resend", retried)
		f.m.errors.WithLabelValues(addr, reason).Inc()
	}
	f.dispatchLocked()
	f.pumpLocked(time.Now())
}

// maxWriteChunks bounds the frames written in one go (one writev).
const maxWriteChunks = 256

// writer writes the chunks assigned to cn: all that are queued at once, in
// one writev, so that many small frames (one per quiet tag) cost one system
// call rather than one each.
func (f *Forward) writer(cn *conn) {
	var batch []*chunk
	var bufs net.Buffers
	for {
		select {
		case <-cn.wakeWriter:
		case <-cn.done:
			return
		}
		for {
			f.mu.Lock()
			if cn.failed || len(cn.sendq) == 0 {
				f.mu.Unlock()
				break
			}
			n := min(len(cn.sendq), maxWriteChunks)
			batch = append(batch[:0], cn.sendq[:n]...)
			clear(cn.sendq[:n])
			cn.sendq = cn.sendq[n:]
			if len(cn.sendq) == 0 {
				cn.sendq = nil
			}
			for _, c := range batch {
				c.state = chunkWriting
				if f.requireAck {
					cn.inflight[c.id] = c
				}
			}
			writeTimeout, pool := f.writeTimeout, f.bufs
			f.mu.Unlock()

			var err error
			bufs = bufs[:0]
			for _, c := range batch {
				if err = f.prepare(c, pool); err != nil {
					break
				}
				bufs = append(bufs, c.head, c.payload, c.opt)
			}
			if err == nil {
				cn.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
				w := bufs // WriteTo consumes its receiver
				_, err = w.WriteTo(cn.nc)
			}
			clear(bufs[:cap(bufs)])
			now := time.Now()

			var acks []*collector.Batch
			var requeue []*chunk
			f.mu.Lock()
			for _, c := range batch {
				if err == nil {
					c.sends++
					c.written = now
					cn.srv.recordsSent.Add(float64(c.records))
					cn.srv.bytesSent.Add(float64(c.wireSize()))
					cn.srv.batchesSent.Inc()
				}
				switch {
				case c.ackedEarly || (err == nil && !f.requireAck):
					// Acknowledged while Write was returning: the server has it all,
					// even if Write reported an error afterwards.
					if err != nil {
						c.written = now
					}
					acks = append(acks, f.deliverLocked(c, cn, now)...)
				case err == nil && !cn.failed:
					c.state = chunkInFlight
				default:
					// Not written, or written to a connection that died meanwhile.
					delete(cn.inflight, c.id)
					cn.loadBytes -= c.bytes
					cn.loadChunks--
					requeue = append(requeue, c)
				}
			}
			if len(requeue) > 0 {
				reason := reasonRead
				if err != nil {
					reason = reasonWrite
				}
				f.m.retries.WithLabelValues(cn.srv.spec.addr, reason).Add(float64(len(requeue)))
				f.requeueLocked(requeue, cn.srv)
			}
			if err != nil {
				f.failConnLocked(cn, classify(err, reasonWrite), fmt.Errorf("write: %w", err))
			} else if len(requeue) > 0 {
				f.closeIfDrainedLocked(cn)
				f.dispatchLocked()
			}
			f.mu.Unlock()
			clear(batch)
			f.ackAll(acks)
		}
	}
}

// prepare compresses c (once) and builds its frame head and options. The
// writer owns c while it is in chunkWriting, so only the accounting needs the lock.
func (f *Forward) prepare(c *chunk, pool *bufPool) error {
	if c.head != nil {
		return nil
	}
	if c.gzip {
		// Guess a quarter of the size (logs compress 4-10x); it grows if not.
		z, err := gzipInto(pool.get(len(c.entries)/4), c.entries)
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.bufs.put(c.entries)
		c.entries = nil
		c.payload = z
		f.accountLocked(c)
		f.mu.Unlock()
	} else {
		c.payload = c.entries
	}
	c.frame(f.requireAck, c.gzip)
	return nil
}

// reader reads the server's acks and matches them to chunks by id, in any order.
func (f *Forward) reader(cn *conn) {
	var scratch []byte
	for {
		id, err := readAck(cn.r, scratch[:0])
		if err != nil {
			f.mu.Lock()
			reason := classify(err, reasonRead)
			switch {
			case cn.failed:
			case errors.Is(err, io.EOF) && cn.loadBytes == 0 && len(cn.inflight) == 0:
				cn.cleanClose = true
				f.log.Info("forward: server closed an idle connection", "server", cn.srv.spec.addr)
				f.failConnLocked(cn, "", nil)
			case reason == reasonProtocol:
				f.failConnLocked(cn, reason, fmt.Errorf(
					"server sent something other than an ack (does it require shared_key?): %w", err))
			default:
				f.failConnLocked(cn, reason, fmt.Errorf("read: %w", err))
			}
			f.mu.Unlock()
			return
		}
		scratch = id
		now := time.Now()
		f.mu.Lock()
		c, ok := cn.inflight[string(id)]
		if !ok || cn.failed {
			f.mu.Unlock()
			continue // not ours (any more): a late or foreign ack
		}
		delete(cn.inflight, c.id)
		if c.state == chunkWriting {
			c.ackedEarly = true // the writer delivers it when Write returns
			f.mu.Unlock()
			continue
		}
		acks := f.deliverLocked(c, cn, now)
		f.mu.Unlock()
		f.ackAll(acks)
	}
}
