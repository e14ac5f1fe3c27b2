package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// configMetrics report the configuration's reloads, named as Prometheus
// names its own (prometheus_config_last_reload_successful, ...), so the same
// alerts and habits apply.
type configMetrics struct {
	successful  prometheus.Gauge
	successTime prometheus.Gauge
	reloads     *prometheus.CounterVec // result
	pending     prometheus.Gauge
}

func newConfigMetrics(reg prometheus.Registerer, loaded time.Time) *configMetrics {
	m := &configMetrics{
		successful: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_config_last_reload_successful",
			Help: "1 if the last reload of the configuration succeeded (or none was asked for since the start), 0 if it failed and the running configuration stayed.",
		}),
		successTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration was last loaded successfully: at the start, or by a reload (Unix time).",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_config_reloads_total",
			Help: "Reloads of the configuration (SIGHUP, or its file changed), by result (success, failure).",
		}, []string{"result"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_config_pending_restart",
			Help: "1 while the configuration loaded last changes settings that apply only when the agent starts (they keep their running values until then).",
		}),
	}
	m.successful.Set(1)
	m.successTime.Set(float64(loaded.UnixNano()) / 1e9)
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	reg.MustRegister(m.successful, m.successTime, m.reloads, m.pending)
	return m
}

func (m *configMetrics) succeeded(at time.Time, pendingRestart bool) {
	m.successful.Set(1)
	m.successTime.Set(float64(at.UnixNano()) / 1e9)
	m.reloads.WithLabelValues("success").Inc()
	if pendingRestart {
		m.pending.Set(1)
	} else {
		m.pending.Set(0)
	}
}

func (m *configMetrics) failed() {
	m.successful.Set(0)
	m.reloads.WithLabelValues("failure").Inc()
}
