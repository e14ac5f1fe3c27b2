package output

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/logagent/logagent/output/forwardtest"
)

// material is a CA and a client certificate it issued, as PEM.
type material struct {
	pki               *forwardtest.PKI
	cert, key, caPEM  []byte
	clientCN          string
	serverCertificate tls.Certificate
}

func newMaterial(t *testing.T, name string) material {
	t.Helper()
	pki, err := forwardtest.NewPKI(name + " CA")
	must(t, err)
	cert, key, err := pki.Issue(name+"-client", nil, nil, true)
	must(t, err)
	scert, skey, err := pki.Issue("fluentd", []string{"fluentd.test"}, []net.IP{net.ParseIP("127.0.0.1")}, false)
	must(t, err)
	server, err := tls.X509KeyPair(scert, skey)
	must(t, err)
	return material{pki: pki, cert: cert, key: key, caPEM: pki.CAPEM, clientCN: name + "-client", serverCertificate: server}
}

// secretDir lays files out as the kubelet mounts a Secret: the names are
// links into ..data, a link to a timestamped folder, swapped atomically.
type secretDir struct {
	dir string
	gen int
}

func (s *secretDir) path(name string) string { return filepath.Join(s.dir, name) }

// publish makes files the Secret's content, as the kubelet's atomic writer
// does: a new folder, then ..data renamed over to point at it.
func (s *secretDir) publish(t *testing.T, files map[string][]byte) {
	t.Helper()
	s.gen++
	ts := fmt.Sprintf("..2026_11_27_00_00_%02d.%d", s.gen, s.gen)
	must(t, os.Mkdir(filepath.Join(s.dir, ts), 0o755))
	for name, b := range files {
		must(t, os.WriteFile(filepath.Join(s.dir, ts, name), b, 0o600))
	}
	tmp := filepath.Join(s.dir, "..data_tmp")
	must(t, os.Symlink(ts, tmp))
	must(t, os.Rename(tmp, filepath.Join(s.dir, "..data")))
	for name := range files {
		link := filepath.Join(s.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			must(t, os.Symlink(filepath.Join("..data", name), link))
		}
	}
}

// receiverTLS serves m's server certificate and requires a client
// certificate from one of the CAs, recording each client's common name.
func receiverTLS(m material, clientCAs [][]byte, seen *clientNames) *tls.Config {
	pool := x509.NewCertPool()
	for _, ca := range clientCAs {
		pool.AppendCertsFromPEM(ca)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{m.serverCertificate},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				seen.add(cs.PeerCertificates[0].Subject.CommonName)
			}
			return nil
		},
	}
}

type clientNames struct {
	mu    sync.Mutex
	names []string
}

func (c *clientNames) add(n string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names = append(c.names, n)
}

func (c *clientNames) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.names...)
}

// TestCertificateRotation: the CA bundle, client certificate and key are
// renewed while records flow, as the kubelet updates a mounted Secret and
// as a tool that rewrites the files in place does. The connection open
// keeps going with its material; the next one trusts the new CA and
// presents the new client certificate; nothing is lost.
func TestCertificateRotation(t *testing.T) {
	skipShort(t)
	for _, inPlace := range []bool{false, true} {
		t.Run(map[bool]string{false: "kubelet ..data swap", true: "rewritten in place"}[inPlace], func(t *testing.T) {
			m1, m2 := newMaterial(t, "first"), newMaterial(t, "second")
			dir := &secretDir{dir: t.TempDir()}
			write := func(m material) {
				files := map[string][]byte{"ca.crt": m.caPEM, "tls.crt": m.cert, "tls.key": m.key}
				if !inPlace {
					dir.publish(t, files)
					return
				}
				for _, name := range []string{"ca.crt", "tls.crt", "tls.key"} {
					must(t, os.WriteFile(dir.path(name), files[name], 0o600))
				}
			}
			write(m1)

			tally := &forwardtest.Tally{}
			seen1 := &clientNames{}
			r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{TLS: receiverTLS(m1, [][]byte{m1.caPEM, m2.caPEM}, seen1)}, tally)
			addr := r.Addr()
			cfg := testConfig(addr)
			cfg.TLS = TLSConfig{Enabled: true, CAFile: dir.path("ca.crt"), CertFile: dir.path("tls.crt"),
				KeyFile: dir.path("tls.key"), ServerName: "fluentd.test"}
			h := startForward(t, cfg)
			fd := newFeeder(4, 100)
			l := startLoad(t, fd, h.f, 20)
			grows(t, "records over TLS", 2000, r.Records)

			write(m2)
			// The connection open goes on with the material it was made with.
			grows(t, "records after the files changed", 5000, r.Records)
			if r.Connections() != 1 || r.TLSFailures() != 0 {
				t.Errorf("%d connections, %d TLS failures: the files' change cut the connection open", r.Connections(), r.TLSFailures())
			}
			if got := seen1.get(); len(got) != 1 || got[0] != "first-client" {
				t.Errorf("client certificates presented: %v", got)
			}

			// The server moves to the second CA and trusts only it: the next
			// connection must both trust its certificate and present the new one.
			r.Close()
			seen2 := &clientNames{}
			r2 := startReceiver(t, addr, forwardtest.Config{TLS: receiverTLS(m2, [][]byte{m2.caPEM}, seen2)}, tally)
			grows(t, "records over the new connection", 2000, r2.Records)
			if got := seen2.get(); len(got) == 0 || got[0] != "second-client" || r2.TLSFailures() != 0 {
				t.Errorf("after the rotation: client certificates %v, %d TLS failures", got, r2.TLSFailures())
			}
			if got := h.metric(h.f.m.tlsReloads.WithLabelValues("success")); got != 1 {
				t.Errorf("tls_reloads_total{result=success} = %v, want 1", got)
			}
			l.finish(t)
			waitFor(t, 30*time.Second, "all batches acknowledged", fd.allAcked)
			dups := checkTally(t, tally, fd)
			t.Logf("%d records, %d duplicates (in flight when the first receiver was closed)", len(fd.want()), dups)
		})
	}
}

// TestCertificateHalfWritten: a certificate written without its key yet
// (a tool writing the files one by one) does not load: the connection made
// meanwhile uses the previous material, the failure is counted once, and
// the complete pair is used once the key follows.
func TestCertificateHalfWritten(t *testing.T) {
	skipShort(t)
	m1, m2 := newMaterial(t, "first"), newMaterial(t, "second")
	dir := t.TempDir()
	ca, crt, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	caBoth := append(append([]byte(nil), m1.caPEM...), m2.caPEM...)
	must(t, os.WriteFile(ca, caBoth, 0o600))
	must(t, os.WriteFile(crt, m1.cert, 0o600))
	must(t, os.WriteFile(key, m1.key, 0o600))
	tally := &forwardtest.Tally{}
	seen := &clientNames{}
	r := startReceiver(t, "127.0.0.1:0", forwardtest.Config{TLS: receiverTLS(m1, [][]byte{m1.caPEM, m2.caPEM}, seen)}, tally)
	cfg := testConfig(r.Addr())
	cfg.TLS = TLSConfig{Enabled: true, CAFile: ca, CertFile: crt, KeyFile: key, ServerName: "fluentd.test"}
	h := startForward(t, cfg)
	fd := newFeeder(2, 100)
	fd.sendN(t, h.f, 10, 10)
	waitFor(t, 10*time.Second, "acks", fd.allAcked)

	reconnect := func(n int) {
		t.Helper()
		r.CloseConns()
		waitFor(t, 10*time.Second, "a new connection", func() bool {
			return r.Connections() >= n && serverStates(h.f)[r.Addr()] == StateConnected
		})
		fd.sendN(t, h.f, 10, 10)
		waitFor(t, 10*time.Second, "acks", fd.allAcked)
	}
	must(t, os.WriteFile(crt, m2.cert, 0o600)) // the key is not there yet
	reconnect(2)
	reconnect(3)
	if got := h.metric(h.f.m.tlsReloads.WithLabelValues("failure")); got != 1 {
		t.Errorf("tls_reloads_total{result=failure} = %v, want 1 (once per content)", got)
	}
	must(t, os.WriteFile(key, m2.key, 0o600))
	reconnect(4)
	want := []string{"first-client", "first-client", "first-client", "second-client"}
	if got := seen.get(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("client certificates presented: %v, want %v", got, want)
	}
	if got := h.metric(h.f.m.tlsReloads.WithLabelValues("success")); got != 1 {
		t.Errorf("tls_reloads_total{result=success} = %v, want 1", got)
	}
	checkTally(t, tally, fd)
}
