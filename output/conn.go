package output

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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
	delivered  int
	failed     bool
	cleanClose bool // the server closed it while idle
	opened     time.Time
	wakeWriter chan struct{}
	done       chan struct{} // closed when failed
}

func loadTLS(c TLSConfig) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify,
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("forward.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("forward.tls.ca_file: %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("forward.tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// connectError says at which stage connecting failed.
type connectError struct {
	reason string
	err    error
}

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// connect dials s (resolving its host name again), runs TLS and the
// shared-key handshake, all within dial_timeout.
func (f *Forward) connect(ctx context.Context, s *server) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.DialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, &connectError{reasonDial, err}
	}
	nc := raw
	if f.tlsConf != nil {
		tc := f.tlsConf
		if tc.ServerName == "" {
			tc = tc.Clone()
			tc.ServerName = s.host
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
	if f.cfg.SharedKey != "" {
		deadline, _ := ctx.Deadline()
		raw.SetDeadline(deadline)
		err := sharedKeyHandshake(cn.r, nc, f.selfHost, f.cfg.SharedKey, f.cfg.Username, f.cfg.Password)
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

// serverLoop keeps one connection to s until ctx is done: connect, run,
// and after a failure reconnect with backoff while the other servers take
// the traffic.
func (f *Forward) serverLoop(ctx context.Context, s *server) {
	attempt := 0
	for ctx.Err() == nil {
		cn, err := f.connect(ctx, s)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			reason := classify(err, reasonDial)
			delay := f.backoff(attempt)
			attempt++
			f.log.Error("forward: cannot connect to server; batches stay queued",
				"server", s.addr, "reason", reason, "error", err, "retry_in", delay.Round(time.Millisecond))
			f.m.errors.WithLabelValues(s.addr, reason).Inc()
			f.mu.Lock()
			f.lastErr = fmt.Errorf("%s: %s: %w", s.addr, reason, err)
			f.mu.Unlock()
			if !sleepCtx(ctx, delay) {
				return
			}
			continue
		}
		f.log.Info("forward: connected", "server", s.addr, "standby", s.standby,
			"tls", f.tlsConf != nil, "shared_key", f.cfg.SharedKey != "")
		f.registerConn(cn)

		writerDone := make(chan struct{})
		go func() { defer close(writerDone); f.writer(cn) }()
		readerDone := make(chan struct{})
		go func() { defer close(readerDone); f.reader(cn) }()
		select {
		case <-cn.done:
		case <-ctx.Done():
			f.mu.Lock()
			f.failConnLocked(cn, "", nil)
			f.mu.Unlock()
		}
		<-writerDone
		<-readerDone
		if ctx.Err() != nil {
			return
		}
		f.mu.Lock()
		healthy := cn.delivered > 0 || (cn.cleanClose && time.Since(cn.opened) > f.cfg.RetryMin)
		f.mu.Unlock()
		if healthy {
			// It worked until now: try again at once, then back off.
			attempt = 0
			continue
		}
		delay := f.backoff(attempt)
		attempt++
		if !sleepCtx(ctx, delay) {
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

func (f *Forward) registerConn(cn *conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns = append(f.conns, cn)
	cn.srv.up = true
	f.m.serverUp.WithLabelValues(cn.srv.addr).Set(1)
	f.lastUp = time.Now()
	f.dispatchLocked()
	f.pumpLocked(time.Now())
	f.wakeLocked() // Sends waiting while no server was up
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
	if f.rr >= len(f.conns) {
		f.rr = 0
	}
	cn.srv.up = false
	f.m.serverUp.WithLabelValues(cn.srv.addr).Set(0)
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
		f.m.retries.WithLabelValues(cn.srv.addr, r).Add(float64(retried))
	}
	f.requeueLocked(resend, cn.srv)
	if reason != "" {
		f.lastErr = fmt.Errorf("%s: %s: %w", cn.srv.addr, reason, err)
		f.log.Error("forward: connection failed; unacknowledged batches will be sent again",
			"server", cn.srv.addr, "reason", reason, "error", err, "resend", retried)
		f.m.errors.WithLabelValues(cn.srv.addr, reason).Inc()
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
				if f.cfg.RequireAck {
					cn.inflight[c.id] = c
				}
			}
			f.mu.Unlock()

			var err error
			bufs = bufs[:0]
			for _, c := range batch {
				if err = f.prepare(c); err != nil {
					break
				}
				bufs = append(bufs, c.head, c.payload, c.opt)
			}
			if err == nil {
				cn.nc.SetWriteDeadline(time.Now().Add(f.writeTimeout))
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
				case c.ackedEarly || (err == nil && !f.cfg.RequireAck):
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
					requeue = append(requeue, c)
				}
			}
			if len(requeue) > 0 {
				reason := reasonRead
				if err != nil {
					reason = reasonWrite
				}
				f.m.retries.WithLabelValues(cn.srv.addr, reason).Add(float64(len(requeue)))
				f.requeueLocked(requeue, cn.srv)
			}
			if err != nil {
				f.failConnLocked(cn, classify(err, reasonWrite), fmt.Errorf("write: %w", err))
			} else if len(requeue) > 0 {
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
func (f *Forward) prepare(c *chunk) error {
	if c.head != nil {
		return nil
	}
	if f.cfg.Gzip {
		// Guess a quarter of the size (logs compress 4-10x); it grows if not.
		z, err := gzipInto(f.bufs.get(len(c.entries)/4), c.entries)
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
	c.frame(f.cfg.RequireAck, f.cfg.Gzip)
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
				f.log.Info("forward: server closed an idle connection", "server", cn.srv.addr)
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
