package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigPrecedence(t *testing.T) {
	file := writeConfig(t, `
node_name: from-file
output: stdout
enrich:
  enabled: false
collector:
  log_glob: /file/*.log
  read_from: tail
  rotate_wait: 7s
log:
  level: debug
`)
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantGlob string
		wantNode string
		wantFrom string
	}{
		{"file only", []string{"--config", file}, nil, "/file/*.log", "from-file", "tail"},
		{"env beats file", []string{"--config", file}, map[string]string{"LOGAGENT_LOG_GLOB": "/env/*.log", "NODE_NAME": "from-env"}, "/env/*.log", "from-env", "tail"},
		{"flag beats env", []string{"--config", file, "--log-glob", "/flag/*.log", "--read-from", "head"}, map[string]string{"LOGAGENT_LOG_GLOB": "/env/*.log"}, "/flag/*.log", "from-file", "head"},
		{"config from env", nil, map[string]string{"LOGAGENT_CONFIG": file}, "/file/*.log", "from-file", "tail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig("test", tt.args, envMap(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Collector.LogGlob != tt.wantGlob || cfg.NodeName != tt.wantNode || cfg.Collector.ReadFrom != tt.wantFrom {
				t.Errorf("glob %q node %q read_from %q; want %q %q %q", cfg.Collector.LogGlob, cfg.NodeName, cfg.Collector.ReadFrom, tt.wantGlob, tt.wantNode, tt.wantFrom)
			}
			if cfg.Collector.NodeName != cfg.NodeName || cfg.Enrich.NodeName != cfg.NodeName {
				t.Error("node name not handed to every stage")
			}
			if cfg.Collector.RotateWait != 7*time.Second || cfg.Log.Level != "debug" {
				t.Errorf("file settings lost: rotate_wait %s level %s", cfg.Collector.RotateWait, cfg.Log.Level)
			}
		})
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, file string
		args       []string
		want       string
	}{
		{"unknown key", "collector:\n  log_glop: x\n", nil, "log_glop"},
		{"bad read_from", "enrich: {enabled: false}\ncollector:\n  read_from: middle\n", nil, "collector.read_from"},
		{"bad duration", "collector:\n  rotate_wait: soon\n", nil, "rotate_wait"},
		{"bad output flag", "enrich: {enabled: false}\n", []string{"--output", "kafka"}, "output"},
		{"enrich without node", "enrich: {enabled: true}\n", nil, "node_name"},
		{"bad level", "enrich: {enabled: false}\nlog: {level: loud}\n", nil, "log.level"},
		{"forward without servers", "enrich: {enabled: false}\noutput: forward\n", nil, "forward"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--config", writeConfig(t, tt.file)}, tt.args...)
			_, err := loadConfig("test", args, envMap(nil))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestCheckCommand(t *testing.T) {
	good := writeConfig(t, "node_name: n\nenrich: {enabled: false}\n")
	bad := writeConfig(t, "collector: {read_from: middle}\n")
	var out, errOut strings.Builder
	if code := realMain([]string{"check", "--config", good}, &out, &errOut); code != 0 {
		t.Errorf("check good config: exit %d, %s", code, errOut.String())
	}
	errOut.Reset()
	if code := realMain([]string{"check", "--config", bad}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "read_from") {
		t.Errorf("check bad config: exit %d, stderr %q", code, errOut.String())
	}
}

func TestForwardFlag(t *testing.T) {
	cfg, err := loadConfig("test", []string{"--output", "forward", "--forward", "a.example:24224,127.0.0.1:24225", "--enrich=false"}, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Forward.Servers) != 2 {
		t.Fatalf("servers = %+v", cfg.Forward.Servers)
	}
}

func TestSecretsFromEnvironment(t *testing.T) {
	file := writeConfig(t, "enrich: {enabled: false}\noutput: forward\nforward:\n  servers: [{address: '127.0.0.1:24224'}]\n  username: from-file\n")
	cfg, err := loadConfig("test", []string{"--config", file}, envMap(map[string]string{
		"LOGAGENT_FORWARD_SHARED_KEY": "s3cret", "LOGAGENT_FORWARD_PASSWORD": "pw", "LOGAGENT_FORWARD_USERNAME": "agent",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Forward.SharedKey != "s3cret" || cfg.Forward.Password != "pw" || cfg.Forward.Username != "agent" {
		t.Errorf("shared_key %q username %q password %q", cfg.Forward.SharedKey, cfg.Forward.Username, cfg.Forward.Password)
	}
}
