package collector

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// RateLimit caps how fast one container's log files are read. The zero value
// means no limit.
type RateLimit struct {
	BytesPerSecond int64
	Burst          int64 // bytes that may be read at once after a quiet spell
}

// Limited reports whether r limits anything.
func (r RateLimit) Limited() bool { return r.BytesPerSecond > 0 }

// minBurst keeps reads from becoming tiny under a small limit: a burst
// smaller than a few pages would split every line into several reads.
const minBurst = 4096

// withDefaults fills the burst: one second's worth, at least minBurst.
func (r RateLimit) withDefaults() RateLimit {
	if !r.Limited() {
		return RateLimit{}
	}
	if r.Burst <= 0 {
		r.Burst = r.BytesPerSecond
	}
	r.Burst = max(r.Burst, minBurst)
	return r
}

// RateLimiter paces the reads of one container's files: a token bucket of
// bytes. It never drops anything: Reserve says how long to wait before
// reading, and the file, on disk, is the buffer in the meantime. Safe for
// concurrent use by the container's files (a rotated file being drained and
// the new live one share their container's limiter).
type RateLimiter struct {
	mu  sync.Mutex
	cur RateLimit
	lim *rate.Limiter // nil while unlimited
}

// NewRateLimiter returns a limiter for r (no limit if r is zero), full: the
// first burst is read at once.
func NewRateLimiter(r RateLimit) *RateLimiter {
	l := &RateLimiter{}
	l.Set(r, time.Now())
	return l
}

// Set changes the limit, from now on (the pod's annotation changed, or its
// policy arrived after its file was opened). Tokens saved up are kept, up to
// the new burst; a limit where there was none starts with a full bucket.
func (l *RateLimiter) Set(r RateLimit, now time.Time) {
	r = r.withDefaults()
	l.mu.Lock()
	defer l.mu.Unlock()
	if r == l.cur {
		return
	}
	l.cur = r
	burst := int(min(r.Burst, math.MaxInt32))
	switch {
	case !r.Limited():
		l.lim = nil
	case l.lim == nil:
		l.lim = rate.NewLimiter(rate.Limit(r.BytesPerSecond), burst)
	default:
		l.lim.SetLimitAt(now, rate.Limit(r.BytesPerSecond))
		l.lim.SetBurstAt(now, burst)
	}
}

// Limit is the limit in force.
func (l *RateLimiter) Limit() RateLimit {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur
}

// Reserve takes up to want bytes from the bucket for a read of that size
// starting now, and returns how many bytes the read may take (want, or the
// burst if want is larger) and how long to wait before reading them. The
// bytes are spent whether or not the caller reads them all: ask for what the
// file holds (size minus offset, at most the read size).
func (l *RateLimiter) Reserve(now time.Time, want int) (n int, wait time.Duration) {
	if want <= 0 {
		return 0, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lim == nil {
		return want, 0
	}
	n = int(min(int64(want), l.cur.Burst))
	return n, l.lim.ReserveN(now, n).DelayFrom(now)
}

// tokens is what the bucket holds at now (for tests and debugging).
func (l *RateLimiter) tokens(now time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lim == nil {
		return 0
	}
	return l.lim.TokensAt(now)
}

// rateLimiters shares one RateLimiter among the files of each container.
type rateLimiters struct {
	mu sync.Mutex
	m  map[string]*sharedLimiter // by container log directory
}

type sharedLimiter struct {
	*RateLimiter
	refs int
}

func newRateLimiters() *rateLimiters {
	return &rateLimiters{m: make(map[string]*sharedLimiter)}
}

// acquire returns the limiter of the container whose log directory is dir,
// set to r. Call release when the file is done with it.
func (s *rateLimiters) acquire(dir string, r RateLimit, now time.Time) *RateLimiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[dir]
	if e == nil {
		e = &sharedLimiter{RateLimiter: NewRateLimiter(r)}
		s.m[dir] = e
	} else {
		e.Set(r, now)
	}
	e.refs++
	return e.RateLimiter
}

func (s *rateLimiters) release(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[dir]; e != nil {
		if e.refs--; e.refs <= 0 {
			delete(s.m, dir)
		}
	}
}

// throttleStats are the rate limits' per-namespace series: time waited and
// bytes behind. A namespace's series exist while one of its files is
// limited, and are deleted with the last one, so namespaces that come and go
// leave no series behind.
type throttleStats struct {
	m  *rateLimitMetrics
	mu sync.Mutex
	ns map[string]*nsThrottle
}

type nsThrottle struct {
	refs   int
	waited prometheus.Counter
	behind prometheus.Gauge
	lag    atomic.Int64 // sum of the files' lags
}

func newThrottleStats(m *rateLimitMetrics) *throttleStats {
	return &throttleStats{m: m, ns: make(map[string]*nsThrottle)}
}

// Throttle is one file's share of its namespace's rate-limit series.
type Throttle struct {
	s   *throttleStats
	ns  string
	t   *nsThrottle
	lag int64
}

// acquire returns the file's handle on its namespace's series.
func (s *throttleStats) acquire(namespace string) *Throttle {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.ns[namespace]
	if t == nil {
		t = &nsThrottle{
			waited: s.m.waited.WithLabelValues(namespace),
			behind: s.m.behind.WithLabelValues(namespace),
		}
		s.ns[namespace] = t
	}
	t.refs++
	return &Throttle{s: s, ns: namespace, t: t}
}

// Waited counts time the file waited for its rate limit.
func (h *Throttle) Waited(d time.Duration) {
	if d > 0 {
		h.t.waited.Add(d.Seconds())
	}
}

// Behind sets the file's unread bytes (size minus offset) while it is held
// by its limit; 0 once it has caught up.
func (h *Throttle) Behind(bytes int64) {
	if d := bytes - h.lag; d != 0 {
		h.lag = bytes
		h.t.behind.Set(float64(h.t.lag.Add(d)))
	}
}

// Release gives the handle back: the file is closed, or no longer limited.
// The namespace's series go with its last file.
func (h *Throttle) Release() {
	if h.t == nil {
		return
	}
	h.Behind(0)
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.t.refs--; h.t.refs == 0 {
		delete(s.ns, h.ns)
		s.m.waited.DeleteLabelValues(h.ns)
		s.m.behind.DeleteLabelValues(h.ns)
	}
	h.t = nil
}
