package collector

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// How often a reader asks its file's policy again (a pod's annotations were
// edited, the configuration reloaded), and how long a reader about to read
// waits, at most, for a provisional policy to become final (its pod's
// metadata to arrive).
const (
	policyRecheck = time.Second
	policyWaitMax = 10 * time.Second
	policyWaitTry = 20 * time.Millisecond
)

// policies is the collector's side of the per-container policies: where
// they come from (replaceable while running), the limiters shared by each
// container's files, and the metrics.
type policies struct {
	conf      atomic.Pointer[Policies]        // the configuration's: limits, and the source if src is nil
	src       atomic.Pointer[policySourceBox] // SetPolicySource's
	limiters  *rateLimiters
	throttles *throttleStats
	ml        *multilineMetrics
}

type policySourceBox struct{ PolicySource }

func newPolicyRuntime(p *Policies, reg prometheus.Registerer) *policies {
	pl := &policies{
		limiters:  newRateLimiters(),
		throttles: newThrottleStats(newRateLimitMetrics(reg)),
		ml:        newMultilineMetrics(reg),
	}
	pl.conf.Store(p)
	return pl
}

// Policies are the configuration's policies in force (for the Enricher's
// SetPolicies). A reload (Reconfigure) replaces them: ask again rather than
// keep them.
func (c *Collector) Policies() *Policies { return c.pol.conf.Load() }

// source is who decides the files' policies.
func (pl *policies) source() PolicySource {
	if b := pl.src.Load(); b != nil {
		return b.PolicySource
	}
	return pl.conf.Load()
}

// SetPolicies replaces the configuration's policies (a reload): the bounds
// of multiline groups opened from now on, and, unless SetPolicySource gave
// another source, each file's rule and rate limit, asked again within a
// second. The Enricher, as the source, needs its own SetPolicies too.
func (c *Collector) SetPolicies(p *Policies) {
	if p != nil {
		c.pol.conf.Store(p)
	}
}

// SetPolicySource makes src decide each file's multiline rule and rate
// limit: the Enricher (which knows pod labels and annotations), or a
// *Policies (the configuration alone, the default). Safe while the
// collector runs: readers ask again within a second, and apply a new
// multiline rule from the next line that opens no group.
func (c *Collector) SetPolicySource(src PolicySource) {
	if src == nil {
		src = noPolicy{}
	}
	c.pol.src.Store(&policySourceBox{src})
}

type noPolicy struct{}

func (noPolicy) Policy(*Source) Policy { return Policy{} }

// policyState is a reader's policy: the joiner of its multiline rule, its
// container's rate limiter.
type policyState struct {
	polIn    Policy    // as applied
	polNext  Policy    // as last answered, applied once no group is open
	polAsked time.Time // when the source was last asked; zero: never
	j        *Joiner   // nil: no rule
	mlDue    time.Time // when the open groups are due (FlushIdle); zero: none open
	lim      *RateLimiter
	thr      *Throttle
	prepaid  int64 // bytes reserved from the limiter and not read yet
}

// askPolicy asks the file's policy, on the first read of a reader (waiting,
// a little, for a provisional answer to become final: a new pod's first
// stack trace must be joined by the rule its annotations name) and then
// every policyRecheck, and applies it.
func (r *reader) askPolicy(ctx context.Context) error {
	now := time.Now()
	if !r.polAsked.IsZero() && now.Sub(r.polAsked) < policyRecheck {
		if r.polNext != r.polIn {
			r.applyPolicy(now)
		}
		return nil
	}
	src := r.c.pol.source()
	p := src.Policy(r.src)
	if r.polAsked.IsZero() && p.Provisional {
		deadline := now.Add(policyWaitMax)
		t := time.NewTimer(policyWaitTry)
		for p.Provisional && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			t.Reset(policyWaitTry)
			p = src.Policy(r.src)
		}
		t.Stop()
		now = time.Now()
	}
	r.polAsked = now
	p.Provisional = false
	r.polNext = p
	r.applyPolicy(now)
	return nil
}

// applyPolicy puts r.polNext in force: the rate limit at once, a new multiline
// rule once no group is open (a group follows the rule that opened it).
func (r *reader) applyPolicy(now time.Time) {
	if r.polNext.RateLimit != r.polIn.RateLimit {
		r.setRateLimit(r.polNext.RateLimit, now)
		r.polIn.RateLimit = r.polNext.RateLimit
	}
	if r.polNext.Multiline != r.polIn.Multiline && (r.j == nil || !r.j.Open()) {
		r.j = nil
		if rule := r.polNext.Multiline; rule != nil {
			r.j = NewJoiner(rule, r.c.pol.conf.Load().Limits(), r.c.pol.ml)
			r.j.alloc = &r.dec.alloc
		}
		r.polIn.Multiline = r.polNext.Multiline
		r.mlDue = time.Time{}
	}
}

// setRateLimit changes the file's rate limit.
func (r *reader) setRateLimit(rl RateLimit, now time.Time) {
	if !rl.Limited() {
		r.releaseLimit()
		return
	}
	if r.lim == nil {
		r.lim = r.c.pol.limiters.acquire(r.f.dir, rl, now)
		r.thr = r.c.pol.throttles.acquire(r.src.Namespace)
		return
	}
	r.lim.Set(rl, now)
}

// releaseLimit gives back the file's limiter and its share of the
// namespace's series.
func (r *reader) releaseLimit() {
	if r.lim == nil {
		return
	}
	r.c.pol.limiters.release(r.f.dir)
	r.thr.Release()
	r.lim, r.thr, r.prepaid = nil, nil, 0
}

// rateWait reserves want bytes from the container's limiter before they
// are read, and waits as long as the limiter says: the file is the buffer,
// nothing is dropped. It returns true if it waited: the file may have
// changed meanwhile, so the caller looks at it again before reading (the
// bytes stay reserved). The whole read is reserved, in bursts if it is
// larger than the burst, rather than read in smaller pieces: a read must
// hold at least the longest line the reader asked for.
func (r *reader) rateWait(ctx context.Context, size int64, want int) (bool, error) {
	need := int64(want) - r.prepaid
	if r.lim == nil || need <= 0 {
		return false, nil
	}
	now := time.Now()
	var wait time.Duration
	for need > 0 {
		n, d := r.lim.Reserve(now, int(need))
		if n <= 0 {
			break
		}
		need -= int64(n)
		r.prepaid += int64(n)
		wait = max(wait, d)
	}
	if wait <= 0 {
		r.thr.Behind(0)
		return false, nil
	}
	r.thr.Behind(size - r.off)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		r.thr.Waited(time.Since(now))
		return false, ctx.Err()
	case <-t.C:
	}
	r.thr.Waited(time.Since(now))
	r.verify = true
	return true, nil
}

// spent takes n bytes consumed off what was reserved.
func (r *reader) spent(n int) {
	if r.lim != nil {
		r.prepaid = max(r.prepaid-int64(n), 0)
	}
}

// join passes the decoder's records through the joiner, if the file has a
// rule, to add.
func (r *reader) joinInto(add func(Record)) func(Record) {
	if r.j == nil {
		return add
	}
	j, d := r.j, r.dec
	return func(rec Record) { j.Add(rec, d.emitAt, add) }
}

// safeOffset is how far the checkpoint may move: to consumed, but never
// past a record being joined from partial lines, nor past the first line
// of an open multiline group.
func (r *reader) safeOffset(consumed int64) int64 {
	safe := consumed
	if ps, ok := r.dec.pendingStart(); ok && ps < safe {
		safe = ps
	}
	if r.j != nil {
		if js, ok := r.j.OpenStart(); ok && js < safe {
			safe = js
		}
	}
	return safe
}

// resumeFrom is where a next reader of the file starts when this one stops
// before the file's end: at the oldest record held, partial or in a group.
func (r *reader) resumeFrom() int64 {
	from := r.dec.stall(r.off)
	if r.j != nil {
		if js, ok := r.j.OpenStart(); ok && js < from {
			from = js
		}
	}
	return from
}

// joinerHeld is the memory the open multiline groups hold.
func (r *reader) joinerHeld() int64 {
	if r.j == nil {
		return 0
	}
	return r.j.Held()
}

// staleWait shortens wait (negative: none) to when the oldest partial
// record or open group is due to be flushed.
func (r *reader) staleWait(wait time.Duration) time.Duration {
	if last, ok := r.dec.oldestPiece(); ok {
		wait = minWait(wait, max(time.Duration(last+int64(r.c.live().PartialFlushTimeout)-time.Now().UnixNano()), time.Millisecond))
	}
	if !r.mlDue.IsZero() {
		wait = minWait(wait, max(time.Until(r.mlDue), time.Millisecond))
	}
	return wait
}

// closePolicy releases the reader's limiter.
func (r *reader) closePolicy() { r.releaseLimit() }

// flushGroups sends the open multiline groups as they are (the file was
// truncated under them: what would continue them is gone).
func (r *reader) flushGroups(ctx context.Context) {
	if r.j == nil || !r.j.Open() {
		return
	}
	var recs []Record
	r.j.Flush(func(rec Record) { recs = append(recs, rec) })
	r.mlDue = time.Time{}
	r.cut(ctx, recs, r.off, nil)
}
