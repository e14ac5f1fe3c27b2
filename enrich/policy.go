package enrich

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/logagent/logagent/collector"
)

// Annotations that set a container's collector policy (see doc.go).
const (
	// multilineKey names a multiline rule for every container of the pod,
	// or of the namespace's pods: "java", "python,go", "none".
	multilineKey = "logagent.io/multiline"
	// multilineContainerPrefix + a container's name names that
	// container's rule (as Fluent Bit's fluentbit.io/parser-<container>).
	multilineContainerPrefix = "logagent.io/multiline-"
	// rateLimitKey caps each container's read rate: "2MiB" (per second).
	// On a namespace it sets the limit, or lifts it ("none"); on a pod it
	// may only lower it.
	rateLimitKey = "logagent.io/rate-limit"
	// rateLimitBurstKey sets the burst, likewise.
	rateLimitBurstKey = "logagent.io/rate-limit-burst"
)

// Values of logagent_enrich_annotation_errors_total's annotation label.
const (
	annMultiline      = "multiline"
	annRateLimit      = "rate-limit"
	annRateLimitBurst = "rate-limit-burst"
)

// policyAnnotation reports whether an annotation key sets a policy, so the
// informers keep it whatever the annotation allow-list says.
func policyAnnotation(k string) bool {
	return k == multilineKey || k == rateLimitKey || k == rateLimitBurstKey || strings.HasPrefix(k, multilineContainerPrefix)
}

// policyAnnotations returns the policy annotations of m (nil if none).
func policyAnnotations(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if policyAnnotation(k) {
			if out == nil {
				out = make(map[string]string)
			}
			out[k] = v
		}
	}
	return out
}

// annotationError is an annotation whose value was not understood, or not
// allowed; it is ignored, counted and logged.
type annotationError struct {
	label, key, value, why string
}

// unlimited are the values that lift a rate limit.
func unlimited(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "0", "none", "off", "unlimited":
		return true
	}
	return false
}

// containerPolicy decides one container's policy. Multiline: the
// container's own annotation, else the pod's, else the namespace's, else
// the first matching select entry of the configuration. Rate limit: the
// configuration's, replaced by the namespace's annotations, then lowered
// (never raised) by the pod's: a pod's author must not be able to lift the
// cap its namespace has, while operators who own the namespace may. labels
// nil means the pod is not known. Annotations that do not parse are skipped
// and passed to bad (which may be nil).
func containerPolicy(p *collector.Policies, namespace, container string, labels, podAnn, nsAnn map[string]string,
	bad func(annotationError)) collector.Policy {
	report := func(e annotationError) {
		if bad != nil {
			bad(e)
		}
	}
	var pol collector.Policy
	decided := false
	for _, a := range []struct {
		m   map[string]string
		key string
	}{{podAnn, multilineContainerPrefix + container}, {podAnn, multilineKey}, {nsAnn, multilineKey}} {
		v, ok := a.m[a.key]
		if !ok {
			continue
		}
		r, err := p.Rule(v)
		if err != nil {
			report(annotationError{annMultiline, a.key, v, err.Error()})
			continue
		}
		pol.Multiline, decided = r, true
		break
	}
	if !decided {
		pol.Multiline = p.Select(namespace, container, labels)
	}

	rl := p.RateLimit()
	if v, ok := nsAnn[rateLimitKey]; ok {
		if unlimited(v) {
			rl = collector.RateLimit{}
		} else if n, err := collector.ParseByteSize(v); err != nil || n <= 0 {
			report(annotationError{annRateLimit, rateLimitKey, v, sizeErr(err)})
		} else {
			rl.BytesPerSecond = int64(n)
		}
	}
	if v, ok := nsAnn[rateLimitBurstKey]; ok {
		if n, err := collector.ParseByteSize(v); err != nil || n <= 0 {
			report(annotationError{annRateLimitBurst, rateLimitBurstKey, v, sizeErr(err)})
		} else {
			rl.Burst = int64(n)
		}
	}
	if v, ok := podAnn[rateLimitKey]; ok {
		n, err := collector.ParseByteSize(v)
		switch {
		case unlimited(v):
			report(annotationError{annRateLimit, rateLimitKey, v, "a pod may only lower its rate limit, not lift it"})
		case err != nil || n <= 0:
			report(annotationError{annRateLimit, rateLimitKey, v, sizeErr(err)})
		case !rl.Limited() || int64(n) < rl.BytesPerSecond:
			rl.BytesPerSecond = int64(n)
		}
	}
	if v, ok := podAnn[rateLimitBurstKey]; ok {
		n, err := collector.ParseByteSize(v)
		switch {
		case err != nil || n <= 0:
			report(annotationError{annRateLimitBurst, rateLimitBurstKey, v, sizeErr(err)})
		case rl.Burst <= 0 || int64(n) < rl.Burst:
			rl.Burst = int64(n)
		}
	}
	if rl.Limited() {
		pol.RateLimit = rl
	}
	return pol
}

func sizeErr(err error) string {
	if err != nil {
		return err.Error()
	}
	return "want a size such as 2MiB"
}

// buildPolicies computes the policy of each of a pod version's containers,
// and the pod's own annotations that were ignored.
func buildPolicies(p *collector.Policies, m *podMeta, nsAnn map[string]string) (map[string]collector.Policy, []annotationError) {
	podAnn := policyAnnotations(m.pod.Annotations)
	var errs []annotationError
	seen := map[annotationError]bool{}
	bad := func(e annotationError) {
		if !seen[e] {
			seen[e] = true
			errs = append(errs, e)
		}
	}
	out := make(map[string]collector.Policy, len(m.images))
	for name := range m.images {
		// Namespace annotations are reported with the namespace, once.
		out[name] = containerPolicy(p, m.fields.namespace, name, m.pod.Labels, podAnn, nsAnn, func(e annotationError) {
			if podAnn[e.key] == e.value {
				bad(e)
			}
		})
	}
	for k, v := range podAnn {
		if c, ok := strings.CutPrefix(k, multilineContainerPrefix); ok {
			if _, known := m.images[c]; !known {
				bad(annotationError{annMultiline, k, v, fmt.Sprintf("the pod has no container %q", c)})
			}
		}
	}
	return out, errs
}

// namespaceAnnotationErrors checks a namespace's policy annotations.
func namespaceAnnotationErrors(p *collector.Policies, nsAnn map[string]string) []annotationError {
	var errs []annotationError
	containerPolicy(p, "", "", nil, nil, nsAnn, func(e annotationError) { errs = append(errs, e) })
	return errs
}

// policy is the policy of one of the pod's containers.
func (m *podMeta) policy(p *collector.Policies, c *podCache, container string) collector.Policy {
	if pol, ok := m.policies[container]; ok {
		return pol
	}
	// A container the spec does not list (yet).
	return containerPolicy(p, m.fields.namespace, container, m.pod.Labels, policyAnnotations(m.pod.Annotations),
		c.namespaceAnnotations(m.fields.namespace), nil)
}

// SetPolicies makes the Enricher the collector's PolicySource, deciding
// each file's multiline rule and rate limit from the configuration's
// policies and the annotations of the file's pod and namespace. Call it
// before Run, and again when the configuration is reloaded. Readers of the new policies (Policy) are safe while it runs;
// pods already cached keep the answers of the policies they were cached
// with until they change.
func (e *Enricher) SetPolicies(p *collector.Policies) {
	e.policies.Store(p)
	e.cache.mu.Lock()
	e.cache.f.policies = p
	*e.cache.f.policyLabels = p.LabelKeys()
	e.cache.mu.Unlock()
}

// Policy is the policy of a file's container (collector.PolicySource). A
// file whose pod is not in the cache gets the configuration's policy for
// its namespace and container name, plus its namespace's annotations,
// marked Provisional while the pod may still arrive: for up to miss_wait
// after the first question about it, as a batch of the pod waits. After
// that the pod's batches and policy questions stop waiting for it.
func (e *Enricher) Policy(src *collector.Source) collector.Policy {
	p := e.policies.Load()
	if p == nil {
		return collector.Policy{}
	}
	m, _ := e.cache.lookup(src)
	if m != nil {
		pol := m.policy(p, e.cache, src.Container)
		pol.Provisional = !e.namespacesReady()
		return pol
	}
	pol := containerPolicy(p, src.Namespace, src.Container, nil, nil, e.cache.namespaceAnnotations(src.Namespace), nil)
	pol.Provisional = e.policyWait.waiting(podKey(src), e.live.Load().missWait, e.cache)
	return pol
}

// policyWaits remembers when each unknown pod's policy was first asked for.
type policyWaits struct {
	mu    sync.Mutex
	first map[string]time.Time
	now   func() time.Time
}

func newPolicyWaits() *policyWaits {
	return &policyWaits{first: make(map[string]time.Time), now: time.Now}
}

// waiting reports whether a question about the unknown pod key is still
// worth asking again: less than wait since the first one, and the pod's
// batches have not given up. Past it, the pod is given up on.
func (w *policyWaits) waiting(key string, wait time.Duration, c *podCache) bool {
	if wait <= 0 || c.gaveUpOn(key) {
		return false
	}
	now := w.now()
	w.mu.Lock()
	first, ok := w.first[key]
	if !ok {
		w.first[key] = now
		first = now
	}
	still := now.Sub(first) < wait
	if !still {
		delete(w.first, key)
	}
	w.mu.Unlock()
	if !still {
		c.giveUp(key)
	}
	return still
}

// prune forgets questions older than keep: their pods arrived or were
// given up on.
func (w *policyWaits) prune(keep time.Duration) {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	maps.DeleteFunc(w.first, func(_ string, t time.Time) bool { return now.Sub(t) >= keep })
}

func (w *policyWaits) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.first)
}
