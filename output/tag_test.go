package output

import (
	"testing"

	"github.com/logagent/logagent/collector"
)

func TestTagTemplate(t *testing.T) {
	src := &collector.Source{Namespace: "kube-system", Pod: "coredns-5d78c9869d-abcde", PodUID: "uid-1",
		Container: "coredns", ContainerID: "0123abcd", Node: "node-7"}
	for _, tc := range []struct {
		tmpl, want string
		err        bool
	}{
		{DefaultTag, "kube.var.log.containers.coredns-5d78c9869d-abcde_kube-system_coredns-0123abcd.log", false},
		{"k8s.{namespace}.{pod}.{container}", "k8s.kube-system.coredns-5d78c9869d-abcde.coredns", false},
		{"{node}/{pod_uid}", "node-7/uid-1", false},
		{"static", "static", false},
		{"kube.{nope}", "", true},
		{"kube.{pod", "", true},
		{"kube.pod}", "", true},
		{"", "", true},
	} {
		tt, err := parseTagTemplate(tc.tmpl)
		if (err != nil) != tc.err {
			t.Errorf("parseTagTemplate(%q) error = %v, want error %v", tc.tmpl, err, tc.err)
			continue
		}
		if err == nil {
			if got := tt.render(src); got != tc.want {
				t.Errorf("render(%q) = %q, want %q", tc.tmpl, got, tc.want)
			}
		}
	}
}

func TestTagCacheComputesOncePerSource(t *testing.T) {
	tt, _ := parseTagTemplate(DefaultTag)
	c := newTagCache(tt)
	a, b := testSource(1), testSource(2)
	ta := c.get(a)
	if c.get(a) != ta || c.get(b) == ta {
		t.Fatal("cache returns another source's tag")
	}
	if len(c.tags) != 2 {
		t.Errorf("%d cache entries for 2 sources", len(c.tags))
	}
	for i := range maxCachedTags + 10 {
		c.get(testSource(i))
	}
	if len(c.tags) > maxCachedTags {
		t.Errorf("cache grew to %d entries, bound is %d", len(c.tags), maxCachedTags)
	}
	if got := c.get(nil); got != "kube.var.log.containers.__-.log" {
		t.Errorf("nil source tag %q", got)
	}
}
