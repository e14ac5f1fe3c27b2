package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/logagent/logagent/collector"
)

// liveness decides /healthz: the agent is stuck, and a restart is what
// helps, when there is input it has not delivered, the output is able to
// take records, and yet nothing has moved (no byte read, no record
// acknowledged, no batch sent) for liveness_timeout. An outage downstream
// is not the agent's fault: while no server is connected, or a server
// failed (an acknowledgement timed out, a connection broke) since the
// pipeline last moved, the clock does not run, and the kubelet does not
// restart an agent that would only find the same aggregators down. An idle node (nothing
// to read) is healthy however long it is idle.
//
// The decision is made at each probe from what changed since the previous
// one: the kubelet probes every periodSeconds, so a wedge is noticed within
// liveness_timeout plus a probe period.
type liveness struct {
	mu      sync.Mutex
	last    livenessSample
	movedAt time.Time
	started bool
}

// livenessSample is the pipeline's state at one probe.
type livenessSample struct {
	// progress is the collector's: offsets read and acknowledged, files
	// known, batches outstanding change whenever the pipeline moves; bytes
	// unread do not count as movement (a stuck reader stops looking).
	progress collector.Activity
	// accepting: the output can take records now (with Forward, a server
	// is connected; stdout always can).
	accepting bool
	// outputErrAt is the output's last error (a failed connection, an
	// acknowledgement that timed out): one since the pipeline last moved
	// puts the stall on the servers' side.
	outputErrAt time.Time
}

// moved reports whether the pipeline moved between samples s and t.
func (s livenessSample) moved(t livenessSample) bool {
	p, q := s.progress, t.progress
	return p.Read != q.Read || p.Acked != q.Acked || p.Files != q.Files || p.Unacked != q.Unacked
}

// pending reports whether there is input not yet delivered: bytes written
// and not read, or batches sent and not acknowledged.
func (s livenessSample) pending() bool {
	return s.progress.Unread > 0 || s.progress.Unacked > 0
}

// check records a sample taken at now and returns why the agent is stuck,
// or nil. timeout 0 turns the check off.
func (l *liveness) check(now time.Time, s livenessSample, timeout time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	moved := !l.started || s.moved(l.last)
	l.started, l.last = true, s
	serversFault := !s.accepting || s.outputErrAt.After(l.movedAt)
	if moved || !s.pending() || serversFault || timeout <= 0 {
		l.movedAt = now
		return nil
	}
	if still := now.Sub(l.movedAt); still >= timeout {
		return fmt.Errorf("pipeline stuck: %d bytes unread and %d batches unacknowledged, the output accepting, and nothing read, sent or acknowledged for %s (liveness_timeout %s)",
			s.progress.Unread, s.progress.Unacked, still.Round(time.Second), timeout)
	}
	return nil
}

// alive is nil unless the pipeline is stuck (liveness).
func (a *agent) alive() error {
	select {
	case <-a.started:
	default:
		return nil // starting: nothing to judge yet
	}
	a.mu.Lock()
	timeout := a.cfg.LivenessTimeout
	a.mu.Unlock()
	s := livenessSample{progress: a.col.Activity(), accepting: true}
	if a.forward != nil {
		s.accepting = false
		for _, srv := range a.forward.Status().Servers {
			s.accepting = s.accepting || srv.State == "connected"
			if srv.LastErrorAt.After(s.outputErrAt) {
				s.outputErrAt = srv.LastErrorAt
			}
		}
	}
	return a.live.check(time.Now(), s, timeout)
}
