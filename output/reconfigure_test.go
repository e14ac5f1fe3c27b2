package output

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logagent/logagent/output/forwardtest"
)

// TestReconfigureUnderLoad: servers added, removed, reweighted and given a
// new shared key, and batch, window, queue, tag and gzip changed, one after
// the other while records flow: every record arrives exactly once.
func TestReconfigureUnderLoad(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	rA := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	rB := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	rC := startReceiver(t, "127.0.0.1:0", forwardtest.Config{SharedKey: "k1", Hostname: "fluentd-c"}, tally)
	cfg := testConfig(rA.Addr())
	cfg.SelfHostname = "node-1"
	h := startForward(t, cfg)
	fd := newFeeder(8, 100)
	l := startLoad(t, fd, h.f, 20)
	grows(t, "records on A", 2000, rA.Records)
	apply := func(step string, c ForwardConfig) {
		t.Helper()
		if err := h.f.Reconfigure(c); err != nil {
			t.Fatalf("%s: Reconfigure: %v", step, err)
		}
	}

	// Add B.
	cfg.Servers = append(cfg.Servers, Server{Address: rB.Addr()})
	apply("add B", cfg)
	grows(t, "records on B", 2000, rB.Records)

	// Remove A: drained, then no more traffic.
	cfg.Servers = cfg.Servers[1:]
	apply("remove A", cfg)
	waitStates(t, h.f, 10*time.Second, map[string]string{rB.Addr(): StateConnected})
	waitFor(t, 10*time.Second, "A's connection closed after its drain", func() bool { return rA.Ended() == rA.Connections() })
	left := rA.Records()

	// Reweight B, add C with a shared key, and change the chunks' settings.
	cfg.Servers[0].Weight = 120
	cfg.Servers = append(cfg.Servers, Server{Address: rC.Addr(), ServerAuth: ServerAuth{SharedKey: "k1"}})
	cfg.BatchBytes, cfg.BatchAge, cfg.WindowBytes, cfg.QueueBytes = 16<<10, 50*time.Millisecond, 64<<10, 2<<20
	cfg.Tag, cfg.Gzip = "reloaded.{namespace}.{pod}", true
	apply("add C, chunk settings", cfg)
	grows(t, "records on C", 2000, rC.Records)
	tagged := func() (n int) {
		for _, rc := range tally.Receipts() {
			if strings.HasPrefix(rc.Tag, "reloaded.") && rc.Compressed {
				n++
			}
		}
		return n
	}
	waitFor(t, 10*time.Second, "frames with the new tag, compressed", func() bool { return tagged() > 10 })

	// C's key changes (C takes it for new connections): its connection is
	// replaced in good order.
	rC.SetSharedKey("k2")
	cfg.Servers[1].SharedKey = "k2"
	apply("C's new key", cfg)
	waitFor(t, 10*time.Second, "C connected again", func() bool {
		return rC.Connections() == 2 && serverStates(h.f)[rC.Addr()] == StateConnected
	})
	grows(t, "records on C's new connection", 2000, rC.Records)
	if rC.AuthFailures() != 0 {
		t.Errorf("%d refused handshakes on C", rC.AuthFailures())
	}

	// require_ack cannot change live: named, the rest applied.
	bad := cfg
	bad.RequireAck = false
	bad.BatchAge = 40 * time.Millisecond
	err := h.f.Reconfigure(bad)
	var nl *NotLiveError
	if !errors.As(err, &nl) || len(nl.Keys) != 1 || nl.Keys[0] != "forward.require_ack" || !IsNotLive(err) {
		t.Errorf("Reconfigure with require_ack changed = %v, want a NotLiveError naming forward.require_ack", err)
	}
	h.f.mu.Lock()
	if !h.f.cfg.RequireAck || h.f.cfg.BatchAge != 40*time.Millisecond {
		t.Errorf("after a NotLiveError: require_ack %v (want kept), batch_age %s (want applied)", h.f.cfg.RequireAck, h.f.cfg.BatchAge)
	}
	h.f.mu.Unlock()

	// An invalid configuration, or one whose files do not load, changes nothing.
	invalid := cfg
	invalid.Servers = nil
	missing := cfg
	missing.Servers = append([]Server(nil), cfg.Servers...)
	missing.Servers[0].SharedKeyFile = filepath.Join(t.TempDir(), "nonexistent")
	tlsBad := cfg
	tlsBad.TLS = TLSConfig{Enabled: true, CAFile: filepath.Join(t.TempDir(), "nonexistent.pem")}
	for _, c := range []ForwardConfig{invalid, missing, tlsBad} {
		if err := h.f.Reconfigure(c); err == nil || IsNotLive(err) || !strings.Contains(err.Error(), "refused") {
			t.Errorf("Reconfigure(bad) = %v, want it refused", err)
		}
	}
	waitStates(t, h.f, time.Second, map[string]string{rB.Addr(): StateConnected, rC.Addr(): StateConnected})
	grows(t, "records after the refused configurations", 2000, func() int { return rB.Records() + rC.Records() })

	l.finish(t)
	waitFor(t, 30*time.Second, "all batches acknowledged", fd.allAcked)
	if dups := checkTally(t, tally, fd); dups != 0 {
		t.Errorf("%d duplicates across the reconfigurations", dups)
	}
	if rA.Records() != left {
		t.Errorf("A took %d records after it was removed", rA.Records()-left)
	}
	t.Logf("%d records; A %d, B %d, C %d", len(fd.want()), rA.Records(), rB.Records(), rC.Records())
}

// TestReconfigureTLS: turning TLS on replaces the plain connection, in
// good order; the servers' certificates are then checked.
func TestReconfigureTLS(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	plain := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	p := newTestPKI(t)
	secure := startReceiver(t, "127.0.0.1:0", forwardtest.Config{TLS: serverTLS(p.server, p.ca.CAPEM)}, tally)
	cfg := testConfig(plain.Addr())
	h := startForward(t, cfg)
	fd := newFeeder(2, 100)
	l := startLoad(t, fd, h.f, 20)
	grows(t, "plain records", 2000, plain.Records)
	cfg.Servers = []Server{{Address: secure.Addr()}}
	cfg.TLS = TLSConfig{Enabled: true, CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile, ServerName: "fluentd.test"}
	if err := h.f.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	grows(t, "records over TLS", 2000, secure.Records)
	l.finish(t)
	waitFor(t, 30*time.Second, "all batches acknowledged", fd.allAcked)
	if dups := checkTally(t, tally, fd); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if secure.TLSFailures() != 0 {
		t.Errorf("%d TLS failures", secure.TLSFailures())
	}
}

// TestReconfigureBeforeRunAndAfterClose: before Run, the new servers are
// the ones Run connects to; after Close, Reconfigure is refused.
func TestReconfigureBeforeRunAndAfterClose(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	h := startForwardWith(t, testConfig("127.0.0.1:1"), func(f *Forward) {
		cfg := testConfig(r.Addr())
		if err := f.Reconfigure(cfg); err != nil {
			t.Fatal(err)
		}
	})
	fd := newFeeder(1, 10)
	fd.sendN(t, h.f, 5, 10)
	waitFor(t, 10*time.Second, "acks", fd.allAcked)
	checkTally(t, tally, fd)
	if st := serverStates(h.f); len(st) != 1 {
		t.Errorf("servers %v, want only the reconfigured one", st)
	}
	closeForward(t, h.f)
	if err := h.f.Reconfigure(testConfig(r.Addr())); !errors.Is(err, ErrClosed) {
		t.Errorf("Reconfigure after Close = %v, want ErrClosed", err)
	}
}

// TestSecretFilesChecked: a key file that cannot be read fails NewForward
// naming the key; an empty one too.
func TestSecretFilesChecked(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	must(t, os.WriteFile(empty, []byte("\n"), 0o600))
	for _, tc := range []struct {
		mutate func(*ForwardConfig)
		want   string
	}{
		{func(c *ForwardConfig) { c.SharedKeyFile = filepath.Join(dir, "none") }, "forward.shared_key_file: open"},
		{func(c *ForwardConfig) { c.Servers[0].SharedKeyFile = empty }, "forward.servers[0].shared_key_file: " + empty + " is empty"},
		{func(c *ForwardConfig) {
			c.Servers[0].SharedKey, c.Servers[0].Username, c.Servers[0].PasswordFile = "k", "u", filepath.Join(dir, "none")
		}, "forward.servers[0].password_file"},
	} {
		cfg := testConfig("127.0.0.1:1")
		tc.mutate(&cfg)
		if _, err := NewForward(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewForward = %v, want an error with %q", err, tc.want)
		}
	}
}
