package deploy

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite generated files (the chart's values.schema.json) instead of comparing")

// TestValuesSchemaConfig: the chart's values.schema.json checks config.* with
// the schema the agent generates from its Config (`logagent schema`), the
// struct the agent decodes its file into and the README's configuration
// reference is checked against, so the three cannot drift. Regenerate with
// go test ./deploy -run TestValuesSchemaConfig -update.
func TestValuesSchemaConfig(t *testing.T) {
	root := repoRoot(t)
	out, err := run(t.TempDir(), nil, nil, agentBinary(t), "schema")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatalf("logagent schema: %v\n%s", err, out)
	}
	delete(cfg, "$schema")
	delete(cfg, "title")
	cfg["description"] = "The agent's configuration file (README, Configuration reference), as `logagent schema` prints its schema."

	path := filepath.Join(root, chartDir, "values.schema.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	schema["properties"].(map[string]any)["config"] = cfg
	want, err := json.MarshalIndent(schema, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if bytes.Equal(data, want) {
		return
	}
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s", path)
		return
	}
	t.Errorf("%s is not what the agent's configuration schema makes it: run go test ./deploy -run TestValuesSchemaConfig -update", path)
}
