// Package forwardtest is a Forward protocol v1 server for tests and
// benchmarks: Message, Forward, PackedForward and CompressedPackedForward
// modes, acks, TLS and the HELO/PING/PONG shared-key handshake, written from
// the spec, with knobs to withhold, reorder and lose acks and to reset or
// kill connections. It validates every entry and tallies what it received.
package forwardtest

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
	"github.com/tinylib/msgp/msgp"
)

// Config configures a Receiver.
type Config struct {
	// TLS serves TLS when set.
	TLS *tls.Config
	// SharedKey requires the HELO/PING/PONG handshake when set.
	SharedKey string
	// Hostname is the server's self_hostname in PONG (default "forwardtest").
	Hostname string
	// Users turns on user authentication in the handshake: username -> password.
	Users map[string]string
}

// Receiver is a running Forward server on 127.0.0.1.
type Receiver struct {
	cfg   Config
	tally *Tally
	ln    net.Listener

	mu         sync.Mutex
	conns      map[*rconn]struct{}
	hold       bool
	held       []heldAck
	resetAfter int // reset the next connection that reaches this many frames (0: off)
	closed     bool
	wg         sync.WaitGroup

	authFailures atomic.Int64
	tlsFailures  atomic.Int64
	conns0       atomic.Int64
	ended        atomic.Int64
	frames       atomic.Int64
	records      atomic.Int64
}

type rconn struct {
	nc       net.Conn
	wmu      sync.Mutex
	frames   int
	receipts []*Receipt
}

type heldAck struct {
	rc *rconn
	r  *Receipt
}

// Start listens on addr ("127.0.0.1:0" for any port) and serves until Close.
func Start(addr string, cfg Config, t *Tally) (*Receiver, error) {
	if cfg.Hostname == "" {
		cfg.Hostname = "forwardtest"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("forwardtest listen %s: %w", addr, err)
	}
	r := &Receiver{cfg: cfg, tally: t, ln: ln, conns: make(map[*rconn]struct{})}
	r.wg.Go(r.accept)
	return r, nil
}

// Addr is the listening address.
func (r *Receiver) Addr() string { return r.ln.Addr().String() }

// AuthFailures counts handshakes the receiver refused.
func (r *Receiver) AuthFailures() int { return int(r.authFailures.Load()) }

// TLSFailures counts TLS handshakes that failed.
func (r *Receiver) TLSFailures() int { return int(r.tlsFailures.Load()) }

// Frames counts frames this receiver took in.
func (r *Receiver) Frames() int { return int(r.frames.Load()) }

// Records counts the entries this receiver took in, duplicates included.
func (r *Receiver) Records() int { return int(r.records.Load()) }

// SetSharedKey changes the shared key new connections must use (as a
// restarted or reloaded Fluentd would); connections open keep theirs.
func (r *Receiver) SetSharedKey(key string) {
	r.mu.Lock()
	r.cfg.SharedKey = key
	r.mu.Unlock()
}

// CloseConns kills every open connection (abruptly: RST) and goes on
// accepting new ones, as a receiver that restarts between two connects.
func (r *Receiver) CloseConns() {
	r.mu.Lock()
	conns := make([]*rconn, 0, len(r.conns))
	for rc := range r.conns {
		conns = append(conns, rc)
	}
	r.mu.Unlock()
	for _, rc := range conns {
		r.kill(rc, true)
	}
}

// Ended counts connections that are over (acks written to them are lost).
func (r *Receiver) Ended() int { return int(r.ended.Load()) }

// Connections counts accepted connections.
func (r *Receiver) Connections() int { return int(r.conns0.Load()) }

// HoldAcks makes the receiver keep acks back until ReleaseAcks.
func (r *Receiver) HoldAcks() {
	r.mu.Lock()
	r.hold = true
	r.mu.Unlock()
}

// Held is the number of acks held back.
func (r *Receiver) Held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}

// ReleaseAcks writes the held acks, newest first when reverse, and stops holding.
func (r *Receiver) ReleaseAcks(reverse bool) int {
	r.mu.Lock()
	held := r.held
	r.held = nil
	r.hold = false
	r.mu.Unlock()
	for i := range held {
		h := held[i]
		if reverse {
			h = held[len(held)-1-i]
		}
		r.writeAck(h.rc, h.r)
	}
	return len(held)
}

// ResetAfter makes the next connection that receives its n-th frame close
// abruptly (RST) right after taking that frame in, without acking it. Once.
func (r *Receiver) ResetAfter(n int) {
	r.mu.Lock()
	r.resetAfter = n
	r.mu.Unlock()
}

// Close stops listening and kills every connection.
func (r *Receiver) Close() {
	r.mu.Lock()
	r.closed = true
	conns := make([]*rconn, 0, len(r.conns))
	for rc := range r.conns {
		conns = append(conns, rc)
	}
	r.mu.Unlock()
	r.ln.Close()
	for _, rc := range conns {
		r.kill(rc, false)
	}
	r.wg.Wait()
}

func (r *Receiver) kill(rc *rconn, reset bool) {
	if tc, ok := rc.nc.(*net.TCPConn); ok && reset {
		tc.SetLinger(0)
	}
	if tc, ok := rc.nc.(*tls.Conn); ok && reset {
		if t, ok := tc.NetConn().(*net.TCPConn); ok {
			t.SetLinger(0)
		}
	}
	rc.nc.Close()
	r.mu.Lock()
	rs := rc.receipts
	r.mu.Unlock()
	r.tally.markKilled(rs)
}

func (r *Receiver) accept() {
	for {
		nc, err := r.ln.Accept()
		if err != nil {
			return
		}
		if r.cfg.TLS != nil {
			nc = tls.Server(nc, r.cfg.TLS)
		}
		rc := &rconn{nc: nc}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			nc.Close()
			return
		}
		r.conns[rc] = struct{}{}
		r.mu.Unlock()
		r.conns0.Add(1)
		r.wg.Go(func() {
			defer func() {
				nc.Close()
				r.mu.Lock()
				delete(r.conns, rc)
				r.mu.Unlock()
				r.ended.Add(1)
			}()
			r.serve(rc)
		})
	}
}

func (r *Receiver) serve(rc *rconn) {
	if tc, ok := rc.nc.(*tls.Conn); ok {
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			r.tlsFailures.Add(1)
			return
		}
		tc.SetDeadline(time.Time{})
	}
	mr := msgp.NewReaderSize(rc.nc, 64<<10)
	r.mu.Lock()
	key := r.cfg.SharedKey
	r.mu.Unlock()
	if key != "" {
		if err := r.handshake(rc, mr, key); err != nil {
			return
		}
	}
	var payload []byte
	kubes := make(map[string][]byte)
	for {
		rec, n, err := r.readFrame(mr, &payload, kubes)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isConnReset(err) {
				r.tally.invalidEntry("frame: %v", err)
			}
			return
		}
		r.mu.Lock()
		rc.frames++
		rc.receipts = append(rc.receipts, rec)
		reset := r.resetAfter > 0 && rc.frames >= r.resetAfter
		if reset {
			r.resetAfter = 0
		}
		hold := r.hold && rec.Chunk != ""
		if hold {
			r.held = append(r.held, heldAck{rc, rec})
		}
		r.mu.Unlock()
		r.frames.Add(1)
		r.records.Add(int64(n))
		r.tally.add(rec, n)
		if reset {
			r.kill(rc, true)
			return
		}
		if rec.Chunk != "" && !hold {
			r.writeAck(rc, rec)
		}
	}
}

func isConnReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne)
}

func (r *Receiver) writeAck(rc *rconn, rec *Receipt) {
	b, _ := fluent.AckResp{Ack: rec.Chunk}.MarshalMsg(nil)
	rc.wmu.Lock()
	rc.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := rc.nc.Write(b)
	rc.wmu.Unlock()
	if err == nil {
		r.tally.markAcked(rec)
	}
}

// readFrame reads one Forward message in any mode and returns its receipt
// and number of entries.
func (r *Receiver) readFrame(mr *msgp.Reader, buf *[]byte, kubes map[string][]byte) (*Receipt, int, error) {
	n, err := mr.ReadArrayHeader()
	if err != nil {
		return nil, 0, err
	}
	if n < 2 || n > 4 {
		return nil, 0, fmt.Errorf("message has %d elements", n)
	}
	tag, err := mr.ReadString()
	if err != nil {
		return nil, 0, fmt.Errorf("tag: %w", err)
	}
	rec := &Receipt{Tag: tag}
	t, err := mr.NextType()
	if err != nil {
		return nil, 0, err
	}
	var entries []byte
	message := false
	switch t {
	case msgp.BinType: // PackedForward
		*buf, err = mr.ReadBytes((*buf)[:0])
		entries = *buf
	case msgp.StrType: // PackedForward, as older clients send it
		*buf, err = mr.ReadStringAsBytes((*buf)[:0])
		entries = *buf
	case msgp.ArrayType: // Forward: re-pack its entries to parse them alike
		var m uint32
		if m, err = mr.ReadArrayHeader(); err == nil {
			for range m {
				var raw msgp.Raw
				if err = raw.DecodeMsg(mr); err != nil {
					break
				}
				entries = append(entries, raw...)
			}
		}
	default: // Message: time, record
		message = true
		var tm, rcd msgp.Raw
		if err = tm.DecodeMsg(mr); err == nil {
			err = rcd.DecodeMsg(mr)
		}
		entries = msgp.AppendArrayHeader(nil, 2)
		entries = append(append(entries, tm...), rcd...)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("entries: %w", err)
	}
	size := -1
	if (message && n == 4) || (!message && n == 3) {
		if size, err = r.readOptions(mr, rec); err != nil {
			return nil, 0, err
		}
	}
	if rec.Compressed {
		zr, err := gzip.NewReader(bytes.NewReader(entries))
		if err != nil {
			return nil, 0, fmt.Errorf("gzip: %w", err)
		}
		if entries, err = io.ReadAll(zr); err != nil {
			return nil, 0, fmt.Errorf("gzip: %w", err)
		}
	}
	count := r.parseEntries(entries, rec, kubes)
	if size >= 0 && size != count {
		r.tally.invalidEntry("option size %d but %d entries", size, count)
	}
	return rec, count, nil
}

func (r *Receiver) readOptions(mr *msgp.Reader, rec *Receipt) (int, error) {
	size := -1
	if t, _ := mr.NextType(); t == msgp.NilType {
		return size, mr.ReadNil()
	}
	sz, err := mr.ReadMapHeader()
	if err != nil {
		return size, fmt.Errorf("options: %w", err)
	}
	for range sz {
		key, err := mr.ReadString()
		if err != nil {
			return size, fmt.Errorf("option key: %w", err)
		}
		switch key {
		case "size":
			size, err = mr.ReadInt()
		case "chunk":
			rec.Chunk, err = mr.ReadString()
		case "compressed":
			var c string
			if c, err = mr.ReadString(); err == nil {
				if c != "gzip" && c != "text" {
					err = fmt.Errorf("unknown compression %q", c)
				}
				rec.Compressed = c == "gzip"
			}
		default:
			err = mr.Skip()
		}
		if err != nil {
			return size, fmt.Errorf("option %s: %w", key, err)
		}
	}
	return size, nil
}

// parseEntries walks concatenated [time, record] entries, checking each.
func (r *Receiver) parseEntries(b []byte, rec *Receipt, kubes map[string][]byte) int {
	count := 0
	var arrived time.Time
	if r.tally.Observe != nil {
		arrived = time.Now()
	}
	for len(b) > 0 {
		var err error
		var sz uint32
		if sz, b, err = msgp.ReadArrayHeaderBytes(b); err != nil || sz != 2 {
			r.tally.invalidEntry("entry %d: not a [time, record] array (size %d, %v)", count, sz, err)
			return count
		}
		var tm time.Time
		switch msgp.NextType(b) {
		case msgp.ExtensionType:
			var et fluent.EventTime
			if b, err = msgp.ReadExtensionBytes(b, &et); err != nil {
				r.tally.invalidEntry("entry %d: EventTime: %v", count, err)
				return count
			}
			tm = time.Time(et)
		case msgp.IntType, msgp.UintType:
			var s int64
			if s, b, err = msgp.ReadInt64Bytes(b); err != nil {
				r.tally.invalidEntry("entry %d: time: %v", count, err)
				return count
			}
			tm = time.Unix(s, 0)
		default:
			// e.g. Fluent Bit 5's [[time, metadata], record]: Fluentd drops these.
			r.tally.invalidEntry("entry %d: time is a %s, not EventTime or integer", count, msgp.NextType(b))
			return count
		}
		count++
		if r.tally.CountOnly && r.tally.Observe == nil {
			if b, err = msgp.Skip(b); err != nil {
				r.tally.invalidEntry("entry %d: record: %v", count, err)
				return count
			}
			continue
		}
		ev := Event{Time: tm}
		if b, err = parseRecord(b, &ev, kubes); err != nil {
			r.tally.invalidEntry("entry %d: %v", count, err)
			return count
		}
		if r.tally.Observe != nil {
			r.tally.Observe(arrived, &ev)
		}
		if !r.tally.CountOnly {
			rec.Events = append(rec.Events, ev)
		}
	}
	return count
}

// kubes interns the "kubernetes" maps: records of one source share one.
func parseRecord(b []byte, ev *Event, kubes map[string][]byte) ([]byte, error) {
	n, b, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return b, fmt.Errorf("record is not a map: %w", err)
	}
	for range n {
		var key string
		if key, b, err = msgp.ReadStringBytes(b); err != nil {
			return b, fmt.Errorf("record key: %w", err)
		}
		switch key {
		case "log":
			ev.Log, b, err = msgp.ReadStringBytes(b)
		case "stream":
			ev.Stream, b, err = msgp.ReadStringBytes(b)
			if err == nil && ev.Stream != "stdout" && ev.Stream != "stderr" {
				err = fmt.Errorf("stream %q", ev.Stream)
			}
		case "kubernetes":
			if msgp.NextType(b) != msgp.MapType {
				return b, fmt.Errorf("kubernetes is a %s, not a map", msgp.NextType(b))
			}
			rest, serr := msgp.Skip(b)
			if serr != nil {
				return b, fmt.Errorf("kubernetes: %w", serr)
			}
			raw := b[:len(b)-len(rest)]
			if k, ok := kubes[string(raw)]; ok {
				ev.Kubernetes = k
			} else {
				ev.Kubernetes = append([]byte(nil), raw...)
				if len(kubes) < 10000 {
					kubes[string(raw)] = ev.Kubernetes
				}
			}
			b = rest
		default:
			b, err = msgp.Skip(b)
		}
		if err != nil {
			return b, fmt.Errorf("record %s: %w", key, err)
		}
	}
	return b, nil
}

// handshake runs the server side of HELO/PING/PONG.
func (r *Receiver) handshake(rc *rconn, mr *msgp.Reader, sharedKey string) error {
	nonce := randomBytes(16)
	var authSalt []byte
	if len(r.cfg.Users) > 0 {
		authSalt = randomBytes(16)
	}
	helo := msgp.AppendArrayHeader(nil, 2)
	helo = msgp.AppendString(helo, "HELO")
	helo = msgp.AppendMapHeader(helo, 3)
	helo = msgp.AppendString(helo, "nonce")
	helo = msgp.AppendBytes(helo, nonce) // binary, as Fluentd's random nonce
	helo = msgp.AppendString(helo, "auth")
	helo = msgp.AppendBytes(helo, authSalt)
	helo = msgp.AppendString(helo, "keepalive")
	helo = msgp.AppendBool(helo, true)
	if _, err := rc.nc.Write(helo); err != nil {
		return err
	}
	n, err := mr.ReadArrayHeader()
	if err != nil {
		return err
	}
	fields := make([]string, 0, 6)
	for range n {
		s, err := mr.ReadString()
		if err != nil {
			return r.refuse(rc, "invalid ping message")
		}
		fields = append(fields, s)
	}
	if n != 6 || fields[0] != "PING" {
		return r.refuse(rc, "invalid ping message")
	}
	host, salt, digest, user, passDigest := fields[1], fields[2], fields[3], fields[4], fields[5]
	if digest != hexSHA512(salt, host, string(nonce), sharedKey) {
		return r.refuse(rc, "shared_key mismatch")
	}
	if len(r.cfg.Users) > 0 {
		pw, ok := r.cfg.Users[user]
		if !ok || passDigest != hexSHA512(string(authSalt), user, pw) {
			return r.refuse(rc, "username/password mismatch")
		}
	}
	pong := msgp.AppendArrayHeader(nil, 5)
	pong = msgp.AppendString(pong, "PONG")
	pong = msgp.AppendBool(pong, true)
	pong = msgp.AppendString(pong, "")
	pong = msgp.AppendString(pong, r.cfg.Hostname)
	pong = msgp.AppendString(pong, hexSHA512(salt, r.cfg.Hostname, string(nonce), sharedKey))
	_, err = rc.nc.Write(pong)
	return err
}

func (r *Receiver) refuse(rc *rconn, reason string) error {
	r.authFailures.Add(1)
	pong := msgp.AppendArrayHeader(nil, 5)
	pong = msgp.AppendString(pong, "PONG")
	pong = msgp.AppendBool(pong, false)
	pong = msgp.AppendString(pong, reason)
	pong = msgp.AppendString(pong, "")
	pong = msgp.AppendString(pong, "")
	rc.nc.Write(pong)
	return errors.New(reason)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func hexSHA512(parts ...string) string {
	h := sha512.New()
	for _, p := range parts {
		io.WriteString(h, p)
	}
	return hex.EncodeToString(h.Sum(nil))
}
