package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	// startTimeout bounds etcd + apiserver start-up. Measured 4-7 s on an idle
	// machine; the generous bound is for 2 cores shared with parallel builds.
	startTimeout = 2 * time.Minute
	// stopGrace is how long a server gets to exit on SIGTERM before SIGKILL.
	stopGrace = 10 * time.Second
	// pollInterval is the readiness poll period.
	pollInterval = 100 * time.Millisecond
	// logTailLines is how much of each server log a failed test prints.
	logTailLines = 40
	// startAttempts: ports are picked free but released before the servers
	// bind them, so another process can take one; start again on new ports.
	startAttempts = 3
)

// Cluster is a running etcd + kube-apiserver. Its fields are read-only.
type Cluster struct {
	// Server is the apiserver URL, https://127.0.0.1:<port>.
	Server string
	// Kubeconfig is the path of an admin kubeconfig (client certificate in
	// group system:masters).
	Kubeconfig string
	// Config is the admin rest.Config. Copy it (rest.CopyConfig) before changing it.
	Config *rest.Config
	// Client is an admin clientset.
	Client kubernetes.Interface
	// Dir is the cluster's temporary folder: key material, etcd data, logs
	// (etcd.log, kube-apiserver.log), kubeconfigs.
	Dir string

	assets    string
	pki       *pki
	etcd      *process
	apiserver *process
}

// Start starts etcd and kube-apiserver for t and stops them when t ends. It
// skips t under -short and fails t, naming the build command, if the binaries
// are missing. On failure of t, the tail of both server logs is logged.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("kubetest: skipping, starts a real kube-apiserver and etcd (not run under -short)")
	}
	assets, err := AssetsDir()
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if _, err := Bin(name); err != nil {
			t.Fatalf("kubetest: %v", err)
		}
	}
	dir := t.TempDir()
	began := time.Now()
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		c, err := start(t, assets, filepath.Join(dir, "try"+strconv.Itoa(attempt)))
		if err == nil {
			t.Logf("kubetest: cluster at %s ready in %v (logs in %s)", c.Server, time.Since(began).Round(time.Millisecond), c.Dir)
			return c
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
		t.Logf("kubetest: attempt %d: %v; retrying on new ports", attempt, err)
	}
	t.Fatalf("kubetest: start cluster: %v", lastErr)
	return nil
}

// errPortTaken marks a start that failed because a picked port was taken.
var errPortTaken = errors.New("port taken")

// start makes one attempt to bring the cluster up in dir. On error it has
// stopped whatever it started and logged the server logs' tails.
func start(t testing.TB, assets, dir string) (*Cluster, error) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	c := &Cluster{Dir: dir, assets: assets}
	ok := false
	t.Cleanup(func() {
		if !ok {
			return // start already stopped and reported
		}
		c.stop(t)
	})
	defer func() {
		if !ok {
			c.dumpLogs(t)
			c.stop(t)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()

	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]

	c.pki, err = newPKI(time.Now())
	if err != nil {
		return nil, err
	}
	files, err := c.pki.write(dir)
	if err != nil {
		return nil, err
	}

	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	c.etcd, err = startProcess("etcd", filepath.Join(assets, "etcd"), []string{
		"--name=default",
		"--data-dir=" + filepath.Join(dir, "etcd-data"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		// Test data is thrown away: durability only costs disk syncs.
		"--unsafe-no-fsync",
		// Info level is ~100 lines of raft chatter per start, which would
		// bury the lines that matter in a failed test's log tail.
		"--log-level=warn",
	}, filepath.Join(dir, "etcd.log"))
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, c.etcd, etcdURL+"/health", http.DefaultClient, `"health":"true"`); err != nil {
		return nil, fmt.Errorf("etcd at %s: %w", etcdURL, err)
	}

	c.Server = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.apiserver, err = startProcess("kube-apiserver", filepath.Join(assets, "kube-apiserver"), []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		// With a loopback advertise address the default reconciler crashes
		// the apiserver; no Service endpoints are needed in tests.
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--tls-cert-file=" + files.serverCert,
		"--tls-private-key-file=" + files.serverKey,
		"--client-ca-file=" + files.caCert,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + files.saPub,
		"--service-account-signing-key-file=" + files.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		// No controller-manager creates each namespace's "default"
		// ServiceAccount, so this plugin would reject every pod.
		"--disable-admission-plugins=ServiceAccount",
		// Let deploy tests create privileged DaemonSet pods.
		"--allow-privileged=true",
		"--profiling=false",
	}, filepath.Join(dir, "kube-apiserver.log"))
	if err != nil {
		return nil, err
	}

	c.Config = &rest.Config{
		Host: c.Server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.pki.caCert,
			CertData: c.pki.adminCert,
			KeyData:  c.pki.adminKey,
		},
		// Tests create objects in bursts; the client-side default (5 QPS)
		// would make them slow for no benefit on a private server.
		QPS:   200,
		Burst: 400,
	}
	httpClient, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		return nil, fmt.Errorf("admin HTTP client: %w", err)
	}
	if err := waitHTTP(ctx, c.apiserver, c.Server+"/readyz", httpClient, "ok"); err != nil {
		return nil, fmt.Errorf("kube-apiserver at %s: %w", c.Server, err)
	}
	c.Client, err = kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, fmt.Errorf("admin clientset: %w", err)
	}
	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.Server, c.pki.caCert, adminUser, credentials{
		certData: c.pki.adminCert, keyData: c.pki.adminKey,
	}); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// waitHTTP polls url until it answers 200 with a body containing want, the
// process exits, or ctx ends.
func waitHTTP(ctx context.Context, p *process, url string, client *http.Client, want string) error {
	var last string
	for {
		if done, err := p.exited(); done {
			log := p.tail(logTailLines)
			if strings.Contains(log, "address already in use") {
				return fmt.Errorf("%s exited (%v): %w", p.name, err, errPortTaken)
			}
			return fmt.Errorf("%s exited before it was ready: %v", p.name, err)
		}
		status, body, err := get(ctx, client, url)
		switch {
		case err != nil:
			last = err.Error()
		case status == http.StatusOK && strings.Contains(body, want):
			return nil
		default:
			last = fmt.Sprintf("HTTP %d: %.300s", status, body)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready within %v; last answer from %s: %s", startTimeout, url, last)
		case <-p.done:
		case <-time.After(pollInterval):
		}
	}
}

func get(ctx context.Context, client *http.Client, url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return resp.StatusCode, "", fmt.Errorf("read %s: %w", url, err)
	}
	return resp.StatusCode, string(body), nil
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. All are held
// open together so the kernel cannot hand out the same one twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// stop ends the apiserver, then etcd (the apiserver needs etcd to shut down
// cleanly), and logs the servers' log tails if t failed.
func (c *Cluster) stop(t testing.TB) {
	if t.Failed() {
		c.dumpLogs(t)
	}
	began := time.Now()
	for _, p := range []*process{c.apiserver, c.etcd} {
		if p == nil {
			continue
		}
		if err := p.stop(stopGrace); err != nil {
			t.Errorf("kubetest: %v", err)
		}
	}
	if c.Server != "" {
		t.Logf("kubetest: cluster at %s stopped in %v", c.Server, time.Since(began).Round(time.Millisecond))
	}
}

func (c *Cluster) dumpLogs(t testing.TB) {
	for _, p := range []*process{c.etcd, c.apiserver} {
		if p != nil {
			t.Logf("kubetest: last lines of %s:\n%s", p.logPath, p.tail(logTailLines))
		}
	}
}

// Bin returns the path of a tool binary (kubectl, helm, ...) next to the
// cluster's own binaries. It does not check that it exists; see Bin/RequireBin.
func (c *Cluster) Bin(name string) string {
	return filepath.Join(c.assets, name)
}
