package output

import (
	"context"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The set of servers changes while the output runs: discovery adds and
// removes the addresses a DNS name resolves to, and Reconfigure the
// configured ones. A server that leaves is drained rather than cut off: it
// takes no new chunks, the ones queued for it and not yet written go to
// another server at once, and those written wait for their acks on its
// connection (bounded by ack_timeout, after which they are sent elsewhere),
// so a server that leaves in good order causes no duplicate. Then its loop
// ends and its metric series are deleted: pods come and go with their IP
// addresses, and series of gone servers would pile up.

// originConfig is the origin of the servers listed in forward.servers; a
// discovered server's origin is the discovery name.
const originConfig = "config"

// serverSpec is what a server is and how to reach it.
type serverSpec struct {
	addr    string // "host:port": its identity and the metrics' server label
	dial    string // what to dial: addr, or an SRV target's name with its final dot
	host    string // the name its TLS certificate is checked against, unless tls.server_name is set
	origin  string // originConfig or the discovery name
	standby bool
	weight  int
	auth    ServerAuth // its own, completed from forward's
}

// sameConnection reports whether a connection made for s is one o would
// make: otherwise a change from s to o replaces the connection.
func (s serverSpec) sameConnection(o serverSpec) bool {
	return s.dial == o.dial && s.host == o.host && s.auth == o.auth
}

// serverState is where a server's loop is.
type serverState uint8

const (
	stateConnecting serverState = iota
	stateBackoff
	stateConnected
)

// server is one endpoint and its connection loop. Its fields are guarded by
// Forward.mu, but for the counters and channels, which are set once.
type server struct {
	spec serverSpec

	ctx     context.Context // done once removed, or when Run ends
	cancel  context.CancelFunc
	recycle chan struct{} // asks the loop for a new connection made with the current spec
	running bool          // its loop was started
	removed bool          // no longer wanted: drained, then dropped

	state          serverState
	conn           *conn   // the connection taking its traffic; nil while none (a retiring one may still drain)
	vfinish        float64 // weighted fair queueing: its virtual finish time, bytes over weight
	delivered      int64   // records it acknowledged
	lastErr        error
	lastErrAt      time.Time
	connectedSince time.Time

	// Its series, resolved once: no label lookup per frame.
	recordsSent, bytesSent, batchesSent prometheus.Counter
}

// staticSpecs are the servers of forward.servers.
func staticSpecs(cfg ForwardConfig) []serverSpec {
	specs := make([]serverSpec, 0, len(cfg.Servers))
	for _, s := range cfg.Servers {
		host, _, _ := net.SplitHostPort(s.Address) // checked by Validate
		specs = append(specs, serverSpec{addr: s.Address, dial: s.Address, host: host, origin: originConfig,
			standby: s.Standby, weight: weightOr(s.Weight), auth: s.ServerAuth.or(cfg.auth())})
	}
	return specs
}

func weightOr(w int) int {
	if w <= 0 {
		return DefaultWeight
	}
	return w
}

// desiredLocked is the set the servers should be: the configured ones, then
// the discovered ones that are not also configured.
func (f *Forward) desiredLocked() []serverSpec {
	specs := staticSpecs(f.cfg)
	seen := make(map[string]bool, len(specs))
	for _, s := range specs {
		seen[s.addr] = true
	}
	for _, s := range f.disco.specs(f.cfg) {
		if !seen[s.addr] {
			seen[s.addr] = true
			specs = append(specs, s)
		}
	}
	return specs
}

// reconcileLocked brings the servers to the desired set: it adds the new
// ones, drains the ones that left, and updates the rest in place (a change
// of how to connect replaces their connection, in good order).
func (f *Forward) reconcileLocked() {
	desired := f.desiredLocked()
	want := make(map[string]bool, len(desired))
	for _, spec := range desired {
		want[spec.addr] = true
	}
	for _, s := range f.servers {
		if !s.removed && !want[s.spec.addr] {
			f.removeServerLocked(s)
		}
	}
	for _, spec := range desired {
		s := f.byAddr[spec.addr]
		if s == nil {
			f.addServerLocked(spec)
			continue
		}
		old := s.spec
		s.spec = spec
		if !old.sameConnection(spec) {
			f.recycleLocked(s)
		}
	}
	f.dispatchLocked()
	f.pumpLocked(time.Now())
	f.wakeLocked()
}

func (f *Forward) addServerLocked(spec serverSpec) *server {
	s := &server{spec: spec, recycle: make(chan struct{}, 1),
		recordsSent: f.m.recordsSent.WithLabelValues(spec.addr),
		bytesSent:   f.m.bytesSent.WithLabelValues(spec.addr),
		batchesSent: f.m.batchesSent.WithLabelValues(spec.addr),
	}
	f.servers = append(f.servers, s)
	f.byAddr[spec.addr] = s
	f.refreshUpLocked(spec.addr)
	f.startLoopLocked(s)
	return s
}

// startLoopLocked starts s's connection loop if Run runs.
func (f *Forward) startLoopLocked(s *server) {
	if s.running || f.runCtx == nil || f.stopping {
		return
	}
	s.running = true
	s.ctx, s.cancel = context.WithCancel(f.runCtx)
	ctx := f.runCtx
	f.loops.Go(func() { f.serverLoop(ctx, s) })
}

// removeServerLocked drains s: no new chunks, unwritten ones elsewhere now,
// written ones acknowledged here or sent elsewhere after ack_timeout. Its
// loop ends once its connection is drained.
func (f *Forward) removeServerLocked(s *server) {
	s.removed = true
	if f.byAddr[s.spec.addr] == s {
		delete(f.byAddr, s.spec.addr)
	}
	if !s.running {
		f.dropServerLocked(s)
		return
	}
	if s.conn != nil {
		f.retireConnLocked(s.conn)
	}
	s.cancel() // stops connecting and backing off
}

// recycleLocked has s's loop replace its connection: the new one is made
// with s's current spec, the old one drains as a removed server's does.
func (f *Forward) recycleLocked(s *server) {
	select {
	case s.recycle <- struct{}{}:
	default:
	}
}

// dropServerLocked forgets a removed server whose loop has ended, with its
// series unless another server has its address again.
func (f *Forward) dropServerLocked(s *server) {
	for i, x := range f.servers {
		if x == s {
			f.servers = append(f.servers[:i], f.servers[i+1:]...)
			break
		}
	}
	addr := s.spec.addr
	if f.byAddr[addr] != nil {
		f.refreshUpLocked(addr)
		return
	}
	labels := prometheus.Labels{"server": addr}
	for _, v := range []*prometheus.CounterVec{f.m.recordsSent, f.m.bytesSent, f.m.batchesSent, f.m.retries, f.m.errors} {
		v.DeletePartialMatch(labels)
	}
	f.m.serverUp.DeletePartialMatch(labels)
}

// serverExited is the end of s's loop.
func (f *Forward) serverExited(s *server) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s.conn = nil
	if s.removed {
		f.dropServerLocked(s)
	} else {
		f.refreshUpLocked(s.spec.addr)
	}
}

// refreshUpLocked sets logagent_output_server_up for addr: 1 while a server
// with that address has a connection taking traffic.
func (f *Forward) refreshUpLocked(addr string) {
	up := 0.0
	for _, s := range f.servers {
		if s.spec.addr == addr && s.conn != nil {
			up = 1
		}
	}
	f.m.serverUp.WithLabelValues(addr).Set(up)
}

// usable reports whether cn may take new chunks: it is not retiring, and
// it is a primary's, or a standby's while no primary is up.
func usable(cn *conn, primaryUp bool) bool {
	return !cn.retiring && cn.srv.spec.standby != primaryUp
}

func (f *Forward) primaryUpLocked() bool {
	for _, cn := range f.conns {
		if !cn.retiring && !cn.srv.spec.standby {
			return true
		}
	}
	return false
}

// levelLocked starts a server that begins to take traffic level with the
// least served of the others, so that it does not get everything until it
// has caught up with their whole history.
func (f *Forward) levelLocked(s *server) {
	primaryUp := f.primaryUpLocked()
	first := true
	low := 0.0
	for _, cn := range f.conns {
		if cn.srv == s || !usable(cn, primaryUp) {
			continue
		}
		if first || cn.srv.vfinish < low {
			low, first = cn.srv.vfinish, false
		}
	}
	if !first && s.vfinish < low {
		s.vfinish = low
	}
}

// retireConnLocked stops giving cn chunks and closes it once those written
// to it are delivered; the unwritten ones go to another connection now.
func (f *Forward) retireConnLocked(cn *conn) {
	if cn.failed || cn.retiring {
		return
	}
	cn.retiring = true
	f.lastUp = time.Now()
	s := cn.srv
	if s.conn == cn {
		s.conn = nil
	}
	f.refreshUpLocked(s.spec.addr)
	if len(cn.sendq) > 0 {
		for _, c := range cn.sendq {
			cn.loadBytes -= c.bytes
			cn.loadChunks--
		}
		f.requeueLocked(cn.sendq, nil)
		cn.sendq = nil
	}
	f.closeIfDrainedLocked(cn)
	f.dispatchLocked()
	f.pumpLocked(time.Now())
}

// closeIfDrainedLocked closes a retiring connection with nothing left on it.
func (f *Forward) closeIfDrainedLocked(cn *conn) {
	if cn.retiring && !cn.failed && cn.loadChunks == 0 {
		f.log.Info("forward: drained connection closed", "server", cn.srv.spec.addr)
		f.failConnLocked(cn, "", nil)
	}
}
