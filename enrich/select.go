package enrich

import (
	"path"
	"strings"
)

// Selection annotations and labels.
const (
	// excludeKey set to "true" as a label on the pod's namespace, or (with
	// enrich.allow_pod_exclusion) as a pod annotation, stops the pod's logs.
	excludeKey = "logagent.io/exclude"
	// excludeContainersKey is a pod annotation listing containers ("a,b")
	// whose logs are stopped (with enrich.allow_pod_exclusion).
	excludeContainersKey = "logagent.io/exclude-containers"
	// mirrorAnnotation on a static pod's mirror names the uid under which the
	// kubelet runs the static pod (and writes its logs).
	mirrorAnnotation = "kubernetes.io/config.mirror"
)

// isTrue reads a selection flag the way people write it in YAML.
func isTrue(v string) bool { return strings.EqualFold(strings.TrimSpace(v), "true") }

// splitList splits "a, b,,c" into [a b c].
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// keyFilter is an allow-list of label or annotation keys: exact keys, prefixes
// ending in "*", or "*" for all; minus the keys of an optional deny-list of
// the same form.
type keyFilter struct {
	all      bool
	exact    map[string]struct{}
	prefixes []string
	except   *keyFilter // keys refused even when allowed above
}

func newKeyFilter(keys []string) keyFilter {
	f := keyFilter{exact: make(map[string]struct{})}
	for _, k := range keys {
		switch {
		case k == "*":
			f.all = true
		case strings.HasSuffix(k, "*"):
			f.prefixes = append(f.prefixes, strings.TrimSuffix(k, "*"))
		default:
			f.exact[k] = struct{}{}
		}
	}
	return f
}

// without returns f refusing the keys that deny lists (same form as f's).
func (f keyFilter) without(deny []string) keyFilter {
	if len(deny) > 0 {
		d := newKeyFilter(deny)
		f.except = &d
	}
	return f
}

func (f keyFilter) allows(k string) bool {
	return f.listed(k) && (f.except == nil || !f.except.listed(k))
}

// listed reports whether k is on the list itself, the deny-list aside.
func (f keyFilter) listed(k string) bool {
	if f.all {
		return true
	}
	if _, ok := f.exact[k]; ok {
		return true
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// namespaceFilter applies include_namespaces / exclude_namespaces. It needs
// only the path's namespace, so it works without the API.
type namespaceFilter struct {
	include, exclude []string
}

// excluded reports whether the namespace's logs are dropped by configuration.
// Patterns were checked by Config.Validate, so Match errors cannot occur.
func (f namespaceFilter) excluded(ns string) bool {
	if len(f.include) > 0 && !matchAny(f.include, ns) {
		return true
	}
	return matchAny(f.exclude, ns)
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

// selection is a pod's verdict from its annotations and its namespace's labels,
// computed once per pod version.
type selection struct {
	reason     string   // non-empty: every container of the pod is excluded, for this reason
	containers []string // containers excluded by logagent.io/exclude-containers
}

// selectPod decides from the namespace's exclusion label and, only when
// podExclusion (enrich.allow_pod_exclusion) is on, the pod's own annotations:
// otherwise any pod author could keep its logs from being collected.
func selectPod(annotations map[string]string, nsExcluded, podExclusion bool) selection {
	if podExclusion && isTrue(annotations[excludeKey]) {
		return selection{reason: reasonPodAnnotation}
	}
	if nsExcluded {
		return selection{reason: reasonNamespaceLabel}
	}
	if !podExclusion {
		return selection{}
	}
	return selection{containers: splitList(annotations[excludeContainersKey])}
}

// excludedReason is the reason the container's logs are dropped, or "".
func (s selection) excludedReason(container string) string {
	if s.reason != "" {
		return s.reason
	}
	for _, c := range s.containers {
		if c == container {
			return reasonContainerAnnotation
		}
	}
	return ""
}
