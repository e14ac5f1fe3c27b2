package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/logagent/logagent/collector"
	"github.com/logagent/logagent/enrich"
	"github.com/logagent/logagent/output"
	"go.yaml.in/yaml/v3"
)

// Config is every setting of the agent. It is loaded from the YAML file named
// by --config, then environment variables, then flags: flags win.
type Config struct {
	// NodeName is this node's name (the downward API's spec.nodeName).
	NodeName string `yaml:"node_name"`
	// Listen serves /metrics, /healthz and /readyz.
	Listen string `yaml:"listen"`
	// Output is "stdout" or "forward".
	Output string `yaml:"output"`
	// ShutdownTimeout bounds the flush at SIGTERM; keep it below the pod's
	// terminationGracePeriodSeconds.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	Log             LogConfig     `yaml:"log"`

	Collector collector.Config     `yaml:"collector"`
	Enrich    enrich.Config        `yaml:"enrich"`
	Forward   output.ForwardConfig `yaml:"forward"`
}

// LogConfig is about the agent's own logs.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or text
}

func defaultConfig() Config {
	return Config{
		NodeName:        os.Getenv("NODE_NAME"),
		Listen:          ":2020",
		Output:          "stdout",
		ShutdownTimeout: 20 * time.Second,
		Log:             LogConfig{Level: "info", Format: "json"},
		Collector:       collector.DefaultConfig(),
		Enrich:          enrich.DefaultConfig(),
		Forward:         output.DefaultForwardConfig(),
	}
}

// Validate names every bad key and why.
func (c *Config) Validate() error {
	var errs []error
	if c.Output != "stdout" && c.Output != "forward" {
		errs = append(errs, fmt.Errorf("output: must be stdout or forward, not %q", c.Output))
	}
	if c.Listen == "" {
		errs = append(errs, errors.New("listen: must not be empty"))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout: must be positive, not %s", c.ShutdownTimeout))
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		errs = append(errs, fmt.Errorf("log.level: %w", err))
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		errs = append(errs, fmt.Errorf("log.format: must be json or text, not %q", c.Log.Format))
	}
	if err := c.Collector.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Enrich.Enabled && c.NodeName == "" {
		errs = append(errs, errors.New("node_name: must be set when enrich.enabled (set --node-name or NODE_NAME)"))
	}
	if err := c.Enrich.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Output == "forward" {
		if err := c.Forward.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

// setting is one setting that may come from the environment or a flag.
type setting struct {
	flag, env, usage string
	apply            func(c *Config, v string) error
}

func settings() []setting {
	str := func(f func(c *Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { *f(c) = v; return nil }
	}
	return []setting{
		{"log-glob", "LOGAGENT_LOG_GLOB", "files to tail (default /var/log/containers/*.log)",
			str(func(c *Config) *string { return &c.Collector.LogGlob })},
		{"state-dir", "LOGAGENT_STATE_DIR", "directory for checkpoints (default /var/lib/logagent)",
			str(func(c *Config) *string { return &c.Collector.StateDir })},
		{"node-name", "NODE_NAME", "this node's name (default $NODE_NAME)",
			str(func(c *Config) *string { return &c.NodeName })},
		{"listen", "LOGAGENT_LISTEN", "address for /metrics, /healthz, /readyz (default :2020)",
			str(func(c *Config) *string { return &c.Listen })},
		{"output", "LOGAGENT_OUTPUT", "stdout or forward (default stdout)",
			str(func(c *Config) *string { return &c.Output })},
		{"forward", "LOGAGENT_FORWARD", "comma-separated host:port of Forward servers",
			func(c *Config, v string) error {
				s, err := output.ParseServers(v)
				if err != nil {
					return err
				}
				c.Forward.Servers = s
				return nil
			}},
		{"read-from", "LOGAGENT_READ_FROM", "head or tail: where to start files with no checkpoint (default head)",
			str(func(c *Config) *string { return &c.Collector.ReadFrom })},
		{"kubeconfig", "LOGAGENT_KUBECONFIG", "kubeconfig file to use outside a cluster",
			str(func(c *Config) *string { return &c.Enrich.Kubeconfig })},
		{"enrich", "LOGAGENT_ENRICH", "attach pod metadata from the API server (default true)",
			func(c *Config, v string) error {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return fmt.Errorf("want true or false, not %q", v)
				}
				c.Enrich.Enabled = b
				return nil
			}},
		{"log-level", "LOGAGENT_LOG_LEVEL", "debug, info, warn or error (default info)",
			str(func(c *Config) *string { return &c.Log.Level })},
		{"log-format", "LOGAGENT_LOG_FORMAT", "json or text (default json)",
			str(func(c *Config) *string { return &c.Log.Format })},
		// Secrets come from the environment only (a Secret mounted as env),
		// never flags: a command line is visible to every process on the node.
		{"", "LOGAGENT_FORWARD_SHARED_KEY", "Forward shared_key",
			str(func(c *Config) *string { return &c.Forward.SharedKey })},
		{"", "LOGAGENT_FORWARD_USERNAME", "Forward username",
			str(func(c *Config) *string { return &c.Forward.Username })},
		{"", "LOGAGENT_FORWARD_PASSWORD", "Forward password",
			str(func(c *Config) *string { return &c.Forward.Password })},
	}
}

// loadConfig builds the configuration from defaults, the file, the
// environment and the flags, in that order of precedence (last wins).
func loadConfig(name string, args []string, getenv func(string) string) (*Config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	configFile := fs.String("config", getenv("LOGAGENT_CONFIG"), "YAML configuration file")
	given := map[string]string{}
	all := settings()
	for _, s := range all {
		if s.flag != "" {
			fs.Func(s.flag, s.usage+" [$"+s.env+"]", func(v string) error { given[s.flag] = v; return nil })
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg := defaultConfig()
	if *configFile != "" {
		if err := readConfigFile(*configFile, &cfg); err != nil {
			return nil, err
		}
	}
	for _, s := range all {
		if v := getenv(s.env); v != "" {
			if err := s.apply(&cfg, v); err != nil {
				return nil, fmt.Errorf("$%s: %w", s.env, err)
			}
		}
		if v, ok := given[s.flag]; ok && s.flag != "" {
			if err := s.apply(&cfg, v); err != nil {
				return nil, fmt.Errorf("--%s: %w", s.flag, err)
			}
		}
	}
	// One node name for every part of the agent.
	cfg.Collector.NodeName = cfg.NodeName
	cfg.Enrich.NodeName = cfg.NodeName
	return &cfg, cfg.Validate()
}

// readConfigFile decodes the YAML file strictly: an unknown key is an error
// that names it and its line.
func readConfigFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) { // empty file: no settings
		return fmt.Errorf("config %s: %s", path, quoteLines(strings.TrimPrefix(err.Error(), "yaml: "), data))
	}
	return nil
}

var lineRef = regexp.MustCompile(`line (\d+):`)

// quoteLines adds the text of each line a YAML error points at, so that the
// message names the key even where the decoder only gives a line number.
func quoteLines(msg string, data []byte) string {
	lines := strings.Split(string(data), "\n")
	return lineRef.ReplaceAllStringFunc(msg, func(m string) string {
		n, _ := strconv.Atoi(lineRef.FindStringSubmatch(m)[1])
		if n < 1 || n > len(lines) {
			return m
		}
		return fmt.Sprintf("line %d (%q):", n, strings.TrimSpace(lines[n-1]))
	})
}
