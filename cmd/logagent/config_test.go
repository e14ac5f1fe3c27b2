package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
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

// runMain runs the command line as the binary would, returning the exit
// code, stdout and stderr.
func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut strings.Builder
	code := realMain(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestCheckReportsEveryProblemOnce: one run of check names every bad key of
// every section (used or not) by its YAML path, each problem once, never by
// Go type, and opens the files the configuration names.
func TestCheckReportsEveryProblemOnce(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	file := writeConfig(t, `
output: stdout
listen: notanaddress
collector:
  log_glop: /x
  rotate_wait: soon
enrich:
  miss_wait: 2h
  kubeconfig: /nonexistent/kubeconfig
forward:
  servers:
    - address: nohost
  batch_bytes: -1
  window_bytes: 0
`)
	code, _, stderr := runMain(t, "check", "--config", file)
	if code == 0 {
		t.Fatalf("check passed a bad configuration:\n%s", stderr)
	}
	for _, want := range []string{
		"collector.log_glop (line 5): unknown key; did you mean log_glob?",
		`collector.rotate_wait (line 6): want a duration`,
		`listen: "notanaddress" is not [host]:port`,
		"enrich.miss_wait:",
		// forward's keys are checked though the output is stdout: every
		// problem in one pass, not one per edit.
		"forward.servers[0].address:",
		"forward.batch_bytes:",
		"forward.window_bytes:",
		"node_name: must be set",
		"--enrich=false",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("check's output lacks %q:\n%s", want, stderr)
		}
	}
	if n := strings.Count(stderr, "node_name"); n != 1 {
		t.Errorf("node_name named %d times, want once:\n%s", n, stderr)
	}
	for _, goName := range []string{"collector.Config", "time.Duration", "not found in type", "!!str"} {
		if strings.Contains(stderr, goName) {
			t.Errorf("check's output speaks Go (%q):\n%s", goName, stderr)
		}
	}
	// Each problem once.
	lines := map[string]int{}
	for _, l := range strings.Split(stderr, "\n") {
		lines[l]++
		if lines[l] == 2 && strings.TrimSpace(l) != "" {
			t.Errorf("printed twice: %q", l)
		}
	}
}

// TestCheckOpensWhatRunWould: check fails where run would fail to start:
// missing or bad TLS files, a missing kubeconfig, a state directory that
// cannot be created. A configuration run accepts passes.
func TestCheckOpensWhatRunWould(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "output: forward\nforward:\n  servers: [{address: '127.0.0.1:24224'}]\n"
	for _, tc := range []struct {
		name, file string
		args       []string
		want       string // "" for a passing check
	}{
		{"fine", base + "enrich: {enabled: false}\n", []string{"--state-dir", dir}, ""},
		{"missing CA file", base + "  tls: {enabled: true, ca_file: /nonexistent/ca.pem}\nenrich: {enabled: false}\n",
			[]string{"--state-dir", dir}, "forward.tls.ca_file: open /nonexistent/ca.pem: no such file"},
		{"CA file without a certificate", base + "  tls: {enabled: true, ca_file: " + notPEM + "}\nenrich: {enabled: false}\n",
			[]string{"--state-dir", dir}, "holds no PEM certificate"},
		{"missing kubeconfig", base, []string{"--state-dir", dir, "--node-name", "n", "--kubeconfig", "/nonexistent/kubeconfig"},
			"enrich.kubeconfig /nonexistent/kubeconfig"},
		{"state dir under a file", base + "enrich: {enabled: false}\n", []string{"--state-dir", notPEM + "/state"},
			"collector.state_dir: " + notPEM + " is not a folder"},
		{"bad listen flag", base + "enrich: {enabled: false}\n", []string{"--state-dir", dir, "--listen", "notanaddress"},
			`listen: "notanaddress" is not [host]:port`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runMain(t, append([]string{"check", "--config", writeConfig(t, tc.file)}, tc.args...)...)
			if tc.want == "" {
				if code != 0 || !strings.Contains(stdout, "configuration ok") {
					t.Fatalf("check: exit %d\n%s", code, stderr)
				}
				return
			}
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("check: exit %d, want a failure naming %q:\n%s", code, tc.want, stderr)
			}
		})
	}
}

// TestSecretsNotEchoed: a misspelt secret key, a secret of the wrong type
// and a syntax error on a secret's line never repeat the value.
func TestSecretsNotEchoed(t *testing.T) {
	for _, body := range []string{
		"forward:\n  shared_kye: supersecret\n",
		"forward:\n  shared_key: {value: supersecret}\n",
		"forward:\n  password: [supersecret]\n",
		"forward:\n  shared_kye: \"supersecret\n",
		"forward:\n  api_token: supersecret\n",
		"forward:\n  shared_key: supersecret\n  - x\n",
	} {
		_, _, stderr := runMain(t, "check", "--enrich=false", "--config", writeConfig(t, body))
		if strings.Contains(stderr, "supersecret") {
			t.Errorf("the value is echoed for\n%s---\n%s", body, stderr)
		}
		if !strings.Contains(stderr, "forward") && !strings.Contains(stderr, "line 2") {
			t.Errorf("the problem is not located for\n%s---\n%s", body, stderr)
		}
	}
	// A value that is no secret is quoted: it is what the user must fix.
	_, _, stderr := runMain(t, "check", "--enrich=false", "--config", writeConfig(t, "collector:\n  read_from: middle\n"))
	if !strings.Contains(stderr, `"middle"`) {
		t.Errorf("a plain bad value is not quoted:\n%s", stderr)
	}
}

func TestEnvSubstitution(t *testing.T) {
	env := map[string]string{"GLOB": "/env/*.log", "BYTES": "8192", "COLON": "a: b"}
	for _, tc := range []struct {
		name, file string
		check      func(c *Config) bool
		want       string // error substring, "" for none
	}{
		{"a variable", "collector: {log_glob: '${GLOB}'}", func(c *Config) bool { return c.Collector.LogGlob == "/env/*.log" }, ""},
		{"inside a value", "collector: {state_dir: '/var${GLOB}'}", func(c *Config) bool { return c.Collector.StateDir == "/var/env/*.log" }, ""},
		{"typed by its value", "collector:\n  read_bytes: ${BYTES}\n", func(c *Config) bool { return c.Collector.ReadBytes == 8192 }, ""},
		{"a default", "collector: {state_dir: '${NOPE:-/tmp/state}'}", func(c *Config) bool { return c.Collector.StateDir == "/tmp/state" }, ""},
		{"a colon stays in the value", "forward: {self_hostname: '${COLON}'}", func(c *Config) bool { return c.Forward.SelfHostname == "a: b" }, ""},
		{"escaped", "forward: {self_hostname: '$${GLOB}'}", func(c *Config) bool { return c.Forward.SelfHostname == "${GLOB}" }, ""},
		{"unset", "collector:\n  state_dir: ${NOPE}\n", nil, "collector.state_dir (line 2): ${NOPE} is not set"},
		{"a quoted value stays a string", "collector:\n  multiline:\n    max_lines: \"${BYTES}\"\n", nil, "collector.multiline.max_lines (line 3): want a whole number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig("test", []string{"--enrich=false", "--config", writeConfig(t, tc.file+"\n")}, envMap(env))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(cfg) {
				t.Errorf("not substituted: %+v", cfg)
			}
		})
	}
}

// TestHelp: --help explains the commands, --config and $LOGAGENT_CONFIG,
// every flag and variable (secrets included), and exits 0; --version works.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"run", "--help"}, {"check", "-h"}} {
		code, stdout, stderr := runMain(t, args...)
		if code != 0 {
			t.Errorf("%v: exit %d, %s", args, code, stderr)
		}
		want := append(commandNames(), "--config", "$LOGAGENT_CONFIG", "--enrich=false", "${VAR}")
		for _, s := range settings() {
			want = append(want, "$"+s.env)
			if s.flag != "" {
				want = append(want, "--"+s.flag)
			}
		}
		for _, w := range want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%v: the usage lacks %q", args, w)
			}
		}
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		if code, stdout, _ := runMain(t, args...); code != 0 || stdout != "logagent "+version+"\n" {
			t.Errorf("%v: exit %d, %q", args, code, stdout)
		}
	}
	if code, _, stderr := runMain(t, "frobnicate"); code != 2 || !strings.Contains(stderr, "--help") {
		t.Errorf("an unknown command: exit %d, %q", code, stderr)
	}
}

// TestDurationsLogged as Go writes them, in both formats.
func TestDurationsLogged(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var b strings.Builder
		newLogger(LogConfig{Level: "info", Format: format}, &b).With("component", "output").
			WithGroup("server").Info("retrying", "retry_in", 1500*time.Millisecond, slog.Any("took", 2*time.Minute))
		if !strings.Contains(b.String(), "1.5s") || !strings.Contains(b.String(), "2m0s") || strings.Contains(b.String(), "1500000000") {
			t.Errorf("%s: %s", format, b.String())
		}
	}
}

// TestSchemaEnumsMatchValidate: every value the schema allows for an enum
// key passes Validate, and another does not, so the chart's schema and the
// agent cannot disagree.
func TestSchemaEnumsMatchValidate(t *testing.T) {
	for path, values := range schemaEnums {
		for _, v := range append(values, "bogus") {
			// a.b.c: v as nested maps
			body := ""
			keys := strings.Split(path, ".")
			for i, k := range keys {
				body += strings.Repeat("  ", i) + k + ":"
				if i < len(keys)-1 {
					body += "\n"
				}
			}
			body += " " + v + "\n"
			_, err := loadConfig("test", []string{"--enrich=false", "--forward", "127.0.0.1:24224", "--config", writeConfig(t, body)}, envMap(nil))
			if ok := err == nil; ok != (v != "bogus") {
				t.Errorf("%s: %s: Validate says %v", path, v, err)
			}
		}
	}
	// The schema names every key the decoder knows, and no other.
	var walk func(s map[string]any, into map[string]bool)
	walk = func(s map[string]any, into map[string]bool) {
		if items, ok := s["items"].(map[string]any); ok {
			walk(items, into)
		}
		props, _ := s["properties"].(map[string]any)
		for k, v := range props {
			into[k] = true
			walk(v.(map[string]any), into)
		}
	}
	inSchema := map[string]bool{}
	walk(configSchema(), inSchema)
	if known := knownKeyNames(); !reflect.DeepEqual(inSchema, known) {
		t.Errorf("schema keys %v, decoder keys %v", inSchema, known)
	}
}

// TestSizeKeys: keys counting bytes take a number or a size with a unit,
// and a bad size is named by its key.
func TestSizeKeys(t *testing.T) {
	file := writeConfig(t, `
node_name: n
output: stdout
enrich: {enabled: false}
collector:
  buffer_bytes: 8MiB
  max_record_bytes: 524288
forward:
  queue_bytes: "4 MiB"
  window_bytes: 2M
`)
	cfg, err := loadConfig("test", []string{"--config", file}, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Collector.BufferBytes != 8<<20 || cfg.Collector.MaxRecordBytes != 512<<10 || cfg.Forward.QueueBytes != 4<<20 || cfg.Forward.WindowBytes != 2e6 {
		t.Errorf("buffer_bytes %d, max_record_bytes %d, queue_bytes %d, window_bytes %d; want 8MiB, 512KiB, 4MiB, 2MB",
			cfg.Collector.BufferBytes, cfg.Collector.MaxRecordBytes, cfg.Forward.QueueBytes, cfg.Forward.WindowBytes)
	}
	bad := writeConfig(t, "node_name: n\noutput: stdout\nenrich: {enabled: false}\ncollector:\n  buffer_bytes: 4 parsecs\n")
	_, err = loadConfig("test", []string{"--config", bad}, envMap(nil))
	if err == nil || !strings.Contains(err.Error(), "collector.buffer_bytes (line 5)") || !strings.Contains(err.Error(), "4MiB") {
		t.Errorf("buffer_bytes: 4 parsecs: %v, want an error naming collector.buffer_bytes and how to write a size", err)
	}
}
