package collector

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.yaml.in/yaml/v3"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
	}{
		{"0", 0}, {"1024", 1024}, {"2MiB", 2 << 20}, {"2Mi", 2 << 20}, {"500KiB/s", 500 << 10}, {" 1GiB ", 1 << 30},
		{"1.5MB", 1500000}, {"800k", 800000}, {"800K", 800000}, {"3kB", 3000}, {"10B", 10}, {"2 MiB", 2 << 20}, {"0.5KiB", 512},
	} {
		got, err := ParseByteSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "-1", "2 parsecs", "MiB", "1.5", "0.3KiB", "1e3", "99999999999GiB", "2MiB/min"} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		} else if !strings.Contains(err.Error(), "size") {
			t.Errorf("ParseByteSize(%q): %v does not say what it read", in, err)
		}
	}
	if s := ByteSize(2 << 20).String(); s != "2MiB" {
		t.Errorf("String() = %q", s)
	}
	var cfg struct {
		A ByteSize `yaml:"a"`
		B ByteSize `yaml:"b"`
	}
	if err := yaml.Unmarshal([]byte("a: 2MiB/s\nb: 4096\n"), &cfg); err != nil || cfg.A != 2<<20 || cfg.B != 4096 {
		t.Errorf("yaml: %+v, %v", cfg, err)
	}
	if err := yaml.Unmarshal([]byte("a: [1]\n"), &cfg); err == nil {
		t.Error("a list decoded as a size")
	}
	if err := yaml.Unmarshal([]byte("a: lots\n"), &cfg); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad size: %v, want an error naming the line", err)
	}
}

// readAsFastAsAllowed is a file's reads under a limiter over a span of
// simulated time: each turn asks for want bytes, waits what it is told,
// and reads them. It returns the bytes read.
func readAsFastAsAllowed(l *RateLimiter, start time.Time, span time.Duration, want int) int64 {
	var total int64
	now := start
	for {
		n, wait := l.Reserve(now, want)
		if n <= 0 {
			panic("nothing granted")
		}
		now = now.Add(wait)
		if now.Sub(start) > span {
			return total
		}
		total += int64(n)
	}
}

// TestRateLimiterPaces: reads are held to the rate (plus the first burst)
// by waiting, never by refusing; a read larger than the burst is cut to it.
func TestRateLimiterPaces(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := NewRateLimiter(RateLimit{BytesPerSecond: 100 << 10, Burst: 64 << 10})
	if n, wait := l.Reserve(t0, 256<<10); n != 64<<10 || wait != 0 {
		t.Errorf("first read: %d bytes after %v, want the burst at once", n, wait)
	}
	if _, wait := l.Reserve(t0, 32<<10); wait < 300*time.Millisecond || wait > 330*time.Millisecond {
		t.Errorf("second read right after: wait %v, want ~320ms (32 KiB at 100 KiB/s)", wait)
	}
	l = NewRateLimiter(RateLimit{BytesPerSecond: 100 << 10, Burst: 64 << 10})
	got := readAsFastAsAllowed(l, t0, 10*time.Second, 256<<10)
	if want := int64(64<<10 + 10*100<<10); got < want-64<<10 || got > want {
		t.Errorf("read %d bytes in 10s, want about %d (burst + 10 s at the rate)", got, want)
	}
}

// TestRateLimiterSet: a limit can be set, changed and lifted while files
// read; no limit grants everything at once; the burst defaults to a second's
// worth and is never below 4 KiB.
func TestRateLimiterSet(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := NewRateLimiter(RateLimit{})
	if n, wait := l.Reserve(t0, 1<<30); n != 1<<30 || wait != 0 {
		t.Errorf("unlimited: %d after %v", n, wait)
	}
	l.Set(RateLimit{BytesPerSecond: 1 << 20}, t0)
	if got := l.Limit(); got.Burst != 1<<20 {
		t.Errorf("default burst %d, want one second's worth", got.Burst)
	}
	if n, wait := l.Reserve(t0, 4<<20); n != 1<<20 || wait != 0 {
		t.Errorf("newly limited: %d after %v, want a full bucket", n, wait)
	}
	l.Set(RateLimit{BytesPerSecond: 10}, t0)
	if got := l.Limit(); got.Burst != minBurst {
		t.Errorf("burst %d, want at least %d", got.Burst, minBurst)
	}
	if got := readAsFastAsAllowed(l, t0.Add(time.Hour), time.Hour, 1<<20); got > 4096+3600*10 {
		t.Errorf("read %d bytes in an hour at 10 B/s", got)
	}
	l.Set(RateLimit{}, t0)
	if _, wait := l.Reserve(t0.Add(2*time.Hour), 1<<20); wait != 0 {
		t.Errorf("lifted: wait %v", wait)
	}
}

// TestRateLimitersShared: the files of one container share its limiter
// (a rotated file being drained and the new one), until both are done.
func TestRateLimitersShared(t *testing.T) {
	s := newRateLimiters()
	now := time.Now()
	r := RateLimit{BytesPerSecond: 1 << 20}
	a := s.acquire("/var/log/pods/ns_p_u/c", r, now)
	b := s.acquire("/var/log/pods/ns_p_u/c", RateLimit{BytesPerSecond: 2 << 20}, now)
	other := s.acquire("/var/log/pods/ns_p_u/d", r, now)
	if a != b || a == other {
		t.Fatal("limiters not shared per container")
	}
	if a.Limit().BytesPerSecond != 2<<20 {
		t.Error("the latest policy does not apply")
	}
	s.release("/var/log/pods/ns_p_u/c")
	if len(s.m) != 2 {
		t.Error("released while a file still reads")
	}
	s.release("/var/log/pods/ns_p_u/c")
	s.release("/var/log/pods/ns_p_u/d")
	if len(s.m) != 0 {
		t.Errorf("%d limiters left", len(s.m))
	}
}

// TestThrottleSeries: per-namespace wait and behind series exist while a
// namespace has limited files, sum the files' values, and go with the last.
func TestThrottleSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newRateLimitMetrics(reg)
	s := newThrottleStats(m)
	a1, a2, b := s.acquire("a"), s.acquire("a"), s.acquire("b")
	a1.Waited(1500 * time.Millisecond)
	a2.Waited(500 * time.Millisecond)
	a1.Behind(100)
	a2.Behind(50)
	a1.Behind(70)
	b.Behind(5)
	if got := testutil.ToFloat64(m.waited.WithLabelValues("a")); got != 2 {
		t.Errorf("waited{a} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.behind.WithLabelValues("a")); got != 120 {
		t.Errorf("behind{a} = %v, want 120", got)
	}
	a1.Release()
	a1.Release() // twice is harmless
	if got := testutil.ToFloat64(m.behind.WithLabelValues("a")); got != 50 {
		t.Errorf("behind{a} = %v after one file went, want 50", got)
	}
	a2.Release()
	b.Release()
	if n := testutil.CollectAndCount(reg); n != 0 {
		t.Errorf("%d series left after every file went", n)
	}
}
