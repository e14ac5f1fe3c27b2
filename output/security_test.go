package output

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/logagent/logagent/output/forwardtest"
)

type testPKI struct {
	ca                        *forwardtest.PKI
	caFile, certFile, keyFile string // the client's view
	server                    tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := forwardtest.NewPKI("logagent test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &testPKI{ca: ca, caFile: filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "client.pem"), keyFile: filepath.Join(dir, "client-key.pem")}
	must(t, os.WriteFile(p.caFile, ca.CAPEM, 0o600))
	cert, key, err := ca.Issue("logagent", nil, nil, true)
	must(t, err)
	must(t, os.WriteFile(p.certFile, cert, 0o600))
	must(t, os.WriteFile(p.keyFile, key, 0o600))
	scert, skey, err := ca.Issue("fluentd", []string{"fluentd.test"}, []net.IP{net.ParseIP("127.0.0.1")}, false)
	must(t, err)
	p.server, err = tls.X509KeyPair(scert, skey)
	must(t, err)
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// serverTLS requires a client certificate from clientCA.
func serverTLS(cert tls.Certificate, clientCA []byte) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(clientCA)
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
}

func TestTLSWithCAAndClientCertificate(t *testing.T) {
	skipShort(t)
	p := newTestPKI(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{TLS: serverTLS(p.server, p.ca.CAPEM)}, tally)
	cfg := testConfig(r.Addr())
	cfg.Gzip = true
	cfg.TLS = TLSConfig{Enabled: true, CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile, ServerName: "fluentd.test"}
	h := startForward(t, cfg)
	fd := newFeeder(2, 100)
	fd.sendN(t, h.f, 30, 20)
	waitFor(t, 20*time.Second, "all batches acknowledged", fd.allAcked)
	if dups := checkTally(t, tally, fd); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if r.TLSFailures() != 0 {
		t.Errorf("%d TLS failures on the receiver", r.TLSFailures())
	}
}

func TestTLSBadCertificateLosesNothing(t *testing.T) {
	skipShort(t)
	for _, tc := range []struct {
		name string
		// setup returns the receiver's TLS config for the bad phase.
		bad func(p *testPKI, other *forwardtest.PKI) *tls.Config
	}{
		{"server certificate from an unknown CA", func(p *testPKI, other *forwardtest.PKI) *tls.Config {
			cert, key, _ := other.Issue("fluentd", []string{"fluentd.test"}, []net.IP{net.ParseIP("127.0.0.1")}, false)
			c, _ := tls.X509KeyPair(cert, key)
			return serverTLS(c, p.ca.CAPEM)
		}},
		{"server name mismatch", func(p *testPKI, other *forwardtest.PKI) *tls.Config {
			cert, key, _ := p.ca.Issue("elsewhere", []string{"elsewhere.test"}, nil, false)
			c, _ := tls.X509KeyPair(cert, key)
			return serverTLS(c, p.ca.CAPEM)
		}},
		{"client certificate rejected", func(p *testPKI, other *forwardtest.PKI) *tls.Config {
			return serverTLS(p.server, other.CAPEM)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPKI(t)
			other, err := forwardtest.NewPKI("some other CA")
			must(t, err)
			tally := &forwardtest.Tally{}
			r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{TLS: tc.bad(p, other)}, tally)
			addr := r.Addr()
			cfg := testConfig(addr)
			cfg.TLS = TLSConfig{Enabled: true, CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile, ServerName: "fluentd.test"}
			h := startForward(t, cfg)
			fd := newFeeder(1, 100)
			fd.sendN(t, h.f, 10, 10)
			tlsErrs := h.f.m.errors.WithLabelValues(addr, reasonTLS)
			waitFor(t, 10*time.Second, "three failed attempts", func() bool { return h.metric(tlsErrs) >= 3 })
			if tally.Records() != 0 || fd.acked.Load() != 0 {
				t.Fatalf("records passed a failed TLS handshake")
			}
			// One clear error line per attempt, naming the cause.
			if lines, errs := h.logs.count("reason=tls"), h.metric(tlsErrs); float64(lines) < errs-1 || float64(lines) > errs+1 {
				t.Errorf("%d log lines with reason=tls for %v errors:\n%s", lines, errs, h.logs)
			}
			// A fixed server: delivery resumes, nothing lost.
			r.Close()
			startReceiver(t, addr, forwardtest.Config{TLS: serverTLS(p.server, p.ca.CAPEM)}, tally)
			waitFor(t, 20*time.Second, "all batches acknowledged", fd.allAcked)
			if dups := checkTally(t, tally, fd); dups != 0 {
				t.Errorf("%d duplicates", dups)
			}
		})
	}
}

func TestSharedKeyHandshake(t *testing.T) {
	skipShort(t)
	for _, tc := range []struct {
		name               string
		users              map[string]string
		username, password string
	}{
		{"shared key", nil, "", ""},
		{"shared key and user", map[string]string{"agent": "s3cret", "other": "x"}, "agent", "s3cret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tally := &forwardtest.Tally{}
			r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{SharedKey: "k3y", Users: tc.users, Hostname: "fluentd-0"}, tally)
			cfg := testConfig(r.Addr())
			cfg.SharedKey, cfg.SelfHostname = "k3y", "node-1"
			cfg.Username, cfg.Password = tc.username, tc.password
			h := startForward(t, cfg)
			fd := newFeeder(2, 100)
			fd.sendN(t, h.f, 30, 20)
			waitFor(t, 20*time.Second, "all batches acknowledged", fd.allAcked)
			if dups := checkTally(t, tally, fd); dups != 0 {
				t.Errorf("%d duplicates", dups)
			}
			if r.AuthFailures() != 0 {
				t.Errorf("%d refused handshakes", r.AuthFailures())
			}
		})
	}
}

func TestSharedKeyRefusedLosesNothing(t *testing.T) {
	skipShort(t)
	for _, tc := range []struct {
		name             string
		serverKey        string
		users            map[string]string
		serverName       string
		password, reason string
	}{
		{"wrong shared key", "other-key", nil, "fluentd-0", "", "shared_key mismatch"},
		{"wrong password", "k3y", map[string]string{"agent": "right"}, "fluentd-0", "wrong", "username/password mismatch"},
		{"server with our own hostname", "k3y", nil, "node-1", "", "equals self_hostname"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tally := &forwardtest.Tally{}
			r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{SharedKey: tc.serverKey, Users: tc.users, Hostname: tc.serverName}, tally)
			addr := r.Addr()
			cfg := testConfig(addr)
			cfg.SharedKey, cfg.SelfHostname = "k3y", "node-1"
			if tc.users != nil {
				cfg.Username, cfg.Password = "agent", tc.password
			}
			h := startForward(t, cfg)
			fd := newFeeder(1, 100)
			fd.sendN(t, h.f, 10, 10)
			authErrs := h.f.m.errors.WithLabelValues(addr, reasonAuth)
			waitFor(t, 10*time.Second, "three refused attempts", func() bool { return h.metric(authErrs) >= 3 })
			if tally.Records() != 0 || fd.acked.Load() != 0 {
				t.Fatal("records passed a refused handshake")
			}
			if n := h.logs.count(tc.reason); n < 3 {
				t.Errorf("%d log lines naming %q, want one per attempt:\n%s", n, tc.reason, h.logs)
			}
			r.Close()
			var users map[string]string
			if tc.users != nil {
				users = map[string]string{"agent": tc.password}
			}
			startReceiver(t, addr, forwardtest.Config{SharedKey: "k3y", Users: users, Hostname: "fluentd-0"}, tally)
			waitFor(t, 20*time.Second, "all batches acknowledged", fd.allAcked)
			if dups := checkTally(t, tally, fd); dups != 0 {
				t.Errorf("%d duplicates", dups)
			}
		})
	}
}

func TestSharedKeyMissingAgainstSecureServer(t *testing.T) {
	skipShort(t)
	tally := &forwardtest.Tally{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{SharedKey: "k3y"}, tally)
	h := startForward(t, testConfig(r.Addr()))
	fd := newFeeder(1, 100)
	fd.sendN(t, h.f, 2, 10)
	waitFor(t, 10*time.Second, "a protocol error", func() bool {
		return h.metric(h.f.m.errors.WithLabelValues(r.Addr(), reasonProtocol)) >= 1
	})
	if h.logs.count("require shared_key") < 1 {
		t.Errorf("the error does not hint at shared_key:\n%s", h.logs)
	}
	if fd.acked.Load() != 0 {
		t.Error("batches acknowledged by a server that never accepted them")
	}
}
