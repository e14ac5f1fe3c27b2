package collector

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The edges of a file's life (issue 8): every test counts every line, by its
// sequence number, across stops and restarts of the collector.

// rotate renames live to live.<stamp> and starts an empty live file, as the
// kubelet does; it returns the rotated name.
func rotate(t *testing.T, live, stamp string) string {
	t.Helper()
	rotated := live + "." + stamp
	if err := os.Rename(live, rotated); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, "")
	return rotated
}

// metricValue sums the samples of a metric whose labels include want.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// savedCheckpoint is what a test reads of the checkpoint file.
type savedCheckpoint struct {
	Path   string `json:"path"`
	Offset int64  `json:"offset"`
}

func readSaved(t *testing.T, stateDir string) map[string]int64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(stateDir, "checkpoints.json"))
	if err != nil {
		return nil
	}
	var st struct {
		Files []savedCheckpoint `json:"files"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return nil
	}
	out := map[string]int64{}
	for _, f := range st.Files {
		out[f.Path] = f.Offset
	}
	return out
}

// 1. New pods while the agent is down (a rolling update): their rotated and
// compressed files are read from the head, like their live file.
func TestNewPodRotatedAndCompressedWhileStopped(t *testing.T) {
	n := newNode(t)
	old := n.container("default", "old", "app")
	appendFile(t, old, numberedLines("old", 0, 100))
	cfg := n.config()
	first := newCapture()
	r := start(t, cfg, first)
	waitFor(t, "the old pod's lines", func() bool { return first.distinct() == 100 })
	r.stop()

	// While the agent is down a new pod starts; its log rotates twice and the
	// older rotation is compressed.
	live := n.container("default", "new", "app")
	appendFile(t, live, numberedLines("new", 0, 300))
	r1 := rotate(t, live, "20261126-120000")
	appendFile(t, live, numberedLines("new", 300, 600))
	rotate(t, live, "20261126-120100")
	appendFile(t, live, numberedLines("new", 600, 700))
	if err := gzipFile(r1); err != nil {
		t.Fatal(err)
	}
	appendFile(t, old, numberedLines("old", 100, 150))

	second := newCapture()
	start(t, cfg, second)
	waitFor(t, "every line written while stopped", func() bool { return second.distinct() >= 750 })
	if dups := second.expectLines(t, "new", 0, 700); dups != 0 {
		t.Errorf("%d duplicates of the new pod's lines", dups)
	}
	if dups := second.expectLines(t, "old", 100, 150); dups != 0 {
		t.Errorf("%d duplicates of the old pod's lines", dups)
	}
	if second.count("line old-99") != 0 {
		t.Error("an acknowledged line was read again")
	}
}

// 2. A rotated file read to its end but not acknowledged (the aggregator is
// down), then compressed: its entry must outlive its reader and move to the
// .gz, so a restart reads the .gz from the checkpoint.
func TestRotatedUnackedThenCompressedAcrossRestart(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "outage", "app")
	appendFile(t, live, numberedLines("o", 0, 1000))
	cfg := n.config()
	first := newCapture()
	first.setHold(true)
	r := start(t, cfg, first)
	waitFor(t, "the first lines read", func() bool { return first.distinct() == 1000 })
	rotated := rotate(t, live, "20261126-120000")
	appendFile(t, live, numberedLines("o", 1000, 1200))
	waitFor(t, "the new live file read", func() bool { return first.distinct() == 1200 })
	// The rotated file's reader leaves after rotate_wait; the kubelet then
	// compresses it. Let the collector rescan a few times meanwhile.
	waitFor(t, "the rotated file's reader to leave", func() bool {
		return metricValue(t, r.reg, "logagent_collector_files_tailed", nil) == 1
	})
	if err := gzipFile(rotated); err != nil {
		t.Fatal(err)
	}
	rescans := metricValue(t, r.reg, "logagent_collector_rescans_total", nil)
	waitFor(t, "two rescans", func() bool {
		return metricValue(t, r.reg, "logagent_collector_rescans_total", nil) >= rescans+2
	})
	r.stop() // nothing was acknowledged

	second := newCapture()
	start(t, cfg, second)
	waitFor(t, "every line", func() bool { return second.distinct() >= 1200 })
	if dups := second.expectLines(t, "o", 0, 1200); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

// 3. Inode reuse across pods: a new pod's file that takes the inode of a
// deleted pod's file, with the same first bytes (Docker lines start with the
// message; replicas write the same first line), is a new file. The
// checkpoint names the old pod's path.
func TestInodeReuseAcrossPods(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "replica-b", "app")
	long := strings.Repeat("starting the service with a long banner ", 10)
	var b strings.Builder
	for i := range 400 {
		msg := fmt.Sprintf("line d-%d", i)
		if i == 0 {
			msg = long
		}
		fmt.Fprintf(&b, `{"log":"%s\n","stream":"stdout","time":"2026-11-26T12:00:%02d.%09dZ"}`+"\n", msg, i/100, i)
	}
	appendFile(t, live, b.String())
	data := []byte(b.String())
	if len(strings.SplitN(b.String(), "\n", 2)[0]) <= 256 {
		t.Fatal("the first line must be longer than the old fingerprint")
	}
	// The checkpoint of a deleted replica whose file had this inode and the
	// same first 256 bytes, read up to line 300.
	id := mustID(t, live)
	h := fnv.New64a()
	h.Write(data[:256])
	lines := strings.SplitAfter(b.String(), "\n")
	off := len(strings.Join(lines[:300], ""))
	oldPath := filepath.Join(n.root, "pods", "default_replica-a_uid-gone", "app", "0.log")
	cp := fmt.Sprintf(`{"version":1,"files":[{"path":%q,"id":{"dev":%d,"ino":%d},"fp_len":256,"fp":%d,"offset":%d}]}`,
		oldPath, id.Dev, id.Ino, h.Sum64(), off)
	if err := os.WriteFile(filepath.Join(n.root, "state", "checkpoints.json"), []byte(cp), 0o600); err != nil {
		t.Fatal(err)
	}
	sink := newCapture()
	start(t, n.config(), sink)
	waitFor(t, "the new file's lines", func() bool { return sink.count("line d-399") == 1 })
	if dups := sink.expectLines(t, "d", 1, 400); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if sink.count(long) != 1 {
		t.Error("the first line is missing")
	}
}

// 4. copytruncate racing growth: while reading is paused by backpressure the
// file is truncated and written past the old offset. Detected by the first
// line changing, not only by the size shrinking.
func TestCopyTruncateRacingGrowth(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "ct", "app")
	appendFile(t, live, numberedLines("before", 0, 6000))
	cfg := n.config()
	cfg.ReadBytes = 4096
	cfg.MaxRecordBytes = 1024
	cfg.BufferBytes = 160 << 10
	sink := newCapture()
	sink.setHold(true)
	r := start(t, cfg, sink)
	waitFor(t, "the budget to fill", func() bool {
		return metricValue(t, r.reg, "logagent_collector_inflight_bytes", nil) > float64(int64(cfg.BufferBytes-2*cfg.ReadBytes)-r.c.budget.slack())
	})
	offset := fileSize(t, live)
	if err := os.Truncate(live, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, numberedLines("after", 0, 8000))
	if fileSize(t, live) <= offset {
		t.Fatal("the new content must reach past the old offset")
	}
	sink.setHold(false)
	sink.release(-1)
	waitFor(t, "the lines after truncation", func() bool { return sink.count("line after-7999") == 1 })
	if dups := sink.expectLines(t, "after", 0, 8000); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if got := metricValue(t, r.reg, "logagent_collector_rotations_total", map[string]string{"kind": "truncate"}); got != 1 {
		t.Errorf("truncate rotations = %v, want 1", got)
	}
}

// A copytruncate that writes the same first line again and grows the file
// back past the offset before the reader wakes (read_wait defers the wake-up
// of a file just read) is seen by the line before the offset, which the read
// after the pause compares: the new content is read from its head, nothing
// of it lost. The first line alone could not tell.
func TestCopyTruncateSameFirstLine(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "ct", "app")
	appendFile(t, live, numberedLines("before", 0, 50))
	cfg := n.config()
	cfg.ReadWait = time.Second
	sink := newCapture()
	r := start(t, cfg, sink)
	waitFor(t, "the lines before truncation", func() bool { return sink.count("line before-49") == 1 })
	if err := os.Truncate(live, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, numberedLines("before", 0, 1)+numberedLines("after", 0, 100))
	waitFor(t, "the lines after truncation", func() bool { return sink.count("line after-99") == 1 })
	if dups := sink.expectLines(t, "after", 0, 100); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if got := sink.count("line before-0"); got != 2 {
		t.Errorf("the first line, written twice, was delivered %d times", got)
	}
	if got := metricValue(t, r.reg, "logagent_collector_rotations_total", map[string]string{"kind": "truncate"}); got != 1 {
		t.Errorf("truncate rotations = %v, want 1", got)
	}
}

// 5. A partial record that never ends is sent after partial_flush_timeout,
// counted, and the checkpoint moves past it: a restart sends nothing again.
func TestPartialRecordNeverEnds(t *testing.T) {
	ts := func(i int) string { return fmt.Sprintf("2026-11-26T12:00:00.%09dZ", i) }
	for _, tc := range []struct {
		name     string
		dangling string // the piece whose record never ends, on stdout
		full     func(i int) string
	}{
		{"cri", ts(0) + " stdout P dangling piece\n", func(i int) string {
			return fmt.Sprintf("%s stderr F line e-%d\n", ts(i), i)
		}},
		{"docker", `{"log":"dangling piece","stream":"stdout","time":"` + ts(0) + `"}` + "\n", func(i int) string {
			return fmt.Sprintf(`{"log":"line e-%d\n","stream":"stderr","time":"%s"}`+"\n", i, ts(i))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			live := n.container("default", "exit", "app")
			var b strings.Builder
			b.WriteString(tc.full(0))
			b.WriteString(tc.dangling)
			for i := 1; i < 100; i++ {
				b.WriteString(tc.full(i))
			}
			appendFile(t, live, b.String())
			cfg := n.config()
			cfg.PartialFlushTimeout = 200 * time.Millisecond
			sink := newCapture()
			r := start(t, cfg, sink)
			waitFor(t, "the dangling record", func() bool { return sink.count("dangling piece") == 1 })
			sink.expectLines(t, "e", 0, 100)
			if got := metricValue(t, r.reg, "logagent_collector_partial_flushed_total", nil); got != 1 {
				t.Errorf("partial_flushed_total = %v, want 1", got)
			}
			waitFor(t, "the checkpoint past it", func() bool {
				return readSaved(t, cfg.StateDir)[live] == fileSize(t, live)
			})
			r.stop()
			appendFile(t, live, tc.full(100))
			second := newCapture()
			start(t, cfg, second)
			waitFor(t, "the next line", func() bool { return second.count("line e-100") == 1 })
			if second.distinct() != 1 {
				t.Errorf("%d records sent again after the restart", second.distinct()-1)
			}
		})
	}
}

// 6. Acknowledgements that arrive while the agent flushes at shutdown are
// persisted as they come, not only at the very end: a SIGKILL during the
// flush (node shutdown) must not throw them away.
func TestCheckpointsSavedWhileFlushing(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "flush", "app")
	appendFile(t, live, numberedLines("f", 0, 500))
	cfg := n.config()
	sink := newCapture()
	sink.setHold(true)
	c, err := New(cfg, sink, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	waitFor(t, "every line", func() bool { return sink.distinct() == 500 })
	cancel() // SIGTERM: reading stops, the output flushes
	<-done
	sink.release(-1) // acknowledged during the flush
	waitFor(t, "the checkpoint saved during the flush", func() bool {
		return readSaved(t, cfg.StateDir)[live] == fileSize(t, live)
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// 7. An unreadable checkpoint file is kept aside, and everything on disk is
// read from the head: live, rotated and compressed files.
func TestUnreadableCheckpointFile(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "lost-state", "app")
	appendFile(t, live, numberedLines("u", 0, 100))
	r1 := rotate(t, live, "20261126-120000")
	appendFile(t, live, numberedLines("u", 100, 200))
	rotate(t, live, "20261126-120100")
	appendFile(t, live, numberedLines("u", 200, 300))
	if err := gzipFile(r1); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(n.root, "state", "checkpoints.json")
	if err := os.WriteFile(state, []byte(`{"version":1,"files":[{"pa`), 0o600); err != nil {
		t.Fatal(err)
	}
	sink := newCapture()
	start(t, n.config(), sink)
	waitFor(t, "every line", func() bool { return sink.distinct() >= 300 })
	if dups := sink.expectLines(t, "u", 0, 300); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	aside, _ := filepath.Glob(state + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("the unreadable checkpoint file was not kept aside: %v", aside)
	}
	if data, _ := os.ReadFile(aside[0]); string(data) != `{"version":1,"files":[{"pa` {
		t.Errorf("kept aside: %q", data)
	}
}

// 8. A rotated file truncated while it is drained: its reader reads its
// name, which a rescan changes (run with -race).
func TestRotatedFileTruncated(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "race", "app")
	appendFile(t, live, numberedLines("a", 0, 100))
	cfg := n.config()
	cfg.RotateWait = time.Hour
	sink := newCapture()
	r := start(t, cfg, sink)
	waitFor(t, "the first lines", func() bool { return sink.distinct() == 100 })
	rotated := rotate(t, live, "20261126-120000")
	rescans := metricValue(t, r.reg, "logagent_collector_rescans_total", nil)
	waitFor(t, "a rescan", func() bool {
		return metricValue(t, r.reg, "logagent_collector_rescans_total", nil) >= rescans+1
	})
	if err := os.Truncate(rotated, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, rotated, numberedLines("b", 0, 10))
	appendFile(t, live, numberedLines("c", 0, 10))
	waitFor(t, "the lines after truncation", func() bool { return sink.distinct() == 120 })
}

// A rotated file compressed and deleted while the reader is far behind (the
// aggregator is slow) holds more unread bytes than deleted_hold_bytes: the
// reader leaves it, and the rest is read from the .gz, from where it stopped.
func TestDeletedOverHoldCapReadFromGz(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "slow", "app")
	appendFile(t, live, numberedLines("h", 0, 5000))
	cfg := n.config()
	cfg.ReadBytes = 4096
	cfg.MaxRecordBytes = 1024
	cfg.BufferBytes = 16 << 10
	cfg.DeletedHoldBytes = 1024
	sink := newCapture()
	sink.setHold(true)
	r := start(t, cfg, sink)
	waitFor(t, "reading to pause", func() bool { return sink.heldBatches() >= 1 })
	rotated := rotate(t, live, "20261126-120000")
	if err := gzipFile(rotated); err != nil {
		t.Fatal(err)
	}
	sink.setHold(false)
	sink.release(-1)
	deadline := time.Now().Add(20 * time.Second)
	for sink.distinct() < 5000 {
		if time.Now().After(deadline) {
			// What the collector knows, to tell a missed .gz from a stall.
			for _, f := range r.c.Files() {
				t.Logf("file %s: state %s, read %d, acked %d, size %d", f.Path, f.State, f.ReadOffset, f.AckedOffset, f.Size)
			}
			t.Logf("compressed_resumed_total %v, dropped_bytes_total{deleted_hold_cap} %v",
				metricValue(t, r.reg, "logagent_collector_compressed_resumed_total", nil),
				metricValue(t, r.reg, "logagent_collector_dropped_bytes_total", map[string]string{"reason": "deleted_hold_cap"}))
			sink.expectLines(t, "h", 0, 5000)
			t.Fatalf("timed out waiting for every line: %d of 5000", sink.distinct())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if dups := sink.expectLines(t, "h", 0, 5000); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if got := metricValue(t, r.reg, "logagent_collector_compressed_resumed_total", nil); got < 1 {
		t.Errorf("compressed_resumed_total = %v, want at least 1", got)
	}
	if got := metricValue(t, r.reg, "logagent_collector_dropped_bytes_total", map[string]string{"reason": "deleted_hold_cap"}); got == 0 {
		t.Error("the reader did not leave the deleted file (the test did not test what it should)")
	}
}
