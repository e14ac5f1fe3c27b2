package deploy

import (
	"net"
	"regexp"
	"strings"
	"testing"

	"time"

	"go.yaml.in/yaml/v3"
)

// readmeCodeBlock returns the README's fenced block (any language) of a
// section whose first line is heading.
func readmeCodeBlock(t testing.TB, section, heading string) string {
	t.Helper()
	text := readmeSection(t, repoRoot(t), section)
	for _, m := range regexp.MustCompile("(?s)```[a-z]*\n(.*?)```").FindAllStringSubmatch(text, -1) {
		if strings.HasPrefix(m[1], heading+"\n") || strings.HasPrefix(m[1], heading+" ") {
			return m[1]
		}
	}
	t.Fatalf("README %q has no code block starting with %q", section, heading)
	return ""
}

// TestREADMEReceiverSnippets: Fluentd and Fluent Bit cannot run here, so
// their snippets are checked as far as can be without them: the agent's side
// passes `logagent check` (with the shared key its heading names, and real
// TLS files where it names them), and both sides agree on the port, the
// shared key and TLS. (The OpenTelemetry Collector's pair runs for real in
// test/e2e.)
func TestREADMEReceiverSnippets(t *testing.T) {
	bin := agentBinary(t)
	for _, tc := range []struct {
		receiver, agent string
		port, key       *regexp.Regexp // in the receiver's configuration
		tls             *regexp.Regexp // present iff the receiver does TLS
	}{
		{"# fluentd.conf", "# logagent.yaml, for Fluentd",
			regexp.MustCompile(`(?m)^\s*port (\d+)$`), regexp.MustCompile(`(?m)^\s*shared_key (\S+)$`), regexp.MustCompile(`<transport tls>`)},
		{"# fluent-bit.conf", "# logagent.yaml, for Fluent Bit",
			regexp.MustCompile(`(?m)^\s*Port\s+(\d+)$`), regexp.MustCompile(`(?m)^\s*Shared_Key\s+(\S+)$`), regexp.MustCompile(`(?mi)^\s*tls\s+on`)},
	} {
		t.Run(tc.receiver, func(t *testing.T) {
			recv := readmeCodeBlock(t, "Receivers", tc.receiver)
			agent := readmeCodeBlock(t, "Receivers", tc.agent)
			heading, _, _ := strings.Cut(agent, "\n")
			keyEnv := regexp.MustCompile(`LOGAGENT_FORWARD_SHARED_KEY=(\S+?)\)`).FindStringSubmatch(heading)
			if keyEnv == nil {
				t.Fatalf("the agent snippet's heading %q does not give LOGAGENT_FORWARD_SHARED_KEY", heading)
			}
			var cfg struct {
				Forward struct {
					Servers []struct{ Address string } `yaml:"servers"`
					TLS     struct{ Enabled bool }     `yaml:"tls"`
				} `yaml:"forward"`
			}
			if err := yaml.Unmarshal([]byte(agent), &cfg); err != nil || len(cfg.Forward.Servers) != 1 {
				t.Fatalf("the agent snippet: %v, servers %v", err, cfg.Forward.Servers)
			}
			_, port, err := net.SplitHostPort(cfg.Forward.Servers[0].Address)
			if err != nil {
				t.Fatal(err)
			}
			if m := tc.port.FindStringSubmatch(recv); m == nil || m[1] != port {
				t.Errorf("the receiver listens on %v, the agent sends to port %s", m, port)
			}
			if m := tc.key.FindStringSubmatch(recv); m == nil || m[1] != keyEnv[1] {
				t.Errorf("the receiver's shared key is %v, the agent's %s", m, keyEnv[1])
			}
			if tc.tls.MatchString(recv) != cfg.Forward.TLS.Enabled {
				t.Errorf("TLS: the receiver %v, the agent %v", tc.tls.MatchString(recv), cfg.Forward.TLS.Enabled)
			}
			raw := strings.ReplaceAll(agent, "/etc/logagent/tls/", tlsFiles(t)+"/")
			out, err := run(t.TempDir(), []string{"NODE_NAME=node-a", "LOGAGENT_FORWARD_SHARED_KEY=" + keyEnv[1]}, nil, bin,
				"check", "--config", writeFile(t, "logagent.yaml", []byte(raw)), "--state-dir", t.TempDir())
			if err != nil || !strings.Contains(out, "configuration ok") {
				t.Errorf("logagent check of the README's snippet: %v\n%s", err, out)
			}
		})
	}
}

// TestREADMELaptopCommand: the Running section's command for a laptop runs
// the agent on a kubelet-layout folder without a cluster, and every record
// comes out on stdout.
func TestREADMELaptopCommand(t *testing.T) {
	var cmd string
	for _, c := range readmeCommands(t, "Running") {
		if strings.HasPrefix(c, "bin/logagent --enrich=false ") {
			cmd = c
		}
	}
	if cmd == "" {
		t.Fatal("README Running: no bin/logagent --enrich=false command")
	}
	dir := t.TempDir()
	glob := writeKubeletLogs(t, dir, []container{
		{namespace: "shop", pod: "web-1", uid: "0c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f", name: "nginx", lines: 5},
		{namespace: "shop", pod: "api-0", uid: "1c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f", name: "api", lines: 7},
	})
	const readmeGlob, readmeState = "'/tmp/node-logs/containers/*.log'", "/tmp/logagent-state"
	if !strings.Contains(cmd, readmeGlob) || !strings.Contains(cmd, readmeState) {
		t.Fatalf("the README's command %q no longer uses %s and %s", cmd, readmeGlob, readmeState)
	}
	cmd = strings.Replace(cmd, readmeGlob, glob, 1)
	cmd = strings.Replace(cmd, readmeState, t.TempDir(), 1)
	// startAgent adds its own --listen, which wins over the README's.
	a := startAgent(t, nil, strings.Fields(strings.TrimPrefix(cmd, "bin/logagent "))...)
	waitFor(t, time.Minute, "12 records on stdout", func() (bool, string) {
		n := strings.Count(a.stdout.String(), `"kubernetes":{`)
		return n == 12, a.stderr.String()
	})
}
