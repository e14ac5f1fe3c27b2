package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The edges of a file's life across restarts of the real agent (issue 8).
// Each counts every line by its sequence number per container.

const restartConfig = `
collector:
  rescan_interval: 300ms
  rotate_wait: 300ms
  checkpoint_interval: 100ms
forward:
  batch_age: 100ms
  ack_timeout: 3s
  retry_min: 100ms
  retry_max: 500ms
`

// rotateLive renames live like the kubelet, compresses every older rotation
// and keeps the newest n files.
func rotateLive(t *testing.T, live string, seq int) {
	kubeletRotate(t, live, seq)
}

// A rolling update: the agent is stopped (SIGTERM); meanwhile new pods start,
// write, and their logs rotate and are compressed. After the restart every
// line of the new pods arrives, from their live, rotated and compressed files.
func TestRestartRollingUpdateNewPods(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent")
	}
	n := newNode(t, restartConfig)
	written := map[string]int{}
	oldLive := n.container("ns", "old", "app")
	writeLines(t, oldLive, "old", 0, 500)
	written["old"] = 500
	n.start()
	if !n.waitDistinct(500, 30*time.Second) {
		t.Fatal("the first lines did not arrive")
	}
	n.term(true)

	for p := range 3 {
		name := fmt.Sprintf("new%d", p)
		live := n.container("ns", name, "app")
		seq := 0
		for r := 1; r <= 3; r++ {
			writeLines(t, live, name, seq, seq+400)
			seq += 400
			rotateLive(t, live, r)
		}
		writeLines(t, live, name, seq, seq+100)
		written[name] = seq + 100
	}
	writeLines(t, oldLive, "old", 500, 600)
	written["old"] = 600

	n.start()
	want := 0
	for _, w := range written {
		want += w
	}
	n.waitDistinct(want, 30*time.Second)
	n.term(true)
	total, lost, dups := n.account(written)
	t.Logf("%d lines written, %d lost, %d duplicates", total, lost, dups)
	if dups != 0 {
		t.Errorf("%d duplicates after a clean stop", dups)
	}
}

// An aggregator outage longer than a rotation: the rotated file is read to
// its end but not acknowledged, then compressed; the agent is killed and
// comes back with the aggregator. The compressed file is read from the
// checkpoint.
func TestRestartOutageRotatedThenCompressed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent")
	}
	n := newNode(t, restartConfig)
	live := n.container("ns", "busy", "app")
	written := map[string]int{}
	writeLines(t, live, "busy", 0, 200)
	n.start()
	if !n.waitDistinct(200, 30*time.Second) {
		t.Fatal("the first lines did not arrive")
	}
	n.receiverDown()
	seq := 200
	for r := 1; r <= 3; r++ {
		writeLines(t, live, "busy", seq, seq+500)
		seq += 500
		// Give the agent time to read the file before it is rotated and
		// compressed (the writer's pace, not synchronisation: the test
		// asserts nothing about whether it did).
		time.Sleep(700 * time.Millisecond)
		rotateLive(t, live, r)
	}
	writeLines(t, live, "busy", seq, seq+100)
	written["busy"] = seq + 100
	time.Sleep(700 * time.Millisecond)
	n.kill()
	n.receiverUp()
	n.start()
	n.waitDistinct(seq+100, 30*time.Second)
	n.term(true)
	total, lost, dups := n.account(written)
	t.Logf("%d lines written, %d lost, %d duplicates", total, lost, dups)
}

// Acknowledgements that arrive during the shutdown flush are persisted as
// they come: a SIGKILL during the flush does not make the next run send them
// again.
func TestRestartKillDuringShutdownFlush(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent")
	}
	// Small reads and frames, one frame in flight: the aggregator can
	// acknowledge part of what was read, a frame at a time.
	// The flush may take a minute: longer than the test waits for the
	// checkpoint, so only a save during the flush passes.
	n := newNode(t, "shutdown_timeout: 60s\n"+strings.Replace(restartConfig, "collector:\n", "collector:\n  read_bytes: 4096\n", 1)+"  window_bytes: 4096\n  batch_bytes: 4096\n")
	live := n.container("ns", "slow", "app")
	writeLines(t, live, "slow", 0, 3000)
	written := map[string]int{"slow": 3000}
	n.recv.HoldAcks()
	n.start()
	waitUntil(t, "a frame", func() bool { return n.recv.Held() > 0 })
	n.term(false)
	// The aggregator acknowledges a few frames while the agent flushes.
	for range 5 {
		waitUntil(t, "a frame", func() bool { return n.recv.Held() > 0 })
		n.recv.ReleaseAcks(false)
		n.recv.HoldAcks()
	}
	waitUntil(t, "the acknowledged frames checkpointed", func() bool { return n.checkpoints()[live] > 0 })
	acked := n.checkpoints()[live]
	n.kill()
	n.recv.ReleaseAcks(false)
	before := n.tally.Records()
	n.start()
	n.waitDistinct(3000, 30*time.Second)
	n.term(true)
	total, lost, dups := n.account(written)
	t.Logf("%d lines written, %d lost, %d duplicates; checkpoint at %d bytes when killed", total, lost, dups, acked)
	// Whatever was acknowledged and checkpointed is not sent again.
	resent := n.tally.Records() - before
	if fi, err := os.Stat(live); err == nil && resent > 0 {
		if max := int(float64(3000) * float64(fi.Size()-acked) / float64(fi.Size())); resent > max+1 {
			t.Errorf("%d records sent after the restart, but only %d were not checkpointed", resent, max)
		}
	}
}

// An unreadable checkpoint file is kept aside; everything on disk is read
// from the head, rotated and compressed files included.
func TestRestartUnreadableCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent")
	}
	n := newNode(t, restartConfig)
	live := n.container("ns", "web", "app")
	seq := 0
	for r := 1; r <= 3; r++ {
		writeLines(t, live, "web", seq, seq+300)
		seq += 300
		rotateLive(t, live, r)
	}
	writeLines(t, live, "web", seq, seq+300)
	written := map[string]int{"web": seq + 300}
	if err := os.WriteFile(filepath.Join(n.state, "checkpoints.json"), []byte("\x00\x00garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	n.start()
	n.waitDistinct(seq+300, 30*time.Second)
	n.term(true)
	total, lost, dups := n.account(written)
	t.Logf("%d lines written, %d lost, %d duplicates", total, lost, dups)
	if aside, _ := filepath.Glob(filepath.Join(n.state, "checkpoints.json.corrupt-*")); len(aside) != 1 {
		t.Errorf("the unreadable checkpoint file was not kept aside: %v", aside)
	}
}
