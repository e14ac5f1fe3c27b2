package enrich

import "github.com/prometheus/client_golang/prometheus"

// Lookup results, the values of logagent_enrich_lookups_total's result label.
const (
	resultHit          = "hit"           // pod in the cache when the batch came
	resultMiss         = "miss"          // not found: the batch went on with path metadata
	resultLate         = "late"          // found after the batch waited for the informer
	resultDeletedGrace = "deleted_grace" // pod deleted, metadata kept for the grace period
)

// Exclusion reasons, the values of logagent_enrich_records_excluded_total's reason label.
const (
	reasonNamespaceConfig     = "namespace_config"     // include_namespaces / exclude_namespaces
	reasonNamespaceLabel      = "namespace_label"      // logagent.io/exclude label on the namespace
	reasonPodAnnotation       = "pod_annotation"       // logagent.io/exclude annotation on the pod
	reasonContainerAnnotation = "container_annotation" // logagent.io/exclude-containers
)

// Informer names, the values of the informer label.
const (
	informerPods       = "pods"
	informerNamespaces = "namespaces"
)

// metrics are enrich's own series, registered on the Registerer it is given.
type metrics struct {
	podsCached    prometheus.Gauge
	lookups       *prometheus.CounterVec // result
	excluded      *prometheus.CounterVec // reason
	synced        *prometheus.GaugeVec   // informer
	watchRestarts *prometheus.CounterVec // informer
	parked        prometheus.Gauge
	// annotationErrors counts policy annotations ignored, by annotation.
	annotationErrors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		podsCached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_enrich_pods_cached",
			Help: "Pods whose metadata is cached, including deleted pods within their grace period.",
		}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_enrich_lookups_total",
			Help: "Batches looked up in the pod cache, by result (hit, miss, late, deleted_grace).",
		}, []string{"result"}),
		excluded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_enrich_records_excluded_total",
			Help: "Records dropped (and acknowledged) by the selection rules, by reason.",
		}, []string{"reason"}),
		synced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logagent_enrich_informer_synced",
			Help: "1 once the informer's initial list has been delivered to the cache, else 0.",
		}, []string{"informer"}),
		watchRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_enrich_watch_restarts_total",
			Help: "List or watch failures after which the informer's reflector relists.",
		}, []string{"informer"}),
		parked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logagent_enrich_parked_batches",
			Help: "Batches waiting for their pod to appear in the cache.",
		}),
		annotationErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logagent_enrich_annotation_errors_total",
			Help: "Policy annotations of pods and namespaces ignored because their value is not understood or not allowed, by annotation (multiline, rate-limit, rate-limit-burst).",
		}, []string{"annotation"}),
	}
	for _, a := range []string{annMultiline, annRateLimit, annRateLimitBurst} {
		m.annotationErrors.WithLabelValues(a)
	}
	// Pre-create the label values so every series exists from the start.
	for _, r := range []string{resultHit, resultMiss, resultLate, resultDeletedGrace} {
		m.lookups.WithLabelValues(r)
	}
	for _, r := range []string{reasonNamespaceConfig, reasonNamespaceLabel, reasonPodAnnotation, reasonContainerAnnotation} {
		m.excluded.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.podsCached, m.lookups, m.excluded, m.synced, m.watchRestarts, m.parked, m.annotationErrors)
	}
	return m
}
