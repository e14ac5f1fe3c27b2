package collector

import "github.com/prometheus/client_golang/prometheus"

// metrics are the collector's own series, registered on the Registerer it is given.
type metrics struct {
	filesTailed       prometheus.Gauge
	records           *prometheus.CounterVec // namespace
	bytes             *prometheus.CounterVec // namespace
	parseErrors       *prometheus.CounterVec // format
	partialJoins      prometheus.Counter
	partialFlushed    prometheus.Counter
	recordsSplit      prometheus.Counter
	rotations         *prometheus.CounterVec // kind: rename, truncate
	lagBytes          prometheus.Gauge
	readWait          prometheus.Gauge
	droppedBytes      *prometheus.CounterVec // reason
	inflightBytes     prometheus.Gauge
	bufferUsed        prometheus.Gauge
	memoryStalls      prometheus.Counter
	checkpointErrs    prometheus.Counter
	rescans           prometheus.Counter
	compressedResumed prometheus.Counter
	watchErrors       prometheus.Counter
	watchOverflows    prometheus.Counter
	filesPolled       prometheus.Gauge
	unreadable        *prometheus.CounterVec // reason
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
		partialFlushed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_collector_partial_flushed_total",
			Help: "Records being joined from partial lines that were sent unfinished after collector.partial_flush_timeout.",
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
		readWait: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_collector_read_wait_seconds",
			Help: "The read_wait in force: how long a file written a line at a time gathers lines between reads (grows up to read_wait_max with the number of files being written).",
		}),
		droppedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_collector_dropped_bytes_total",
			Help: "File bytes given up unread, by reason.",
		}, []string{"reason"}),
		inflightBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_collector_inflight_bytes",
			Help: "Memory of batches sent downstream and not yet acknowledged.",
		}),
		bufferUsed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_collector_buffer_used_bytes",
			Help: "Memory counted against collector.buffer_bytes: unacknowledged batches, records being joined, reads being decoded.",
		}),
		memoryStalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_collector_memory_stalls_total",
			Help: "Times a file gave back the records it was joining, to wait for room in collector.buffer_bytes; it reads them again.",
		}),
		checkpointErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_collector_checkpoint_errors_total",
			Help: "Failed attempts to persist checkpoints, and checkpoint files that could not be read.",
		}),
		compressedResumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_collector_compressed_resumed_total",
			Help: "Compressed rotations read (from the start, or from a checkpoint's offset) because not everything in them was acknowledged.",
		}),
		rescans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_collector_rescans_total",
			Help: "Periodic rescans of the log directories.",
		}),
		watchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_collector_watch_errors_total",
			Help: "Errors reported by the file-system watcher (e.g. queue overflow).",
		}),
		watchOverflows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_collector_watch_overflows_total",
			Help: "inotify event queue overflows (events lost); each makes every reader look at its file again and the next rescan read every folder.",
		}),
		filesPolled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_collector_files_polled",
			Help: "Files being read that no inotify watch covers (the watch limit was reached, or inotify is unavailable): checked every poll_interval instead.",
		}),
		unreadable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_collector_unreadable_total",
			Help: "Log files, directories or links that could not be read, by reason (permission, outside_roots, not_regular, error); each counted once while it stays so.",
		}, []string{"reason"}),
	}
	for _, r := range []string{reasonPermission, reasonOutsideRoot, reasonNotRegular, reasonError} {
		m.unreadable.WithLabelValues(r) // present at 0, so alerts see it
	}
	if reg != nil {
		reg.MustRegister(m.filesTailed, m.records, m.bytes, m.parseErrors, m.partialJoins, m.partialFlushed,
			m.recordsSplit, m.rotations, m.lagBytes, m.readWait, m.droppedBytes, m.inflightBytes, m.bufferUsed,
			m.memoryStalls, m.checkpointErrs, m.rescans, m.watchErrors, m.watchOverflows, m.filesPolled, m.compressedResumed, m.unreadable)
	}
	return m
}
