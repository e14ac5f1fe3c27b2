package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/logagent/logagent/enrich"
	"github.com/logagent/logagent/output"
)

// restartKeys are the settings that take effect only when the agent starts.
// A reload leaves them at their running values, names them in one logged
// error and sets logagent_config_pending_restart; everything else applies.
// A key stands for itself and every key under it. The collector's are not
// here: its Reconfigure names those it cannot change (collector.log_glob,
// state_dir, log_roots, read_from, max_record_bytes, read_bytes).
var restartKeys = []string{
	"node_name",           // the pods enrich watches, and every record's host
	"listen",              // the HTTP listener is bound once
	"output",              // the pipeline's stages are built once
	"log.format",          // every component holds a logger of that format
	"enrich.enabled",      // the pipeline's stages are built once
	"enrich.kubeconfig",   // the API client
	"forward.require_ack", // chunks in flight were sent asking for an acknowledgement, or not
}

// notLiveKeys returns the keys a stage's Reconfigure left at their running
// values, and whether err says so (rather than refusing the configuration).
func notLiveKeys(err error) ([]string, bool) {
	var o *output.NotLiveError
	if errors.As(err, &o) {
		return o.Keys, true
	}
	var e *enrich.NotLiveError
	if errors.As(err, &e) {
		return e.Keys, true
	}
	var k interface{ NotLiveKeys() []string }
	if errors.As(err, &k) {
		return k.NotLiveKeys(), true
	}
	return nil, false
}

// configSource loads the configuration as run did when it started: the same
// command line and environment, and the file read again.
type configSource struct {
	args   []string
	getenv func(string) string
	file   string // named by --config or $LOGAGENT_CONFIG; "" when none is
}

func newConfigSource(args []string, getenv func(string) string) configSource {
	s := configSource{args: args, getenv: getenv}
	fs, _ := newFlagSet("logagent", getenv)
	if fs.Parse(args) == nil {
		s.file = fs.Lookup("config").Value.String()
	}
	return s
}

func (s configSource) load() (*Config, error) { return loadConfig("logagent run", s.args, s.getenv) }

// hash identifies the file's content (through any symbolic links), or why it
// cannot be read; "" without a file.
func (s configSource) hash() string {
	if s.file == "" {
		return ""
	}
	return fileHash(s.file)
}

// fileHash identifies a file's content, or why it cannot be read.
func fileHash(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// reloadEvent is one reload, as /debug/config shows it.
type reloadEvent struct {
	At         time.Time `json:"at"`
	Trigger    string    `json:"trigger"` // "signal" (SIGHUP) or "file"
	Successful bool      `json:"successful"`
	// Error is why the configuration was refused (the running one stays).
	Error string `json:"error,omitempty"`
	// Applied are the keys the reload changed.
	Applied []string `json:"applied,omitempty"`
}

// configStatus is what /debug/config serves: where the configuration comes
// from, the last reload, and what waits for a restart. It holds key names
// only, never values.
type configStatus struct {
	File        string       `json:"file,omitempty"`
	WatchFile   bool         `json:"watch_file"`
	LoadedAt    time.Time    `json:"loaded_at"` // start, or the last successful reload
	LastReload  *reloadEvent `json:"last_reload,omitempty"`
	Reloads     int          `json:"reloads"`
	ReloadFails int          `json:"reload_failures"`
	// PendingRestart are the keys whose new values in the file wait for a
	// restart (restartKeys).
	PendingRestart []string `json:"pending_restart"`
}

// reload loads the configuration again and applies what changed: in full, or
// but for the settings that need a restart (which keep their running
// values), or not at all when the new configuration is invalid.
func (a *agent) reload(trigger string) {
	a.loadedHash = a.src.hash() // before reading: a later change is seen again
	cfg, err := a.src.load()
	if err != nil {
		a.reloadFailed(trigger, err)
		return
	}
	a.mu.Lock()
	old := *a.cfg
	a.mu.Unlock()

	var pending []string
	changed := changedKeys(&old, cfg)
	for _, k := range changed {
		if a.restartOnly(k) {
			pending = append(pending, k)
			restoreKey(cfg, &old, k)
		}
	}
	// One node name for every part of the agent, as loadConfig sets it.
	cfg.Collector.NodeName, cfg.Enrich.NodeName = cfg.NodeName, cfg.NodeName
	if err := cfg.Validate(); err != nil {
		a.reloadFailed(trigger, fmt.Errorf("with %s at the running values: %w", strings.Join(pending, ", "), err))
		return
	}
	live := slices.DeleteFunc(slices.Clone(changed), func(k string) bool { return slices.Contains(pending, k) })

	// The Forward output first: it is the one stage that may still refuse a
	// valid configuration (files that do not load), before anything changed.
	if a.forward != nil && anyUnder(live, "forward") {
		if err := a.forward.Reconfigure(cfg.Forward); err != nil {
			keys, ok := notLiveKeys(err)
			if !ok {
				a.reloadFailed(trigger, err)
				return
			}
			pending = a.keepRunning(cfg, &old, keys, pending)
		}
	}
	// Enrich and the collector after it: a stage that refuses its part
	// (a key Validate passed and its Reconfigure did not) keeps its running
	// values, the output's part being applied already; one that cannot
	// change some keys live names them.
	stage := func(name string, err error, restore func()) {
		if err == nil {
			return
		}
		keys, ok := notLiveKeys(err)
		if !ok {
			restore()
			a.log.Error("configuration reload: "+name+" refused its part, which keeps its running values", "err", err)
		}
		pending = a.keepRunning(cfg, &old, keys, pending)
	}
	if a.enricher != nil && anyUnder(live, "enrich") {
		stage("enrich", a.enricher.Reconfigure(cfg.Enrich), func() { cfg.Enrich = old.Enrich })
	}
	if anyUnder(live, "collector") {
		stage("the collector", a.col.Reconfigure(cfg.Collector), func() { cfg.Collector = old.Collector })
		// The Enricher decides each file's policy from the
		// configuration's policies and the pods' annotations: give it
		// the new ones (the collector compiled them).
		if a.enricher != nil {
			a.enricher.SetPolicies(a.col.Policies())
		}
	}
	if cfg.Log.Level != old.Log.Level && a.level != nil {
		level, _ := parseLevel(cfg.Log.Level) // checked by Validate
		a.level.Set(level)
	}
	if cfg.MemoryLimitRatio != old.MemoryLimitRatio {
		setMemoryLimit(cfg.MemoryLimitRatio, a.src.getenv, a.log)
	}
	a.pprof.Store(cfg.Debug.Pprof)
	a.watchFile.Store(cfg.WatchConfig)

	applied := changedKeys(&old, cfg)
	now := time.Now()
	a.mu.Lock()
	a.cfg = cfg
	a.status.LoadedAt = now
	a.status.WatchFile = cfg.WatchConfig
	a.status.LastReload = &reloadEvent{At: now, Trigger: trigger, Successful: true, Applied: applied}
	a.status.Reloads++
	a.status.PendingRestart = append([]string{}, pending...)
	a.mu.Unlock()
	a.cm.succeeded(now, len(pending) > 0)
	if len(pending) > 0 {
		a.log.Error("configuration reloaded, but these settings apply only when the agent starts: they keep their running values until a restart",
			"trigger", trigger, "restart_needed_for", pending, "applied", applied)
		return
	}
	a.log.Info("configuration reloaded", "trigger", trigger, "applied", applied)
}

// keepRunning puts the running values of keys back into cfg and adds them
// to pending.
func (a *agent) keepRunning(cfg, old *Config, keys, pending []string) []string {
	for _, k := range keys {
		restoreKey(cfg, old, k)
		if !slices.Contains(pending, k) {
			pending = append(pending, k)
		}
	}
	return pending
}

func (a *agent) reloadFailed(trigger string, err error) {
	now := time.Now()
	a.mu.Lock()
	a.status.LastReload = &reloadEvent{At: now, Trigger: trigger, Error: err.Error()}
	a.status.Reloads++
	a.status.ReloadFails++
	a.mu.Unlock()
	a.cm.failed()
	a.log.Error("configuration reload failed; the running configuration stays", "trigger", trigger,
		"problems", strings.Split(err.Error(), "\n"))
}

// restartOnly reports whether a change of key waits for a restart.
func (a *agent) restartOnly(key string) bool {
	for _, r := range restartKeys {
		if under(key, r) {
			return true
		}
	}
	// The stdout output has no Reconfigure; of forward's keys it uses the tag.
	return a.forward == nil && key == "forward.tag"
}

// under reports whether key is prefix or a key inside it.
func under(key, prefix string) bool {
	return key == prefix || strings.HasPrefix(key, prefix+".") || strings.HasPrefix(key, prefix+"[")
}

func anyUnder(keys []string, prefix string) bool {
	return slices.ContainsFunc(keys, func(k string) bool { return under(k, prefix) })
}

// changedKeys lists the configuration keys whose values differ between a and
// b: leaves by their YAML path, and lists as a whole ("forward.servers").
func changedKeys(a, b *Config) []string {
	var out []string
	var walk func(a, b reflect.Value, path string)
	walk = func(a, b reflect.Value, path string) {
		t := a.Type()
		if t.Kind() == reflect.Struct && t != durationType {
			for _, f := range yamlFields(t) {
				walk(a.FieldByIndex(f.index), b.FieldByIndex(f.index), joinPath(path, f.name))
			}
			return
		}
		if (t.Kind() == reflect.Slice || t.Kind() == reflect.Map) && a.Len() == 0 && b.Len() == 0 {
			return // nil and empty are the same setting
		}
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			out = append(out, path)
		}
	}
	walk(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "")
	return out
}

// restoreKey sets key (a YAML path as changedKeys names them) in dst to its
// value in src.
func restoreKey(dst, src *Config, key string) {
	d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for _, name := range strings.Split(key, ".") {
		var ok bool
		if d, ok = fieldByKey(d, name); !ok {
			return
		}
		s, _ = fieldByKey(s, name)
	}
	d.Set(s)
}
