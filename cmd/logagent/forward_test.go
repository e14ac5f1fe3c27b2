package main

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/logagent/logagent/collector/collectortest"
	"github.com/logagent/logagent/output/forwardtest"
)

// The whole agent with the Forward output, on logs with long records split
// into 16 KiB partial pieces: every record arrives once, acknowledged, and
// every long record arrives joined, whole (peers.md: Fluent Bit's cri join
// lost or split some of these).
func TestForwardDeliversLongRecordsWhole(t *testing.T) {
	node, err := collectortest.Generate(t.TempDir(), 4, 2000, "")
	if err != nil {
		t.Fatal(err)
	}
	tally := &forwardtest.Tally{}
	recv, err := forwardtest.Start("127.0.0.1:0", forwardtest.Config{}, tally)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	cfg, err := loadConfig("test", []string{
		"--output", "forward", "--forward", recv.Addr(), "--log-glob", node.Glob(),
		"--state-dir", filepath.Join(t.TempDir(), "state"), "--listen", "127.0.0.1:0",
		"--node-name", "node-a", "--enrich=false",
	}, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAgent(cfg, newLogger(cfg.Log, io.Discard), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listen(cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, ln) }()
	deadline := time.Now().Add(60 * time.Second)
	for int64(tally.Records()) < node.Records && time.Now().Before(deadline) {
		select {
		case <-tally.Changed():
		case <-time.After(time.Second):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := int64(tally.Records()); got != node.Records {
		t.Fatalf("%d records received, want %d", got, node.Records)
	}
	long, pieces := 0, 0
	for _, r := range tally.Receipts() {
		if r.Chunk == "" {
			t.Errorf("frame without a chunk id: acknowledgement was not asked for")
		}
		for _, e := range r.Events {
			switch {
			case len(e.Log) == 40000:
				long++
			case len(e.Log) >= 16384:
				pieces++
			}
			if e.Kubernetes == nil {
				t.Fatalf("record without kubernetes metadata: %.80q", e.Log)
			}
		}
	}
	if want := 4 * 2000 / 200; long != want || pieces != 0 {
		t.Errorf("%d long records whole (want %d), %d pieces or oversized records", long, want, pieces)
	}
	if invalid, errs := tally.Invalid(); invalid > 0 {
		t.Errorf("%d invalid entries: %v", invalid, errs)
	}
}
