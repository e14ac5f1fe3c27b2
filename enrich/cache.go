package enrich

import (
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/logagent/logagent/collector"
)

// containerKey names one container of a pod as a log file knows it: the
// container's name and, when the path told it, the runtime's container id.
type containerKey struct{ name, id string }

// podMeta is one version of one pod, ready to attach: every container's
// encoding is built when the version arrives (off the batch path) and never
// changes, so batches share the bytes without copying or locking.
type podMeta struct {
	pod       *corev1.Pod // the (slimmed) object it was built from, to rebuild on namespace changes
	uid       string
	name      string // namespace/name
	mirrorUID string // a static pod's kubelet uid (its log directory's), "" otherwise
	fields    podFields
	sel       selection
	encoded   map[containerKey][]byte
	images    map[string]string // container name -> image, for ids the status does not list

	// extra holds encodings for container ids the pod's status does not
	// (yet) list, e.g. a file read before the status update that names its
	// container arrives; built once per id.
	extraMu sync.Mutex
	extra   map[containerKey][]byte

	deletedAt atomic.Int64 // Unix ns of the delete event, 0 while the pod exists

	// policies are the containers' collector policies (with SetPolicies);
	// policyErrs the pod's policy annotations that were ignored.
	policies   map[string]collector.Policy
	policyErrs []annotationError
}

// kubernetes returns the encoded map for one container of this pod version.
func (m *podMeta) kubernetes(container, id string) []byte {
	if b, ok := m.encoded[containerKey{container, id}]; ok {
		return b
	}
	m.extraMu.Lock()
	defer m.extraMu.Unlock()
	k := containerKey{container, id}
	if b, ok := m.extra[k]; ok {
		return b
	}
	if m.extra == nil {
		m.extra = make(map[containerKey][]byte)
	}
	b := encode(&m.fields, containerFields{name: container, id: id, image: m.images[container]})
	m.extra[k] = b
	return b
}

// stripRuntime removes the runtime's scheme from a status containerID
// ("containerd://abc" -> "abc"), as Fluent Bit does for docker_id, so the id
// matches the one in the /var/log/containers link name (and the path metadata).
func stripRuntime(id string) string {
	if i := strings.Index(id, "://"); i >= 0 {
		return id[i+3:]
	}
	return id
}

// nsMeta is what the cache keeps of a namespace.
type nsMeta struct {
	labels   []kv              // allowed labels, sorted
	excluded bool              // logagent.io/exclude=true label
	policy   map[string]string // policy annotations (policy.go)
}

// filters decide what of a pod is kept when building metadata.
type filters struct {
	labels      keyFilter
	annotations keyFilter
	// podExclusion honours the pods' own selection annotations
	// (enrich.allow_pod_exclusion).
	podExclusion bool
	// policies, when set (SetPolicies), are resolved per container.
	policies *collector.Policies
	// policyLabels are the pod label keys the policies' selectors read,
	// kept by the informer whatever labels allows (set by SetPolicies,
	// before the informer runs).
	policyLabels *[]string
}

// buildMeta makes the immutable metadata of one pod version.
func buildMeta(pod *corev1.Pod, ns *nsMeta, f filters) *podMeta {
	m := &podMeta{
		pod:       pod,
		uid:       string(pod.UID),
		name:      pod.Namespace + "/" + pod.Name,
		mirrorUID: pod.Annotations[mirrorAnnotation],
		fields: podFields{
			namespace:   pod.Namespace,
			name:        pod.Name,
			uid:         string(pod.UID),
			ip:          pod.Status.PodIP,
			host:        pod.Spec.NodeName,
			labels:      sortedKVs(pod.Labels, f.labels),
			annotations: sortedKVs(pod.Annotations, f.annotations),
		},
		encoded: make(map[containerKey][]byte),
		images:  make(map[string]string),
	}
	m.fields.owner, m.fields.hasOwner = deriveOwner(pod.OwnerReferences, pod.Labels)
	nsExcluded := false
	var nsPolicy map[string]string
	if ns != nil {
		m.fields.nsLabels = ns.labels
		nsExcluded = ns.excluded
		nsPolicy = ns.policy
	}
	m.sel = selectPod(pod.Annotations, nsExcluded, f.podExclusion)

	for _, c := range pod.Spec.InitContainers {
		m.images[c.Name] = c.Image
	}
	for _, c := range pod.Spec.Containers {
		m.images[c.Name] = c.Image
	}
	for _, c := range pod.Spec.EphemeralContainers {
		m.images[c.Name] = c.Image
	}
	ids := make(map[string][2]string) // name -> current id, last terminated id
	for _, list := range [][]corev1.ContainerStatus{
		pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses,
	} {
		for _, s := range list {
			if s.Image != "" {
				m.images[s.Name] = s.Image // the runtime's resolved name, as Fluent Bit reports
			}
			var last string
			if t := s.LastTerminationState.Terminated; t != nil {
				last = stripRuntime(t.ContainerID)
			}
			ids[s.Name] = [2]string{stripRuntime(s.ContainerID), last}
		}
	}
	for name, image := range m.images {
		cur, last := ids[name][0], ids[name][1]
		b := encode(&m.fields, containerFields{name: name, id: cur, image: image})
		m.encoded[containerKey{name, ""}] = b
		if cur != "" {
			m.encoded[containerKey{name, cur}] = b
		}
		// The previous instance's file may still be read after a restart.
		if last != "" && last != cur {
			m.encoded[containerKey{name, last}] = encode(&m.fields, containerFields{name: name, id: last, image: image})
		}
	}
	if f.policies != nil {
		m.policies, m.policyErrs = buildPolicies(f.policies, m, nsPolicy)
	}
	return m
}

// podCache indexes the node's pods by uid (and a static pod's kubelet uid) and
// by namespace/name, keeps deleted pods for the grace period, and remembers
// the pods whose batches gave up waiting.
type podCache struct {
	node  string
	grace atomic.Int64 // time.Duration: how long deleted pods stay; Reconfigure may change it
	f     filters      // under mu: Reconfigure may change it
	m     *metrics
	log   *slog.Logger
	now   func() time.Time
	// added is called (outside the lock) after a pod arrives or changes, to
	// release batches waiting for it.
	added func()

	mu         sync.RWMutex
	pods       map[string]*podMeta // uid -> pod, live or in grace
	byUID      map[string]*podMeta // uid or mirror uid -> pod
	byName     map[string]*podMeta // namespace/name -> live pod
	namespaces map[string]*nsMeta
	gaveUp     map[string]time.Time // podKey -> when its batches stopped waiting
}

// gaveUpTTL bounds how long a pod whose batches gave up waiting goes
// straight through without waiting again; it only matters for pods that never
// show up (e.g. logs of pods deleted while the agent was down).
const gaveUpTTL = 5 * time.Minute

func newPodCache(node string, grace time.Duration, f filters, m *metrics, added func()) *podCache {
	c := &podCache{
		node: node, f: f, m: m, log: slog.New(slog.DiscardHandler), now: time.Now, added: added,
		pods:       make(map[string]*podMeta),
		byUID:      make(map[string]*podMeta),
		byName:     make(map[string]*podMeta),
		namespaces: make(map[string]*nsMeta),
		gaveUp:     make(map[string]time.Time),
	}
	c.grace.Store(int64(grace))
	return c
}

// gracePeriod is how long a deleted pod's metadata stays usable.
func (c *podCache) gracePeriod() time.Duration { return time.Duration(c.grace.Load()) }

// podKey identifies a file's pod for waiting and giving up: its uid, which
// the kubelet path always holds, else namespace/name.
func podKey(src *collector.Source) string {
	if src.PodUID != "" {
		return src.PodUID
	}
	return src.Namespace + "/" + src.Pod
}

// lookup finds the pod of a file's batches: hit, deleted_grace or miss.
func (c *podCache) lookup(src *collector.Source) (*podMeta, string) {
	c.mu.RLock()
	var m *podMeta
	if src.PodUID != "" {
		m = c.byUID[src.PodUID]
	} else {
		m = c.byName[src.Namespace+"/"+src.Pod]
	}
	c.mu.RUnlock()
	if m == nil {
		return nil, resultMiss
	}
	if d := m.deletedAt.Load(); d != 0 {
		// Expired entries may linger until the next prune; they are gone.
		if c.now().UnixNano()-d >= c.grace.Load() {
			return nil, resultMiss
		}
		return m, resultDeletedGrace
	}
	return m, resultHit
}

// upsertPod stores a new version of a pod.
func (c *podCache) upsertPod(pod *corev1.Pod) {
	if pod.Spec.NodeName != c.node {
		// The field selector already keeps other nodes' pods out; this guards
		// against a server or fake that ignores it.
		c.deletePod(pod)
		return
	}
	c.mu.Lock()
	m := buildMeta(pod, c.namespaces[pod.Namespace], c.f)
	old := c.pods[m.uid]
	c.putLocked(m)
	c.mu.Unlock()
	if len(m.policyErrs) > 0 && (old == nil || !slices.Equal(old.policyErrs, m.policyErrs)) {
		c.reportAnnotations("pod "+m.name, m.policyErrs)
	}
	if c.added != nil {
		c.added()
	}
}

// reportAnnotations counts and logs policy annotations that are ignored,
// once per change of the object's annotations.
func (c *podCache) reportAnnotations(what string, errs []annotationError) {
	for _, e := range errs {
		c.m.annotationErrors.WithLabelValues(e.label).Inc()
		c.log.Warn("enrich: ignoring annotation", "object", what, "annotation", e.key, "value", e.value, "reason", e.why)
	}
}

// namespaceAnnotations returns a namespace's policy annotations (nil if
// unknown or none). The map is never modified: callers may keep it.
func (c *podCache) namespaceAnnotations(name string) map[string]string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if ns := c.namespaces[name]; ns != nil {
		return ns.policy
	}
	return nil
}

// putLocked indexes m, replacing any earlier version of the same pod.
func (c *podCache) putLocked(m *podMeta) {
	if old := c.pods[m.uid]; old != nil && old.mirrorUID != "" && old.mirrorUID != m.mirrorUID && c.byUID[old.mirrorUID] == old {
		delete(c.byUID, old.mirrorUID)
	}
	c.pods[m.uid] = m
	c.byUID[m.uid] = m
	delete(c.gaveUp, m.uid)
	if m.mirrorUID != "" {
		c.byUID[m.mirrorUID] = m
		delete(c.gaveUp, m.mirrorUID)
	}
	if m.deletedAt.Load() == 0 {
		c.byName[m.name] = m
		delete(c.gaveUp, m.name)
	}
	c.m.podsCached.Set(float64(len(c.pods)))
}

// deletePod starts a pod's grace period (or forgets it at once with no grace).
func (c *podCache) deletePod(pod *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.pods[string(pod.UID)]
	if m == nil {
		return
	}
	if c.byName[m.name] == m {
		delete(c.byName, m.name)
	}
	if c.grace.Load() <= 0 {
		c.removeLocked(m)
		return
	}
	if m.deletedAt.Load() == 0 {
		m.deletedAt.Store(c.now().UnixNano())
	}
}

func (c *podCache) removeLocked(m *podMeta) {
	if c.pods[m.uid] == m {
		delete(c.pods, m.uid)
	}
	if c.byUID[m.uid] == m {
		delete(c.byUID, m.uid)
	}
	if m.mirrorUID != "" && c.byUID[m.mirrorUID] == m {
		delete(c.byUID, m.mirrorUID)
	}
	if c.byName[m.name] == m {
		delete(c.byName, m.name)
	}
	c.m.podsCached.Set(float64(len(c.pods)))
}

// prune forgets deleted pods past their grace period and old give-ups.
func (c *podCache) prune() {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.pods {
		if d := m.deletedAt.Load(); d != 0 && now.UnixNano()-d >= c.grace.Load() {
			c.removeLocked(m)
		}
	}
	for k, t := range c.gaveUp {
		if now.Sub(t) >= gaveUpTTL {
			delete(c.gaveUp, k)
		}
	}
}

// giveUp records that a pod's batches stopped waiting; later batches of the
// pod go on with path metadata at once until the pod shows up.
func (c *podCache) giveUp(key string) {
	c.mu.Lock()
	if _, ok := c.gaveUp[key]; !ok {
		c.gaveUp[key] = c.now()
	}
	c.mu.Unlock()
}

func (c *podCache) gaveUpOn(key string) bool {
	c.mu.RLock()
	_, ok := c.gaveUp[key]
	c.mu.RUnlock()
	return ok
}

// upsertNamespace stores a namespace's labels and rebuilds its pods' metadata
// when they changed.
func (c *podCache) upsertNamespace(ns *corev1.Namespace) {
	c.mu.Lock()
	n := &nsMeta{labels: sortedKVs(ns.Labels, c.f.labels), excluded: isTrue(ns.Labels[excludeKey]), policy: policyAnnotations(ns.Annotations)}
	policies := c.f.policies
	old := c.namespaces[ns.Name]
	c.namespaces[ns.Name] = n
	policyChanged := old == nil || !maps.Equal(old.policy, n.policy)
	changed := policyChanged || old.excluded != n.excluded || !equalKVs(old.labels, n.labels)
	if changed {
		c.rebuildLocked(ns.Name, n)
	}
	c.mu.Unlock()
	if policyChanged && policies != nil {
		if errs := namespaceAnnotationErrors(policies, n.policy); len(errs) > 0 {
			c.reportAnnotations("namespace "+ns.Name, errs)
		}
	}
	if changed && c.added != nil {
		c.added()
	}
}

func (c *podCache) deleteNamespace(name string) {
	c.mu.Lock()
	delete(c.namespaces, name)
	c.mu.Unlock()
}

// rebuildLocked re-encodes every cached pod of a namespace (live or in grace).
func (c *podCache) rebuildLocked(namespace string, ns *nsMeta) {
	for _, old := range c.pods {
		if old.fields.namespace != namespace {
			continue
		}
		m := buildMeta(old.pod, ns, c.f)
		m.deletedAt.Store(old.deletedAt.Load())
		c.putLocked(m)
	}
}

func equalKVs(a, b []kv) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
