package output

import "github.com/prometheus/client_golang/prometheus"

// metrics are the Forward output's series, registered on the Registerer it is given.
type metrics struct {
	recordsSent  *prometheus.CounterVec // server
	bytesSent    *prometheus.CounterVec // server
	batchesSent  *prometheus.CounterVec // server
	recordsAcked prometheus.Counter
	bytesAcked   prometheus.Counter
	batchesAcked prometheus.Counter
	retries      *prometheus.CounterVec // server, reason
	errors       *prometheus.CounterVec // server, reason
	inFlight     prometheus.Gauge
	queuedBytes  prometheus.Gauge
	ackLatency   prometheus.Histogram
	serverUp     *prometheus.GaugeVec // server
	badMetadata  prometheus.Counter
	recordAge    *ageHistogram

	discoveryLookups *prometheus.CounterVec // result
	discoveryServers prometheus.Gauge
	tlsReloads       *prometheus.CounterVec // result
}

// Error and retry reasons.
const (
	reasonDial       = "dial"        // TCP connect failed (refused, unreachable, DNS)
	reasonTLS        = "tls"         // TLS handshake or certificate failure
	reasonHandshake  = "handshake"   // malformed or unexpected HELO/PONG
	reasonAuth       = "auth"        // server refused our shared key / user, or its PONG digest was wrong
	reasonWrite      = "write"       // writing a batch failed
	reasonRead       = "read"        // the connection failed or closed while batches were in flight
	reasonAckTimeout = "ack_timeout" // a batch was not acknowledged in time
	reasonProtocol   = "protocol"    // the server sent something that is not an ack
)

func newMetrics(reg prometheus.Registerer, output string) *metrics {
	m := &metrics{
		recordAge: newAgeHistogram(output),
		recordsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_output_records_sent_total",
			Help: "Records written to a Forward server, re-sends included.",
		}, []string{"server"}),
		bytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_output_bytes_sent_total",
			Help: "Frame bytes written to a Forward server (after compression), re-sends included.",
		}, []string{"server"}),
		batchesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_output_batches_sent_total",
			Help: "PackedForward frames written to a Forward server, re-sends included.",
		}, []string{"server"}),
		recordsAcked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_output_records_acked_total",
			Help: "Records delivered: acknowledged by a server (or written, with require_ack off).",
		}),
		bytesAcked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_output_bytes_acked_total",
			Help: "Uncompressed entry bytes delivered.",
		}),
		batchesAcked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_output_batches_acked_total",
			Help: "PackedForward frames delivered.",
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_output_retries_total",
			Help: "Frames queued to be sent again after they were written, by the server they failed on and why.",
		}, []string{"server", "reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_output_errors_total",
			Help: "Connection and protocol errors, by server and reason.",
		}, []string{"server", "reason"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_output_batches_in_flight",
			Help: "Frames handed to a connection and not yet delivered.",
		}),
		queuedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_output_queued_bytes",
			Help: "Memory held by open, queued and unacknowledged frames (counted against queue_bytes).",
		}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "logagent_output_ack_latency_seconds",
			Help:    "Time from the end of a frame's write to its acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12), // 0.5ms .. ~30s
		}),
		serverUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logagent_output_server_up",
			Help: "1 while a connection to the server is established (after TLS and handshake).",
		}, []string{"server"}),
		badMetadata: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_output_records_without_metadata_total",
			Help: "Records sent without their \"kubernetes\" map because it was not valid msgpack (nothing is dropped).",
		}),
		discoveryLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_output_discovery_lookups_total",
			Help: "DNS lookups of forward.discovery.name, by result: ok, error (the last servers found are kept), empty (no record: kept too).",
		}, []string{"result"}),
		discoveryServers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_output_discovery_servers",
			Help: "Servers in the last good answer of forward.discovery.name.",
		}),
		tlsReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_output_tls_reloads_total",
			Help: "Changes of the TLS files seen when connecting, by result: success (new connections use them), failure (they did not load; the previous ones are used).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.recordsSent, m.bytesSent, m.batchesSent, m.recordsAcked, m.bytesAcked,
			m.batchesAcked, m.retries, m.errors, m.inFlight, m.queuedBytes, m.ackLatency, m.serverUp, m.badMetadata, m.recordAge,
			m.discoveryLookups, m.discoveryServers, m.tlsReloads)
	}
	return m
}
