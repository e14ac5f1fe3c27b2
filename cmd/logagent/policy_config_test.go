package main

import (
	"os"
	"strings"
	"testing"

	"github.com/logagent/logagent/collector"
)

// TestREADMEPolicyExample loads the README's multiline and rate-limit
// example as the agent loads its configuration file (strictly: an unknown
// key fails), so the example stays one that works.
func TestREADMEPolicyExample(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "### collector.multiline and collector.rate_limit")
	if i < 0 {
		t.Fatal("README has no per-container policies section")
	}
	_, rest, _ := strings.Cut(text[i:], "```yaml\n")
	example, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("no YAML example in the section")
	}
	cfg, err := loadConfig("test", []string{"--config", writeConfig(t, example+"enrich:\n  enabled: false\n")}, envMap(nil))
	if err != nil {
		t.Fatalf("the README's example: %v", err)
	}
	c := cfg.Collector
	if c.RateLimit.BytesPerSecond != 2<<20 || c.RateLimit.Burst != 8<<20 || len(c.Multiline.Select) != 2 || len(c.Multiline.Rules) != 3 {
		t.Errorf("example decoded as %+v", c.PolicyConfig)
	}
	p, err := collector.NewPolicies(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dated", "backslash", "legacy", "java,python"} {
		if r, err := p.Rule(name); r == nil || err != nil {
			t.Errorf("rule %s: %v", name, err)
		}
	}
	if r := p.Select("team-a", "app", map[string]string{"app.kubernetes.io/name": "checkout-v2"}); r == nil || r.Name() != "java" {
		t.Errorf("select: %v", r)
	}
	// A misspelt key is refused, naming it.
	_, err = loadConfig("test", []string{"--config", writeConfig(t, "collector:\n  multiline:\n    flush_timeot: 1s\n")}, envMap(nil))
	if err == nil || !strings.Contains(err.Error(), "flush_timeot") {
		t.Errorf("misspelt key: %v", err)
	}
}
