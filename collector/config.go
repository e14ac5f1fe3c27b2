package collector

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// Config is the collector's section of the agent's configuration.
type Config struct {
	// LogGlob finds the files to tail: normally the kubelet's links.
	LogGlob string `yaml:"log_glob"`
	// StateDir holds the checkpoint file.
	StateDir string `yaml:"state_dir"`
	// LogRoots are the folders log files may be in, once links are
	// resolved: anything else is not read. Empty: the "pods" folder beside
	// the glob's folder (/var/log/pods for the default glob) and
	// /var/lib/docker/containers.
	LogRoots []string `yaml:"log_roots"`
	// NodeName goes into every record's kubernetes.host.
	NodeName string `yaml:"-"`
	// ReadFrom says where to start in a file with no checkpoint when the
	// agent starts: "head" or "tail". Files that appear later are always
	// read from the head.
	ReadFrom string `yaml:"read_from"`
	// MaxRecordBytes caps a joined record; longer ones go on in pieces.
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// ReadBytes is the most one file may read in one turn, so that a noisy
	// container does not starve its neighbours.
	ReadBytes int `yaml:"read_bytes"`
	// BufferBytes bounds the file bytes read but not yet acknowledged
	// downstream; reading pauses when it is reached.
	BufferBytes int `yaml:"buffer_bytes"`
	// DeletedHoldBytes caps the unread bytes kept reachable by holding
	// deleted files open until they are drained.
	DeletedHoldBytes int64 `yaml:"deleted_hold_bytes"`
	// RotateWait is how long a renamed file is still read after its last
	// growth, for a runtime that writes a little more before reopening.
	RotateWait time.Duration `yaml:"rotate_wait"`
	// RescanInterval is the safety net behind fsnotify.
	RescanInterval time.Duration `yaml:"rescan_interval"`
	// PollInterval is how often a file is checked when no inotify watch
	// covers it (the fallback: the watch limit was reached).
	PollInterval time.Duration `yaml:"poll_interval"`
	// ReadWait is how long a file that is being written a line at a time
	// gathers lines between two reads: a few milliseconds buy batches of
	// several lines instead of one read, one batch and one acknowledgement
	// per line. The first line after a quiet spell is read at once.
	ReadWait time.Duration `yaml:"read_wait"`
	// ReadWaitMax is how far read_wait may grow when many files are
	// written at once: the wait is stretched so that the collector reads
	// at most readsPerSecond times a second in all (2,000 files written a
	// line at a time are each read every 500 ms, not at every line), since
	// each read costs a batch and an acknowledgement whatever it holds.
	// A read_wait_max below read_wait is read_wait: the wait never shrinks.
	ReadWaitMax time.Duration `yaml:"read_wait_max"`
	// CheckpointInterval is how often checkpoints are persisted.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// PartialFlushTimeout is how long a record joined from partial lines
	// waits for its next piece before it is sent as it is: a container that
	// exits mid-line never writes the rest, and the checkpoint cannot pass a
	// record still being joined.
	PartialFlushTimeout time.Duration `yaml:"partial_flush_timeout"`
	// PolicyConfig holds multiline and rate_limit (policy.go).
	PolicyConfig `yaml:",inline"`
}

// DefaultConfig returns the settings a DaemonSet on a kubelet node wants.
func DefaultConfig() Config {
	return Config{
		LogGlob:             "/var/log/containers/*.log",
		StateDir:            "/var/lib/logagent",
		ReadFrom:            "head",
		MaxRecordBytes:      1 << 20,
		ReadBytes:           256 << 10,
		BufferBytes:         4 << 20,
		DeletedHoldBytes:    256 << 20,
		RotateWait:          5 * time.Second,
		RescanInterval:      5 * time.Second,
		PollInterval:        time.Second,
		ReadWait:            150 * time.Millisecond,
		ReadWaitMax:         500 * time.Millisecond,
		CheckpointInterval:  200 * time.Millisecond,
		PartialFlushTimeout: 5 * time.Second,
		PolicyConfig:        DefaultPolicyConfig(),
	}
}

// Validate names the first bad setting and why.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, why string, args ...any) {
		errs = append(errs, fmt.Errorf("collector.%s: %s", key, fmt.Sprintf(why, args...)))
	}
	if c.LogGlob == "" {
		bad("log_glob", "must not be empty")
	} else if _, err := filepath.Match(c.LogGlob, ""); err != nil {
		bad("log_glob", "bad pattern %q: %v", c.LogGlob, err)
	}
	if c.StateDir == "" {
		bad("state_dir", "must not be empty")
	}
	if c.ReadFrom != "head" && c.ReadFrom != "tail" {
		bad("read_from", "must be head or tail, not %q", c.ReadFrom)
	}
	if c.MaxRecordBytes < 1024 {
		bad("max_record_bytes", "must be at least 1024, not %d", c.MaxRecordBytes)
	}
	if c.ReadBytes < 4096 {
		bad("read_bytes", "must be at least 4096, not %d", c.ReadBytes)
	}
	if least := 2*c.MaxRecordBytes + c.ReadBytes; c.BufferBytes < least {
		// Room to join a record of max_record_bytes from its pieces while
		// reading them: the pieces' bytes and the record.
		bad("buffer_bytes", "must be at least 2 × max_record_bytes + read_bytes (%d), not %d", least, c.BufferBytes)
	}
	for _, r := range c.LogRoots {
		if !filepath.IsAbs(r) {
			bad("log_roots", "%q is not an absolute path", r)
		}
	}
	if c.DeletedHoldBytes < 0 {
		bad("deleted_hold_bytes", "must not be negative")
	}
	for key, d := range map[string]time.Duration{
		"rescan_interval": c.RescanInterval, "poll_interval": c.PollInterval,
		"checkpoint_interval": c.CheckpointInterval, "partial_flush_timeout": c.PartialFlushTimeout,
	} {
		if d <= 0 {
			bad(key, "must be positive, not %s", d)
		}
	}
	if c.RotateWait < 0 {
		bad("rotate_wait", "must not be negative")
	}
	if c.ReadWait < 0 || c.ReadWait > time.Second {
		bad("read_wait", "must be between 0 and 1s, not %s", c.ReadWait)
	}
	if c.ReadWaitMax < 0 || c.ReadWaitMax > 5*time.Second {
		bad("read_wait_max", "must be between 0 and 5s, not %s", c.ReadWaitMax)
	}
	errs = append(errs, c.PolicyConfig.validate(c.MaxRecordBytes)...)
	return errors.Join(errs...)
}
