// Package enrich attaches Kubernetes pod metadata to the collector's batches.
//
// One client-go shared informer watches the pods bound to this node (field
// selector spec.nodeName; initial list with resourceVersion=0, served from
// the API server's watch cache, then watch events; never a GET per pod) and,
// unless namespace_labels is off, one watches namespaces for their labels.
// Informers store slimmed pods (only what enrichment reads). The cache indexes
// pods by uid (a static pod also by its kubelet uid, from the mirror pod's
// kubernetes.io/config.mirror annotation) and by namespace/name.
//
// For every (pod version, container) the record's "kubernetes" map is
// msgpack-encoded once, in a fixed key order (labels sorted), into an
// immutable slice that all the container's batches share. Keys follow Fluent
// Bit's kubernetes filter: namespace_name, pod_name, pod_id, pod_ip, host,
// container_name, container_id (without the runtime's "containerd://"
// scheme, as Fluent Bit's docker_id), container_image, labels, annotations,
// namespace_labels, owner {kind, name}. Empty values are left out.
//
// A batch whose pod is cached goes straight to the next stage. Otherwise it
// is parked, in a per-pod FIFO (later batches of the pod queue behind it),
// until the pod arrives ("late") or miss_wait passes ("miss": it goes on with
// the collector's path metadata, and the pod's later batches stop waiting).
// Deleted pods stay usable for deleted_grace. Selection (namespace label
// logagent.io/exclude: "true", include/exclude_namespaces, and only with
// allow_pod_exclusion the pod annotations logagent.io/exclude: "true" and
// logagent.io/exclude-containers: "a,b") drops batches with a counted reason
// and acknowledges them. Annotations on exclude_annotations (by default
// kubectl's last-applied-configuration) are neither copied nor stored.
//
// The Enricher is also the collector's PolicySource (SetPolicies): it tells
// the collector, per file, which multiline rule joins its lines and at what
// rate it is read. The collector must do the joining, because it alone can
// hold a file's checkpoint at an open group's first line (as at a partial
// line), so that a restart in the middle of a stack trace reads it again
// whole; joining after enrich, on batches already cut and acknowledged in
// pieces, could not. But the choice depends on pod metadata only enrich
// has: the annotations logagent.io/multiline (pod or namespace),
// logagent.io/multiline-<container> (pod), logagent.io/rate-limit and
// logagent.io/rate-limit-burst (namespace; on a pod they may only lower the
// limit), and pod labels for the configuration's select entries. So the
// policy flows against the batches: the collector asks, enrich answers from
// its cache. Each pod version's answers are computed once, when it arrives
// (they are small comparable values the collector compares to see a
// change); the informers keep these annotations and the selectors' label
// keys whatever the allow-lists copy into records. A file whose pod is not
// cached yet gets the configuration's answer for its namespace and
// container, plus its namespace's annotations, marked Provisional for up to
// miss_wait after the first question: the collector delays the file's first
// read until the answer is final, so a new pod's first stack trace is
// joined by the rule its annotations name (waiting costs nothing the batch
// would not wait anyway: enrich parks batches of unknown pods as long). After
// miss_wait the pod is given up on, for its batches too; if it arrives later,
// the collector's next question gets its policy, applied from the next line
// that opens no group. Annotations that do not parse are ignored, logged
// once per change and counted.
//
// Metrics: logagent_enrich_pods_cached, logagent_enrich_lookups_total{result},
// logagent_enrich_records_excluded_total{reason},
// logagent_enrich_informer_synced{informer},
// logagent_enrich_watch_restarts_total{informer},
// logagent_enrich_parked_batches,
// logagent_enrich_annotation_errors_total{annotation}.
//
// RBAC: a ClusterRole with get, list and watch on pods and namespaces (core
// group) is all it needs.
package enrich
