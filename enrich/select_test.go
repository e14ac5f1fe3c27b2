package enrich

import (
	"slices"
	"testing"
)

func TestKeyFilter(t *testing.T) {
	for _, tc := range []struct {
		keys  []string
		allow []string
		deny  []string
	}{
		{[]string{"*"}, []string{"app", "x/y", ""}, nil},
		{nil, nil, []string{"app"}},
		{[]string{"app", "team"}, []string{"app", "team"}, []string{"application", "tier"}},
		{[]string{"app.kubernetes.io/*", "team"}, []string{"app.kubernetes.io/name", "team"}, []string{"app", "kubernetes.io/name"}},
	} {
		f := newKeyFilter(tc.keys)
		for _, k := range tc.allow {
			if !f.allows(k) {
				t.Errorf("filter %q denies %q", tc.keys, k)
			}
		}
		for _, k := range tc.deny {
			if f.allows(k) {
				t.Errorf("filter %q allows %q", tc.keys, k)
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
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		nsExcluded  bool
		want        map[string]string // container -> reason
	}{
		{"nothing", nil, false, map[string]string{"app": ""}},
		{"pod annotation", map[string]string{excludeKey: "true"}, false, map[string]string{"app": reasonPodAnnotation, "side": reasonPodAnnotation}},
		{"pod annotation, any case and spaces", map[string]string{excludeKey: " True "}, false, map[string]string{"app": reasonPodAnnotation}},
		{"pod annotation false", map[string]string{excludeKey: "false"}, false, map[string]string{"app": ""}},
		{"namespace label", nil, true, map[string]string{"app": reasonNamespaceLabel}},
		{"pod annotation wins over namespace", map[string]string{excludeKey: "true"}, true, map[string]string{"app": reasonPodAnnotation}},
		{"containers", map[string]string{excludeContainersKey: "side, istio-proxy,,"}, false,
			map[string]string{"app": "", "side": reasonContainerAnnotation, "istio-proxy": reasonContainerAnnotation, "sid": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := selectPod(tc.annotations, tc.nsExcluded)
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
