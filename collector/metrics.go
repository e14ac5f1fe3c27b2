package collector

import "github.com/prometheus/client_golang/prometheus"

// metrics are the collector's own series, registered on the Registerer it is given.
type metrics struct {
	filesTailed       prometheus.Gauge
	records           *prometheus.CounterVec // namespace
	bytes             *prometheus.CounterVec // namespace
	parseErrors       *prometheus.CounterVec // format
	partialJoins      prometheus.Counter
	recordsSplit      prometheus.Counter
	rotations         *prometheus.CounterVec // kind: rename, truncate
	lagBytes          prometheus.Gauge
	dropped           *prometheus.CounterVec // reason
	droppedBytes      *prometheus.CounterVec // reason
	inflightBytes     prometheus.Gauge
	checkpointErrs    prometheus.Counter
	rescans           prometheus.Counter
	compressedResumed prometheus.Counter
	watchErrors       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		filesTailed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_collector_files_tailed",
			Help: "Log files currently open for reading.",
		}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_collector_records_total",
			Help: "Records read from container log files.",
		}, []string{"namespace"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_collector_bytes_total",
			Help: "Bytes read from container log files.",
		}, []string{"namespace"}),
		parseErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_collector_parse_errors_total",
			Help: "Lines that did not parse in their file's format; they are passed on as-is.",
		}, []string{"format"}),
		partialJoins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_collector_partial_joins_total",
			Help: "Records assembled from more than one partial line.",
		}),
		recordsSplit: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_collector_records_split_total",
			Help: "Records longer than the maximum record size, emitted in pieces.",
		}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_collector_rotations_total",
			Help: "File rotations seen, by kind (rename, truncate).",
		}, []string{"kind"}),
		lagBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_collector_lag_bytes",
			Help: "Bytes written to tailed files but not yet read (size minus offset, summed).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_collector_dropped_records_total",
			Help: "Records or bytes given up, by reason.",
		}, []string{"reason"}),
		droppedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_collector_dropped_bytes_total",
			Help: "File bytes given up unread, by reason.",
		}, []string{"reason"}),
		inflightBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_collector_inflight_bytes",
			Help: "File bytes read but not yet acknowledged downstream.",
		}),
		checkpointErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_collector_checkpoint_errors_total",
			Help: "Failed attempts to persist checkpoints.",
		}),
		compressedResumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_collector_compressed_resumed_total",
			Help: "Rotations compressed while the agent was away, read from their .gz at the checkpoint's offset.",
		}),
		rescans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_collector_rescans_total",
			Help: "Periodic rescans of the log directories.",
		}),
		watchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_collector_watch_errors_total",
			Help: "Errors reported by the file-system watcher (e.g. queue overflow).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.filesTailed, m.records, m.bytes, m.parseErrors, m.partialJoins,
			m.recordsSplit, m.rotations, m.lagBytes, m.dropped, m.droppedBytes, m.inflightBytes,
			m.checkpointErrs, m.rescans, m.watchErrors, m.compressedResumed)
	}
	return m
}
