package collector

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// Reconfigure applies the live settings, names the restart-only ones (which
// keep their running values), and refuses an invalid configuration whole.
func TestReconfigureKeys(t *testing.T) {
	n := newNode(t)
	cfg := n.config()
	r := start(t, cfg, newCapture())
	c := r.c
	before := c.Policies()

	next := cfg
	next.BufferBytes = 8 << 20
	next.DeletedHoldBytes = 1 << 20
	next.RotateWait = time.Second
	next.RescanInterval = time.Second
	next.PollInterval = 50 * time.Millisecond
	next.CheckpointInterval = time.Second
	next.PartialFlushTimeout = time.Second
	next.Multiline.Select = []MultilineSelect{{Namespaces: []string{"shop"}, Rule: "java"}}
	next.RateLimit.BytesPerSecond = 1 << 20
	next.LogGlob = "/elsewhere/*.log"
	next.StateDir = t.TempDir()
	next.ReadBytes = 8192
	next.MaxRecordBytes = 2048
	err := c.Reconfigure(next)
	if !IsNotLive(err) {
		t.Fatalf("err = %v, want a NotLiveError", err)
	}
	keys := err.(*NotLiveError).NotLiveKeys()
	want := []string{"collector.log_glob", "collector.state_dir", "collector.max_record_bytes", "collector.read_bytes"}
	if !slices.Equal(keys, want) {
		t.Errorf("not live %v, want %v", keys, want)
	}
	got := c.live()
	if got.BufferBytes != next.BufferBytes || got.DeletedHoldBytes != next.DeletedHoldBytes || got.RotateWait != next.RotateWait ||
		got.RescanInterval != next.RescanInterval || got.PollInterval != next.PollInterval ||
		got.CheckpointInterval != next.CheckpointInterval || got.PartialFlushTimeout != next.PartialFlushTimeout {
		t.Errorf("live settings not applied: %+v", got)
	}
	if got.LogGlob != cfg.LogGlob || got.StateDir != cfg.StateDir || got.ReadBytes != cfg.ReadBytes || got.MaxRecordBytes != cfg.MaxRecordBytes {
		t.Errorf("restart-only settings changed: %+v", got)
	}
	p := c.Policies()
	if p == before || p.RateLimit().BytesPerSecond != 1<<20 {
		t.Errorf("policies not replaced")
	}
	if rule := p.Select("shop", "app", nil); rule == nil {
		t.Error("the new multiline select does not apply")
	}
	waitFor(t, "the budget to grow", func() bool { return c.budget.resizer.capacity() == 8<<20 })

	bad := next
	bad.LogGlob, bad.StateDir, bad.ReadBytes, bad.MaxRecordBytes = cfg.LogGlob, cfg.StateDir, cfg.ReadBytes, cfg.MaxRecordBytes
	bad.BufferBytes = 4096 // below 2 × max_record_bytes + read_bytes
	bad.PollInterval = time.Hour
	if err := c.Reconfigure(bad); err == nil || IsNotLive(err) || !strings.Contains(err.Error(), "buffer_bytes") {
		t.Errorf("invalid: err = %v", err)
	}
	if c.live().PollInterval != 50*time.Millisecond || c.budget.size() != 8<<20 {
		t.Error("an invalid configuration changed something")
	}
	same := bad
	same.BufferBytes, same.PollInterval = 8<<20, 50*time.Millisecond
	if err := c.Reconfigure(same); err != nil {
		t.Errorf("only live settings: %v", err)
	}
}

// A smaller buffer_bytes while the budget is full of unacknowledged batches
// takes effect as they are acknowledged (nothing held is taken back, no
// reader is stuck), a larger one at once; every line arrives once.
func TestReconfigureBufferUnderLoad(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "busy", "app")
	appendFile(t, live, numberedLines("b", 0, 20000))
	cfg := n.config()
	cfg.ReadBytes = 4096
	cfg.MaxRecordBytes = 1024
	cfg.BufferBytes = 256 << 10
	sink := newCapture()
	sink.setHold(true)
	r := start(t, cfg, sink)
	waitFor(t, "the budget to fill", func() bool { return r.c.budget.tight(r.c.budget.slack() + 8192) })

	small := cfg
	small.BufferBytes = 64 << 10
	if err := r.c.Reconfigure(small); err != nil {
		t.Fatal(err)
	}
	if c := r.c.budget.resizer.capacity(); c != 256<<10 {
		t.Errorf("capacity %d while the batches are held, want the old 256 KiB: nothing taken back", c)
	}
	sink.setHold(false)
	sink.release(-1)
	waitFor(t, "the smaller budget", func() bool { return r.c.budget.resizer.capacity() == 64<<10 })
	if r.c.budget.inUse.Load() > 64<<10+r.c.budget.maxRequest() {
		t.Errorf("in use %d over the new budget", r.c.budget.inUse.Load())
	}
	large := cfg
	large.BufferBytes = 1 << 20
	if err := r.c.Reconfigure(large); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every line", func() bool { return sink.distinct() == 20000 })
	if dups := sink.expectLines(t, "b", 0, 20000); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	waitFor(t, "the larger budget", func() bool { return r.c.budget.resizer.capacity() == 1<<20 })
	r.stop()
	if u := r.c.budget.inUse.Load(); u != 0 {
		t.Errorf("%d bytes still in use after everything was acknowledged", u)
	}
}

// A new checkpoint_interval takes effect at once, not after the old
// interval's next tick.
func TestReconfigureCheckpointInterval(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "saver", "app")
	cfg := n.config()
	cfg.CheckpointInterval = time.Hour
	sink := newCapture()
	r := start(t, cfg, sink)
	saved := func() int64 {
		cps, err := ReadCheckpoints(cfg.StateDir)
		if err != nil {
			return -1
		}
		for _, cp := range cps.Files {
			if cp.Path == live {
				return cp.Offset
			}
		}
		return -1
	}
	// The save after the first scan comes first: lines written before it
	// could be read and acknowledged in time to be in it.
	waitFor(t, "the first save", func() bool { _, err := ReadCheckpoints(cfg.StateDir); return err == nil })
	appendFile(t, live, numberedLines("s", 0, 100))
	waitFor(t, "the lines", func() bool { return sink.distinct() == 100 })
	fi, err := os.Stat(live)
	if err != nil {
		t.Fatal(err)
	}
	if got := saved(); got == fi.Size() {
		t.Fatalf("saved before the reload (offset %d): the test cannot tell", got)
	}
	next := cfg
	next.CheckpointInterval = 20 * time.Millisecond
	if err := r.c.Reconfigure(next); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a checkpoint saved at the new interval", func() bool { return saved() == fi.Size() })
}
