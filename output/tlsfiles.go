package output

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// tlsFiles is the TLS configuration with its CA bundle, client certificate
// and key, read again for every new connection and loaded again when their
// content changed. cert-manager renews certificates in place, and the
// kubelet updates a mounted Secret by swapping a ..data symlink: reading
// the files (rather than watching them) sees both, and costs a few KiB per
// connection. New connections use the new material; those open keep theirs
// until they fail or are recycled, so no batch in flight is dropped. Files
// that do not load (a key that no longer matches its certificate while one
// of the two is being written) leave the last good material in use, counted
// and logged once per content.
type tlsFiles struct {
	cfg TLSConfig
	m   *metrics
	log *slog.Logger

	mu       sync.Mutex
	content  [3][]byte // of CAFile, CertFile, KeyFile, as last loaded
	conf     *tls.Config
	loadedAt time.Time
	notAfter time.Time // the client certificate's, if any
	failed   [3][]byte // content that failed to load: logged once
}

// newTLSFiles loads cfg's files; they must load.
func newTLSFiles(cfg TLSConfig, m *metrics, log *slog.Logger) (*tlsFiles, error) {
	t := &tlsFiles{cfg: cfg, m: m, log: log}
	content, err := t.read()
	if err != nil {
		return nil, err
	}
	if err := t.load(content); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *tlsFiles) read() ([3][]byte, error) {
	var content [3][]byte
	for i, f := range []struct{ key, path string }{
		{"forward.tls.ca_file", t.cfg.CAFile},
		{"forward.tls.cert_file", t.cfg.CertFile},
		{"forward.tls.key_file", t.cfg.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return content, fmt.Errorf("%s: %w", f.key, err)
		}
		content[i] = b
	}
	return content, nil
}

// load makes content the material in use.
func (t *tlsFiles) load(content [3][]byte) error {
	c := t.cfg
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify,
	}
	if c.CAFile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(content[0]) {
			return fmt.Errorf("forward.tls.ca_file: %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	var notAfter time.Time
	if c.CertFile != "" {
		cert, err := tls.X509KeyPair(content[1], content[2])
		if err != nil {
			return fmt.Errorf("forward.tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
		if cert.Leaf != nil {
			notAfter = cert.Leaf.NotAfter
		}
	}
	t.conf, t.content, t.loadedAt, t.notAfter = tc, content, time.Now(), notAfter
	return nil
}

// config returns the material to connect with: the files' current content
// if it changed and loads, else what was loaded last.
func (t *tlsFiles) config() *tls.Config {
	t.mu.Lock()
	defer t.mu.Unlock()
	content, err := t.read()
	if err == nil && sameContent(content, t.content) {
		return t.conf
	}
	if err == nil {
		if err = t.load(content); err == nil {
			t.m.tlsReloads.WithLabelValues("success").Inc()
			t.log.Info("forward: TLS files changed; new connections use them",
				"ca_file", t.cfg.CAFile, "cert_file", t.cfg.CertFile, "cert_not_after", t.notAfter)
			return t.conf
		}
	}
	if sameContent(content, t.failed) {
		return t.conf // counted and logged already
	}
	t.failed = content
	t.m.tlsReloads.WithLabelValues("failure").Inc()
	t.log.Error("forward: TLS files changed but do not load; connecting with the previous ones",
		"error", err, "loaded_at", t.loadedAt)
	return t.conf
}

func sameContent(a, b [3][]byte) bool {
	for i := range a {
		if !bytes.Equal(a[i], b[i]) || (a[i] == nil) != (b[i] == nil) {
			return false
		}
	}
	return true
}
