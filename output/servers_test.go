package output

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logagent/logagent/output/forwardtest"
)

// shares waits until the receivers took n more records and returns each
// one's share of them.
func shares(t *testing.T, recv []*forwardtest.Receiver, n int) []float64 {
	t.Helper()
	before := make([]int, len(recv))
	total := func() int {
		s := 0
		for _, r := range recv {
			s += r.Records()
		}
		return s
	}
	// What was in flight under the previous weights (or servers) is
	// acknowledged first: the shares are measured after it.
	grows(t, "records over the servers", n/4, total)
	for i, r := range recv {
		before[i] = r.Records()
	}
	grows(t, "records over the servers", n, total)
	var got []int
	sum := 0
	for i, r := range recv {
		got = append(got, r.Records()-before[i])
		sum += got[i]
	}
	out := make([]float64, len(recv))
	for i := range got {
		out[i] = float64(got[i]) / float64(sum)
	}
	return out
}

// TestWeightsSpreadTraffic: weights 1:2:3 split the records 1:2:3, and a
// change of weights by Reconfigure splits the next ones by the new weights.
func TestWeightsSpreadTraffic(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	var recv []*forwardtest.Receiver
	cfg := testConfig()
	for i := range 3 {
		r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
		recv = append(recv, r)
		cfg.Servers = append(cfg.Servers, Server{Address: r.Addr(), Weight: 10 * (i + 1)})
	}
	h := startForward(t, cfg)
	fd := newFeeder(6, 100)
	waitStates(t, h.f, 10*time.Second, map[string]string{recv[0].Addr(): StateConnected, recv[1].Addr(): StateConnected, recv[2].Addr(): StateConnected})
	l := startLoad(t, fd, h.f, 20)
	check := func(weights []int) {
		t.Helper()
		sum := 0
		for _, w := range weights {
			sum += w
		}
		for i, share := range shares(t, recv, 40000) {
			want := float64(weights[i]) / float64(sum)
			t.Logf("weights %v: server %d took %.1f%%, its weight %.1f%%", weights, i, 100*share, 100*want)
			if share < want*0.75 || share > want*1.25 {
				t.Errorf("weights %v: server %d took %.1f%% of the records, want %.1f%% (±25%% of it)", weights, i, 100*share, 100*want)
			}
		}
	}
	check([]int{10, 20, 30})

	cfg.Servers[0].Weight, cfg.Servers[1].Weight, cfg.Servers[2].Weight = 0, 0, 0 // the default, equal
	if err := h.f.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	check([]int{1, 1, 1})
	l.finish(t)
	waitFor(t, 30*time.Second, "all batches acknowledged", fd.allAcked)
	if dups := checkTally(t, tally, fd); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if got := recv[0].Connections() + recv[1].Connections() + recv[2].Connections(); got != 3 {
		t.Errorf("%d connections: a change of weights must not reconnect", got)
	}
}

// TestPerServerSharedKey: each server's own key (literal or from a file)
// or forward's, and its own user; a key file that changes is used by the
// next connection.
func TestPerServerSharedKey(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	rA := startReceiver(t, "127.0.0.1:0", forwardtest.Config{SharedKey: "key-a", Hostname: "fluentd-a", Users: map[string]string{"agent": "pw-a"}}, tally)
	rB := startReceiver(t, "127.0.0.1:0", forwardtest.Config{SharedKey: "key-b", Hostname: "fluentd-b"}, tally)
	rC := startReceiver(t, "127.0.0.1:0", forwardtest.Config{SharedKey: "key-global", Hostname: "fluentd-c"}, tally)
	keyFile := filepath.Join(t.TempDir(), "shared_key")
	must(t, os.WriteFile(keyFile, []byte("key-b\n"), 0o600)) // as echo writes it
	cfg := testConfig()
	cfg.SharedKey, cfg.SelfHostname = "key-global", "node-1"
	cfg.Servers = []Server{
		{Address: rA.Addr(), ServerAuth: ServerAuth{SharedKey: "key-a", Username: "agent", Password: "pw-a"}},
		{Address: rB.Addr(), ServerAuth: ServerAuth{SharedKeyFile: keyFile}},
		{Address: rC.Addr()},
	}
	h := startForward(t, cfg)
	waitStates(t, h.f, 10*time.Second, map[string]string{rA.Addr(): StateConnected, rB.Addr(): StateConnected, rC.Addr(): StateConnected})
	fd := newFeeder(3, 100)
	fd.sendN(t, h.f, 60, 20)
	waitFor(t, 20*time.Second, "all batches acknowledged", fd.allAcked)
	for _, r := range []*forwardtest.Receiver{rA, rB, rC} {
		if r.AuthFailures() != 0 || r.Records() == 0 {
			t.Errorf("%s: %d refused handshakes, %d records", r.Addr(), r.AuthFailures(), r.Records())
		}
	}

	// B's Secret changes, and B with it: the next connection uses the new key.
	must(t, os.WriteFile(keyFile, []byte("key-b2\n"), 0o600))
	rB.SetSharedKey("key-b2")
	rB.CloseConns()
	waitFor(t, 10*time.Second, "B connected again", func() bool {
		return rB.Connections() >= 2 && serverStates(h.f)[rB.Addr()] == StateConnected
	})
	before := rB.Records()
	fd.sendN(t, h.f, 60, 20)
	waitFor(t, 20*time.Second, "all batches acknowledged", fd.allAcked)
	if rB.AuthFailures() != 0 || rB.Records() == before {
		t.Errorf("B after its key changed: %d refused handshakes, %d more records", rB.AuthFailures(), rB.Records()-before)
	}
	checkTally(t, tally, fd)
}

// TestServerStatus: each server's state as /debug/servers shows it, with
// its in-flight chunks, records delivered and last error.
func TestServerStatus(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	primary := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	standby := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	down := freeAddr(t)
	cfg := testConfig(primary.Addr(), down)
	cfg.Servers = append(cfg.Servers, Server{Address: standby.Addr(), Standby: true, Weight: 7})
	cfg.RetryMin, cfg.RetryMax = time.Second, time.Second // stay backing off while we look
	h := startForward(t, cfg)
	waitStates(t, h.f, 10*time.Second, map[string]string{
		primary.Addr(): StateConnected, standby.Addr(): StateStandby, down: StateBackingOff})
	fd := newFeeder(1, 100)
	fd.sendN(t, h.f, 10, 10)
	waitFor(t, 10*time.Second, "acks", fd.allAcked)

	byAddr := func() map[string]ServerStatus {
		out := map[string]ServerStatus{}
		for _, s := range h.f.ServerStatus() {
			out[s.Address] = s
		}
		return out
	}
	st := byAddr()
	if p := st[primary.Addr()]; p.RecordsDelivered != 100 || p.ConnectedSince.IsZero() || p.Origin != "config" ||
		p.Weight != DefaultWeight || p.InFlightChunks != 0 || p.LastError != "" {
		t.Errorf("primary: %+v", p)
	}
	if s := st[standby.Addr()]; !s.Standby || s.Weight != 7 || s.RecordsDelivered != 0 {
		t.Errorf("standby: %+v", s)
	}
	if d := st[down]; !strings.Contains(d.LastError, "dial") || d.LastErrorAt.IsZero() || !d.ConnectedSince.IsZero() {
		t.Errorf("server down: %+v", d)
	}

	// Removed with unacknowledged chunks: draining, with what it holds.
	primary.HoldAcks()
	fd.sendN(t, h.f, 10, 10)
	waitFor(t, 10*time.Second, "frames held", func() bool { return primary.Held() > 0 })
	cfg.Servers = cfg.Servers[1:]
	if err := h.f.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	p := byAddr()[primary.Addr()]
	if p.State != StateDraining || p.InFlightChunks == 0 || p.InFlightBytes == 0 {
		t.Errorf("removed primary with acks held: %+v", p)
	}
	if s := byAddr()[standby.Addr()]; s.State != StateConnected {
		t.Errorf("standby with no primary left: %+v", s)
	}
	primary.ReleaseAcks(false)
	waitStates(t, h.f, 10*time.Second, map[string]string{standby.Addr(): StateConnected, down: StateBackingOff})
	waitFor(t, 10*time.Second, "acks", fd.allAcked)
	if dups := checkTally(t, tally, fd); dups != 0 {
		t.Errorf("%d duplicates: the removed server's acks were awaited", dups)
	}

	b, err := json.Marshal(h.f.Status())
	if err != nil {
		t.Fatal(err)
	}
	var back Status
	if err := json.Unmarshal(b, &back); err != nil || len(back.Servers) != 2 || back.Discovery != nil {
		t.Errorf("JSON %s: decoded %+v, %v", b, back, err)
	}
	for _, key := range []string{`"address"`, `"origin":"config"`, `"state":"connected"`, `"in_flight_chunks"`, `"records_delivered"`, `"last_error"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s: %s", key, b)
		}
	}
}
