package collector

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// NotLiveError names the settings Reconfigure left at their running values
// because they take effect only when the collector starts; the rest of the
// configuration was applied.
type NotLiveError struct {
	Keys []string // "collector.state_dir", ...
}

func (e *NotLiveError) Error() string {
	return "collector: these settings apply only at start, they keep their running values: " + strings.Join(e.Keys, ", ")
}

// NotLiveKeys returns Keys (the agent's reload reads them through this
// method, as it does the output's and enrich's errors).
func (e *NotLiveError) NotLiveKeys() []string { return e.Keys }

// IsNotLive reports whether err is a *NotLiveError: the configuration was
// applied but for the settings it names.
func IsNotLive(err error) bool {
	var nl *NotLiveError
	return errors.As(err, &nl)
}

// restartOnly are the settings a running collector keeps, by key, with why:
//   - log_glob, log_roots: which files are the collector's (a file no
//     longer matched would be dropped mid-read, one newly matched read from
//     where?);
//   - state_dir: the checkpoint file and its lock;
//   - read_from: matters only at the first start;
//   - max_record_bytes, read_bytes: every reader's decoder and read
//     buffers are sized by them, and buffer_bytes' lower bound.
var restartOnly = []struct {
	key  string
	same func(a, b *Config) bool
}{
	{"log_glob", func(a, b *Config) bool { return a.LogGlob == b.LogGlob }},
	{"state_dir", func(a, b *Config) bool { return a.StateDir == b.StateDir }},
	{"log_roots", func(a, b *Config) bool { return slices.Equal(a.LogRoots, b.LogRoots) }},
	{"read_from", func(a, b *Config) bool { return a.ReadFrom == b.ReadFrom }},
	{"max_record_bytes", func(a, b *Config) bool { return a.MaxRecordBytes == b.MaxRecordBytes }},
	{"read_bytes", func(a, b *Config) bool { return a.ReadBytes == b.ReadBytes }},
}

// initLive sets the live settings from the configuration New was given.
func (c *Collector) initLive(cfg Config) {
	c.liveCfg.Store(&cfg)
	c.rescanReset, c.saveReset = make(chan struct{}, 1), make(chan struct{}, 1)
}

// live is the configuration as it is now: a reload may change its live
// settings (Reconfigure); restart-only ones are always New's.
func (c *Collector) live() *Config { return c.liveCfg.Load() }

// Reconfigure applies a new configuration while the collector runs:
// buffer_bytes (a smaller budget takes effect as acknowledgements free
// room; nothing held is given back), deleted_hold_bytes, rotate_wait,
// rescan_interval, poll_interval (from each file's next wait), read_wait,
// checkpoint_interval, partial_flush_timeout, and the multiline and
// rate_limit policies (Policies). The settings that apply only at start
// keep their running values and are named in a *NotLiveError; the rest is
// applied. A configuration that is invalid (with those settings at their
// running values) changes nothing and is returned as another error.
func (c *Collector) Reconfigure(cfg Config) error {
	c.reconfMu.Lock()
	defer c.reconfMu.Unlock()
	cur := c.live()
	next := cfg
	next.NodeName = cur.NodeName // the agent's, set at start
	var notLive []string
	for _, r := range restartOnly {
		if !r.same(cur, &next) {
			notLive = append(notLive, "collector."+r.key)
		}
	}
	next.LogGlob, next.StateDir, next.LogRoots, next.ReadFrom = cur.LogGlob, cur.StateDir, cur.LogRoots, cur.ReadFrom
	next.MaxRecordBytes, next.ReadBytes = cur.MaxRecordBytes, cur.ReadBytes
	if err := next.Validate(); err != nil {
		return fmt.Errorf("collector: %w", err)
	}
	pol := c.Policies()
	if !reflect.DeepEqual(next.PolicyConfig, cur.PolicyConfig) {
		p, err := NewPolicies(next)
		if err != nil {
			return fmt.Errorf("collector: %w", err)
		}
		pol = p
	}

	c.liveCfg.Store(&next)
	c.SetPolicies(pol)
	if next.BufferBytes != cur.BufferBytes {
		c.budget.resize(int64(next.BufferBytes))
	}
	if next.RescanInterval != cur.RescanInterval {
		wake(c.rescanReset)
	}
	if next.CheckpointInterval != cur.CheckpointInterval {
		wake(c.saveReset)
	}
	if next.PollInterval != cur.PollInterval {
		// Readers waiting with the old interval look again now.
		c.mu.Lock()
		c.forEachFile(func(f *file) { f.wake() })
		c.mu.Unlock()
	}
	if len(notLive) > 0 {
		return &NotLiveError{Keys: notLive}
	}
	return nil
}
