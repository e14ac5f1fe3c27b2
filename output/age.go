package output

import (
	"math"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// recordAgeOpts names the histogram; its buckets go from fresh (tens of
// milliseconds) to a backlog (a quarter of an hour).
var recordAgeOpts = prometheus.HistogramOpts{
	Name:    "logagent_output_record_age_seconds",
	Help:    "Age of records when delivered (acknowledged by a server, or written): delivery time minus the record's own time from the container runtime.",
	Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900},
}

var recordAgeBuckets = recordAgeOpts.Buckets

// ageHistogram is the histogram of record age at delivery: delivery time
// minus the record's own time (the runtime's timestamp). It is a Prometheus
// collector of its own rather than a prometheus.Histogram because it takes a
// chunk's records in one call: each record costs a bucket search and a local
// increment, and the shared counters are updated once per chunk.
type ageHistogram struct {
	desc    *prometheus.Desc
	counts  []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sumBits atomic.Uint64   // float64 seconds
}

func newAgeHistogram(output string) *ageHistogram {
	return &ageHistogram{
		desc:   prometheus.NewDesc(recordAgeOpts.Name, recordAgeOpts.Help, nil, prometheus.Labels{"output": output}),
		counts: make([]atomic.Uint64, len(recordAgeBuckets)+1),
	}
}

// observe records the ages at now of records with the given times (Unix
// nanoseconds). A time in the future (clock skew) counts as age zero.
func (h *ageHistogram) observe(now time.Time, times []int64) {
	if len(times) == 0 {
		return
	}
	var local [16]uint64 // len(recordAgeBuckets)+1 <= 16
	n := now.UnixNano()
	var sum float64
	last, lastIdx := int64(math.MinInt64), 0
	for _, t := range times {
		age := max(n-t, 0)
		if age != last { // records of a chunk often share or repeat their times
			last = age
			lastIdx = sort.SearchFloat64s(recordAgeBuckets, float64(age)/1e9)
		}
		local[lastIdx]++
		sum += float64(age) / 1e9
	}
	for i := range h.counts {
		if local[i] > 0 {
			h.counts[i].Add(local[i])
		}
	}
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+sum)) {
			break
		}
	}
}

func (h *ageHistogram) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

func (h *ageHistogram) Collect(ch chan<- prometheus.Metric) {
	buckets := make(map[float64]uint64, len(recordAgeBuckets))
	var cum uint64
	for i, le := range recordAgeBuckets {
		cum += h.counts[i].Load()
		buckets[le] = cum
	}
	count := cum + h.counts[len(recordAgeBuckets)].Load()
	ch <- prometheus.MustNewConstHistogram(h.desc, count, math.Float64frombits(h.sumBits.Load()), buckets)
}
