package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/logagent/logagent/collector"
	"github.com/logagent/logagent/enrich"
	"github.com/logagent/logagent/output"
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
	// MemoryLimitRatio sets the Go runtime's soft memory limit to this share
	// of the container's memory limit (its cgroup's), unless GOMEMLIMIT is set.
	MemoryLimitRatio float64 `yaml:"memory_limit_ratio"`
	// LivenessTimeout: /healthz fails when there is input not delivered,
	// the output could take it, and nothing has moved for this long (0:
	// never; liveness.go).
	LivenessTimeout time.Duration `yaml:"liveness_timeout"`
	Log             LogConfig     `yaml:"log"`
	// WatchConfig reloads the configuration when its file changes; SIGHUP
	// reloads it either way.
	WatchConfig bool        `yaml:"watch_config"`
	Debug       DebugConfig `yaml:"debug"`

	Collector collector.Config     `yaml:"collector"`
	Enrich    enrich.Config        `yaml:"enrich"`
	Forward   output.ForwardConfig `yaml:"forward"`
}

// DebugConfig is about looking inside the running agent.
type DebugConfig struct {
	// Pprof serves Go's profiler at /debug/pprof/ on the listen address.
	// Off by default: a profile shows the process's memory, and collecting
	// one costs CPU.
	Pprof bool `yaml:"pprof"`
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
		// 30% of the DaemonSet's 128 MiB is a 38 MiB soft limit: the heap is
		// collected harder as it nears it, which keeps the RSS near the pod's
		// 64 MiB request on a busy node, at some CPU cost.
		MemoryLimitRatio: 0.3,
		LivenessTimeout:  5 * time.Minute,
		Log:              LogConfig{Level: "info", Format: "json"},
		WatchConfig:      true,
		Debug:            DebugConfig{Pprof: false},
		Collector:        collector.DefaultConfig(),
		Enrich:           enrich.DefaultConfig(),
		Forward:          output.DefaultForwardConfig(),
	}
}

// Validate names every bad key of every section, used or not, and why.
func (c *Config) Validate() error {
	var errs []error
	if c.Output != "stdout" && c.Output != "forward" {
		errs = append(errs, fmt.Errorf("output: must be stdout or forward, not %q", c.Output))
	}
	if c.Listen == "" {
		errs = append(errs, errors.New("listen: must not be empty"))
	} else if err := checkListen(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %w", err))
	}
	if c.LivenessTimeout < 0 {
		errs = append(errs, fmt.Errorf("liveness_timeout: must not be negative (0 turns the check off), not %s", c.LivenessTimeout))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout: must be positive, not %s", c.ShutdownTimeout))
	}
	if !(c.MemoryLimitRatio > 0 && c.MemoryLimitRatio <= 1) {
		errs = append(errs, fmt.Errorf("memory_limit_ratio: must be above 0 and at most 1, not %g", c.MemoryLimitRatio))
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
		errs = append(errs, errors.New("node_name: must be set when enrich.enabled (set NODE_NAME or --node-name; "+
			"outside a cluster, --enrich=false runs without pod metadata)"))
	}
	// enrich checks its keys only when enabled, and node_name (checked just
	// above, with the hint how to set it) too: check a copy that is enabled
	// and named, so every enrich key is checked and node_name reported once.
	en := c.Enrich
	en.Enabled, en.NodeName = true, "checked-above"
	if err := en.Validate(); err != nil {
		errs = append(errs, err)
	}
	// Likewise forward's keys are checked with another output too; only its
	// need for a server is the forward output's own.
	fw := c.Forward
	if c.Output != "forward" && len(fw.Servers) == 0 {
		fw.Servers = []output.Server{{Address: "unused.invalid:24224"}}
	}
	if err := fw.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkListen accepts what net.Listen("tcp", addr) accepts without
// resolving or binding: check runs beside the agent, whose port is taken.
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not [host]:port: %w", addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%q: bad port: %w", addr, err)
	}
	return nil
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
	boolean := func(f func(c *Config) *bool) func(*Config, string) error {
		return func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("want true or false, not %q", v)
			}
			*f(c) = b
			return nil
		}
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
			boolean(func(c *Config) *bool { return &c.Enrich.Enabled })},
		{"log-level", "LOGAGENT_LOG_LEVEL", "debug, info, warn or error (default info)",
			str(func(c *Config) *string { return &c.Log.Level })},
		{"log-format", "LOGAGENT_LOG_FORMAT", "json or text (default json)",
			str(func(c *Config) *string { return &c.Log.Format })},
		{"watch-config", "LOGAGENT_WATCH_CONFIG", "reload when the configuration file changes (default true; SIGHUP reloads either way)",
			boolean(func(c *Config) *bool { return &c.WatchConfig })},
		{"pprof", "LOGAGENT_PPROF", "serve Go's profiler at /debug/pprof/ on the listen address (default false)",
			boolean(func(c *Config) *bool { return &c.Debug.Pprof })},
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
// environment and the flags, in that order of precedence (last wins). A
// returned error lists every problem found, each once; the configuration is
// returned with it (as far as it could be read), for check to look further.
// flag.ErrHelp means --help was asked for.
func loadConfig(name string, args []string, getenv func(string) string) (*Config, error) {
	fs, given := newFlagSet(name, getenv)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	var problems []error
	cfg := defaultConfig()
	if file := fs.Lookup("config").Value.String(); file != "" {
		if err := readConfigFile(file, &cfg, getenv); err != nil {
			problems = append(problems, err)
		}
	}
	for _, s := range settings() {
		if v := getenv(s.env); v != "" {
			if err := s.apply(&cfg, v); err != nil {
				problems = append(problems, fmt.Errorf("$%s: %w", s.env, err))
			}
		}
		if v, ok := given[s.flag]; ok && s.flag != "" {
			if err := s.apply(&cfg, v); err != nil {
				problems = append(problems, fmt.Errorf("--%s: %w", s.flag, err))
			}
		}
	}
	// One node name for every part of the agent.
	cfg.Collector.NodeName = cfg.NodeName
	cfg.Enrich.NodeName = cfg.NodeName
	if err := cfg.Validate(); err != nil {
		problems = append(problems, err)
	}
	return &cfg, joinOnce(problems...)
}

// newFlagSet defines --config and every setting's flag; given collects the
// flags' values, which loadConfig applies after the file and the environment.
// It prints nothing: the caller reports errors and prints usage.
func newFlagSet(name string, getenv func(string) string) (fs *flag.FlagSet, given map[string]string) {
	fs = flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.String("config", getenv("LOGAGENT_CONFIG"), "the YAML configuration file")
	given = map[string]string{}
	for _, s := range settings() {
		switch {
		case s.flag == "":
		case boolFlags[s.flag]:
			fs.BoolFunc(s.flag, s.usage, func(v string) error { given[s.flag] = v; return nil })
		default:
			fs.Func(s.flag, s.usage, func(v string) error { given[s.flag] = v; return nil })
		}
	}
	return fs, given
}

// boolFlags may be given without a value: --enrich is --enrich=true.
var boolFlags = map[string]bool{"enrich": true, "watch-config": true, "pprof": true}

// joinOnce joins errors, flattened, each distinct message once.
func joinOnce(errs ...error) error {
	var out []error
	seen := map[string]bool{}
	var add func(err error)
	add = func(err error) {
		if err == nil {
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				add(e)
			}
			return
		}
		if !seen[err.Error()] {
			seen[err.Error()] = true
			out = append(out, err)
		}
	}
	for _, e := range errs {
		add(e)
	}
	return errors.Join(out...)
}
