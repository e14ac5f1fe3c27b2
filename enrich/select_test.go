package enrich

import (
	"slices"
	"testing"
)

// TestKeyFilter: allow-lists of exact keys and prefixes, minus a deny-list of
// the same form (exclude_annotations), which wins.
func TestKeyFilter(t *testing.T) {
	for _, tc := range []struct {
		keys, except []string
		allow, deny  []string
	}{
		{[]string{"*"}, nil, []string{"app", "x/y", ""}, nil},
		{nil, nil, nil, []string{"app"}},
		{[]string{"app", "team"}, nil, []string{"app", "team"}, []string{"application", "tier"}},
		{[]string{"app.kubernetes.io/*", "team"}, nil, []string{"app.kubernetes.io/name", "team"}, []string{"app", "kubernetes.io/name"}},
		{[]string{"*"}, DefaultConfig().ExcludeAnnotations,
			[]string{"note", "kubectl.kubernetes.io/restartedAt", "kubectl.kubernetes.io/last-applied-configuration-x"},
			[]string{"kubectl.kubernetes.io/last-applied-configuration"}},
		{[]string{"*"}, []string{"kubectl.kubernetes.io/*", "secret"}, []string{"note", "kubernetes.io/x"},
			[]string{"kubectl.kubernetes.io/last-applied-configuration", "kubectl.kubernetes.io/restartedAt", "secret"}},
		{[]string{"team", "app.kubernetes.io/*"}, []string{"app.kubernetes.io/version"}, []string{"team", "app.kubernetes.io/name"},
			[]string{"app.kubernetes.io/version", "other"}},
		{[]string{"*"}, []string{"*"}, nil, []string{"note", ""}},
	} {
		f := newKeyFilter(tc.keys).without(tc.except)
		for _, k := range tc.allow {
			if !f.allows(k) {
				t.Errorf("filter %q without %q denies %q", tc.keys, tc.except, k)
			}
		}
		for _, k := range tc.deny {
			if f.allows(k) {
				t.Errorf("filter %q without %q allows %q", tc.keys, tc.except, k)
			}
		}
	}
}

func TestNamespaceFilter(t *testing.T) {
	for _, tc := range []struct {
		name             string
		include, exclude []string
		excluded, kept   []string
	}{
		{"no lists keeps all", nil, nil, nil, []string{"default", "kube-system"}},
		{"exclude glob", nil, []string{"kube-*"}, []string{"kube-system", "kube-public"}, []string{"default", "kubex"}},
		{"include only", []string{"team-*", "default"}, nil, []string{"kube-system", "other"}, []string{"team-a", "default"}},
		{"exclude wins over include", []string{"team-*"}, []string{"team-secret"}, []string{"team-secret", "default"}, []string{"team-a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := namespaceFilter{include: tc.include, exclude: tc.exclude}
			for _, ns := range tc.excluded {
				if !f.excluded(ns) {
					t.Errorf("%s kept", ns)
				}
			}
			for _, ns := range tc.kept {
				if f.excluded(ns) {
					t.Errorf("%s excluded", ns)
				}
			}
		})
	}
}

func TestSelectPod(t *testing.T) {
	both := map[string]string{excludeKey: "true", excludeContainersKey: "side"}
	for _, tc := range []struct {
		name         string
		annotations  map[string]string
		nsExcluded   bool
		podExclusion bool
		want         map[string]string // container -> reason
	}{
		{"nothing", nil, false, true, map[string]string{"app": ""}},
		{"pod annotation", map[string]string{excludeKey: "true"}, false, true, map[string]string{"app": reasonPodAnnotation, "side": reasonPodAnnotation}},
		{"pod annotation, any case and spaces", map[string]string{excludeKey: " True "}, false, true, map[string]string{"app": reasonPodAnnotation}},
		{"pod annotation false", map[string]string{excludeKey: "false"}, false, true, map[string]string{"app": ""}},
		{"namespace label", nil, true, true, map[string]string{"app": reasonNamespaceLabel}},
		{"pod annotation wins over namespace", map[string]string{excludeKey: "true"}, true, true, map[string]string{"app": reasonPodAnnotation}},
		{"containers", map[string]string{excludeContainersKey: "side, istio-proxy,,"}, false, true,
			map[string]string{"app": "", "side": reasonContainerAnnotation, "istio-proxy": reasonContainerAnnotation, "sid": ""}},
		// allow_pod_exclusion off (the default): the pod's own annotations
		// are ignored, the namespace's label still applies.
		{"off: pod annotations ignored", both, false, false, map[string]string{"app": "", "side": ""}},
		{"off: namespace label applies", both, true, false, map[string]string{"app": reasonNamespaceLabel, "side": reasonNamespaceLabel}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := selectPod(tc.annotations, tc.nsExcluded, tc.podExclusion)
			for c, want := range tc.want {
				if got := s.excludedReason(c); got != want {
					t.Errorf("container %s: reason %q, want %q", c, got, want)
				}
			}
		})
	}
}

func TestSplitList(t *testing.T) {
	if got := splitList(" a,b ,, c,"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("splitList = %q", got)
	}
	if got := splitList(""); got != nil {
		t.Errorf("splitList(\"\") = %q", got)
	}
}
