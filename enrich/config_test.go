package enrich

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string // substring of the error, "" for valid
	}{
		{"defaults with node", func(*Config) {}, ""},
		{"disabled needs nothing", func(c *Config) { c.Enabled = false; c.NodeName = "" }, ""},
		{"no node", func(c *Config) { c.NodeName = "" }, "node_name: required"},
		{"negative grace", func(c *Config) { c.DeletedGrace = -time.Second }, "enrich.deleted_grace"},
		{"zero grace ok", func(c *Config) { c.DeletedGrace = 0 }, ""},
		{"negative miss wait", func(c *Config) { c.MissWait = -1 }, "enrich.miss_wait"},
		{"huge miss wait", func(c *Config) { c.MissWait = time.Hour }, "enrich.miss_wait"},
		{"bad include pattern", func(c *Config) { c.IncludeNamespaces = []string{"team-["} }, "enrich.include_namespaces: pattern \"team-[\""},
		{"empty exclude pattern", func(c *Config) { c.ExcludeNamespaces = []string{""} }, "enrich.exclude_namespaces: empty pattern"},
		{"empty label key", func(c *Config) { c.Labels = []string{"app", ""} }, "enrich.labels: empty key"},
		{"empty annotation key", func(c *Config) { c.Annotations = []string{""} }, "enrich.annotations: empty key"},
		{"empty excluded annotation key", func(c *Config) { c.ExcludeAnnotations = []string{"a", ""} }, "enrich.exclude_annotations: empty key"},
		{"no excluded annotations is fine", func(c *Config) { c.ExcludeAnnotations = nil }, ""},
		{"no labels is fine", func(c *Config) { c.Labels = []string{} }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.NodeName = "n"
			tc.change(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	c := DefaultConfig()
	c.NodeName = "node-7" // not a key of this section: cmd sets it from the top-level node_name
	src := `
kubeconfig: /etc/kube.conf
namespace_labels: false
deleted_grace: 30s
miss_wait: 250ms
include_namespaces: [team-*]
exclude_namespaces: [team-secret]
labels: [app, "app.kubernetes.io/*"]
annotations: []
exclude_annotations: ["example.com/*"]
allow_pod_exclusion: true
`
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "node-7" || c.Kubeconfig != "/etc/kube.conf" || c.NamespaceLabels ||
		c.DeletedGrace != 30*time.Second || c.MissWait != 250*time.Millisecond ||
		len(c.IncludeNamespaces) != 1 || len(c.ExcludeNamespaces) != 1 || len(c.Labels) != 2 ||
		len(c.Annotations) != 0 || !c.Enabled || !c.AllowPodExclusion ||
		len(c.ExcludeAnnotations) != 1 || c.ExcludeAnnotations[0] != "example.com/*" {
		t.Errorf("decoded %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

// TestConfigDefaultsSafe: by default pods cannot exclude themselves, and
// kubectl's last-applied-configuration is not copied into records.
func TestConfigDefaultsSafe(t *testing.T) {
	c := DefaultConfig()
	if c.AllowPodExclusion {
		t.Error("allow_pod_exclusion on by default")
	}
	if len(c.ExcludeAnnotations) != 1 || c.ExcludeAnnotations[0] != "kubectl.kubernetes.io/last-applied-configuration" {
		t.Errorf("exclude_annotations default %q", c.ExcludeAnnotations)
	}
}
