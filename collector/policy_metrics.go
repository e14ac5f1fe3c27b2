package collector

import "github.com/prometheus/client_golang/prometheus"

// multilineMetrics count the joiners' work.
type multilineMetrics struct {
	groups *prometheus.CounterVec        // rule
	cut    map[string]prometheus.Counter // by reason, resolved once
	cutVec *prometheus.CounterVec
}

func newMultilineMetrics(reg prometheus.Registerer) *multilineMetrics {
	m := &multilineMetrics{
		groups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_collector_multiline_groups_total",
			Help: "Records joined from more than one line by a multiline rule, by rule.",
		}, []string{"rule"}),
		cutVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_collector_multiline_cut_total",
			Help: "Multiline groups emitted before their rule ended them, by reason (max_lines, max_bytes, timeout).",
		}, []string{"reason"}),
		cut: map[string]prometheus.Counter{},
	}
	for _, r := range []string{cutMaxLines, cutMaxBytes, cutTimeout} {
		m.cut[r] = m.cutVec.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.groups, m.cutVec)
	}
	return m
}

// rateLimitMetrics are the rate limits' series, per namespace (see throttleStats).
type rateLimitMetrics struct {
	waited *prometheus.CounterVec // namespace
	behind *prometheus.GaugeVec   // namespace
}

func newRateLimitMetrics(reg prometheus.Registerer) *rateLimitMetrics {
	m := &rateLimitMetrics{
		waited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_collector_rate_limit_wait_seconds_total",
			Help: "Time files waited for their container's rate limit before reading, by namespace.",
		}, []string{"namespace"}),
		behind: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logagent_collector_rate_limit_behind_bytes",
			Help: "Unread bytes of the files held back by their container's rate limit, by namespace.",
		}, []string{"namespace"}),
	}
	if reg != nil {
		reg.MustRegister(m.waited, m.behind)
	}
	return m
}
