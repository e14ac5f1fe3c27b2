package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/logagent/logagent/collector/collectortest"
	"github.com/logagent/logagent/output"
	"github.com/logagent/logagent/output/forwardtest"
)

// The whole agent with the Forward output, on logs with long records split
// into 16 KiB partial pieces: every record arrives once, acknowledged, and
// every long record arrives joined, whole (peers.md: Fluent Bit's cri join
// lost or split some of these).
func TestForwardDeliversLongRecordsWhole(t *testing.T) {
	node, tally, recv := nodeAndReceiver(t, 4, 2000)
	startAgent(t, "--output", "forward", "--forward", recv.Addr(), "--log-glob", node.Glob(),
		"--state-dir", filepath.Join(t.TempDir(), "state"), "--listen", "127.0.0.1:0",
		"--node-name", "node-a", "--enrich=false")
	waitRecords(tally, node.Records)
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

// TestDiscoveryAndDebugServers: the agent binary's configuration finds its
// Forward server by a DNS name (localhost, from /etc/hosts, through the
// resolver the agent uses) and /debug/servers shows it, connected and
// delivering, with the discovery's lookups.
func TestDiscoveryAndDebugServers(t *testing.T) {
	node, tally, recv := nodeAndReceiver(t, 2, 500)
	_, port, _ := net.SplitHostPort(recv.Addr())
	file := writeConfig(t, "output: forward\nforward:\n  discovery:\n    name: localhost\n    port: "+port+"\n    refresh: 1s\n")
	addr := startAgent(t, "--config", file, "--log-glob", node.Glob(),
		"--state-dir", filepath.Join(t.TempDir(), "state"), "--listen", "127.0.0.1:0", "--enrich=false")
	waitRecords(tally, node.Records)
	if got := int64(tally.Records()); got != node.Records {
		t.Fatalf("%d records received, want %d", got, node.Records)
	}
	var st output.Status
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/debug/servers")
		if err != nil {
			t.Fatal(err)
		}
		st = output.Status{}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("/debug/servers: %v, %s", err, resp.Header.Get("Content-Type"))
		}
		if len(st.Servers) == 1 && st.Servers[0].RecordsDelivered == node.Records {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(st.Servers) != 1 {
		t.Fatalf("/debug/servers: %+v, want the one server localhost resolves to", st)
	}
	s := st.Servers[0]
	if s.Address != recv.Addr() || s.Origin != "localhost" || s.State != output.StateConnected ||
		s.RecordsDelivered != node.Records || s.ConnectedSince.IsZero() {
		t.Errorf("/debug/servers: %+v", s)
	}
	if d := st.Discovery; d == nil || d.Name != "localhost" || d.Type != "A" || d.Servers != 1 || d.LastSuccess.IsZero() {
		t.Errorf("/debug/servers discovery: %+v", d)
	}
}

// startAgent runs the agent with args until the test ends and returns the
// address of its HTTP listener.
func startAgent(t *testing.T, args ...string) string {
	t.Helper()
	cfg, err := loadConfig("test", args, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAgent(cfg, newLogger(cfg.Log, io.Discard), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return serveAgent(t, a, cfg.Listen).Addr().String()
}

// serveAgent runs the agent on its listen address until the test ends, when
// it stops and must end without an error.
func serveAgent(t *testing.T, a *agent, addr string) net.Listener {
	t.Helper()
	ln, err := listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return ln
}

// waitRecords waits until tally has n records, or a minute has passed.
func waitRecords(tally *forwardtest.Tally, n int64) {
	deadline := time.Now().Add(60 * time.Second)
	for int64(tally.Records()) < n && time.Now().Before(deadline) {
		select {
		case <-tally.Changed():
		case <-time.After(time.Second):
		}
	}
}

// nodeAndReceiver writes a node's logs (pods containers, lines each) and
// starts a Forward receiver for the test.
func nodeAndReceiver(t *testing.T, pods, lines int) (*collectortest.Node, *forwardtest.Tally, *forwardtest.Receiver) {
	t.Helper()
	node, err := collectortest.Generate(t.TempDir(), pods, lines, "")
	if err != nil {
		t.Fatal(err)
	}
	tally := &forwardtest.Tally{}
	recv, err := forwardtest.Start("127.0.0.1:0", forwardtest.Config{}, tally)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(recv.Close)
	return node, tally, recv
}
