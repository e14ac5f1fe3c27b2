package kubetest

import (
	"crypto/x509"
	"encoding/pem"
	"slices"
	"testing"
	"time"
)

func parseCert(t *testing.T, name string, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: not a PEM certificate", name)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return cert
}

// TestPKI checks the key material the apiserver and clients rely on: the
// serving cert verifies for 127.0.0.1, the admin cert is a client cert in
// system:masters, and the service-account key pair parses.
func TestPKI(t *testing.T) {
	now := time.Now()
	p, err := newPKI(now)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.caCert) {
		t.Fatal("CA certificate does not parse")
	}

	tests := []struct {
		name  string
		cert  []byte
		usage x509.ExtKeyUsage
		host  string
	}{
		{"serving", p.serverCert, x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{"serving", p.serverCert, x509.ExtKeyUsageServerAuth, "localhost"},
		{"admin", p.adminCert, x509.ExtKeyUsageClientAuth, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/"+tc.host, func(t *testing.T) {
			cert := parseCert(t, tc.name, tc.cert)
			_, err := cert.Verify(x509.VerifyOptions{
				Roots: roots, DNSName: tc.host, CurrentTime: now,
				KeyUsages: []x509.ExtKeyUsage{tc.usage},
			})
			if err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}

	admin := parseCert(t, "admin", p.adminCert)
	if admin.Subject.CommonName != adminUser || !slices.Contains(admin.Subject.Organization, "system:masters") {
		t.Errorf("admin subject = %v, want CN=%s in O=system:masters", admin.Subject, adminUser)
	}

	for name, data := range map[string][]byte{"sa.key": p.saKey, "apiserver.key": p.serverKey, "admin.key": p.adminKey} {
		block, _ := pem.Decode(data)
		if block == nil {
			t.Fatalf("%s: not PEM", name)
		}
		if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	block, _ := pem.Decode(p.saPub)
	if block == nil {
		t.Fatal("sa.pub: not PEM")
	}
	if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
		t.Errorf("sa.pub: %v", err)
	}
}
