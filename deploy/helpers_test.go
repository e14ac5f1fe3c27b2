package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logagent/logagent/test/kubetest"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	// cmdTimeout bounds one external command (helm, kubectl, promtool, go build).
	// go build of the agent on 2 busy cores is the slowest.
	cmdTimeout = 10 * time.Minute
	// pollInterval is how often waitFor checks its condition.
	pollInterval = 100 * time.Millisecond
)

// scratch is a folder for the whole test binary's run: the agent binary
// built once for all tests lives here.
var scratch string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "logagent-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy tests:", err)
		os.Exit(1)
	}
	scratch = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot is the repository root; tests run in deploy/.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.Contains(mod, []byte("module github.com/logagent/logagent\n")) {
		t.Fatalf("%s is not the logagent repository root (go.mod: %v)", root, err)
	}
	return root
}

// run runs a command in dir and returns its stdout. The error carries the
// exit status and stderr.
func run(dir string, env []string, stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// requireTool returns the path of a program on $PATH (promtool, prometheus,
// make), failing t with how to install it. Skips under -short.
func requireTool(t testing.TB, name, install string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipping: needs %s (not run under -short)", name)
	}
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on $PATH: %s", name, install)
	}
	return path
}

// waitFor polls cond until it reports true, failing t with cond's last
// message once timeout has passed.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, timeout, msg)
		}
		time.Sleep(pollInterval)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// httpGet returns the status and body of a GET.
func httpGet(url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// --- the agent -------------------------------------------------------------

var agentBuild struct {
	once sync.Once
	path string
	err  error
}

// agentBinary builds cmd/logagent once per test run (go build -o <tmp>
// ./cmd/logagent) and returns its path.
func agentBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: builds and runs the agent (not run under -short)")
	}
	agentBuild.once.Do(func() {
		path := filepath.Join(scratch, "logagent")
		// -trimpath: reuse the build cache of `make build` and the other tests.
		_, err := run(repoRoot(t), nil, nil, "go", "build", "-trimpath", "-o", path, "./cmd/logagent")
		agentBuild.path, agentBuild.err = path, err
	})
	if agentBuild.err != nil {
		t.Fatalf("build the agent: %v", agentBuild.err)
	}
	return agentBuild.path
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// agentProcess is a running agent.
type agentProcess struct {
	cmd    *exec.Cmd
	addr   string // host:port of /metrics, /healthz, /readyz
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error // exit status, once done is closed
}

// startAgent runs the agent binary with args plus --listen on a free
// loopback port, and returns once /healthz answers. env is added to a
// minimal environment (PATH and HOME only, so that no $LOGAGENT_* of the
// developer's leaks in). It is stopped with SIGTERM when t ends.
func startAgent(t testing.TB, env []string, args ...string) *agentProcess {
	t.Helper()
	bin := agentBinary(t)
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		a := &agentProcess{addr: "127.0.0.1:" + strconv.Itoa(freePort(t)), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
		a.cmd = exec.Command(bin, append(append([]string{}, args...), "--listen", a.addr)...)
		a.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
		a.cmd.Stdout, a.cmd.Stderr = a.stdout, a.stderr
		if err := a.cmd.Start(); err != nil {
			t.Fatalf("start agent: %v", err)
		}
		go func() { a.err = a.cmd.Wait(); close(a.done) }()
		err := a.waitHealthy(time.Minute)
		if err == nil {
			t.Cleanup(func() { a.stop(t) })
			return a
		}
		last = err
		a.kill()
		if !strings.Contains(a.stderr.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("agent did not start: %v", last)
	return nil
}

func (a *agentProcess) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-a.done:
			return fmt.Errorf("agent exited (%v) before /healthz answered; stderr:\n%s", a.err, a.stderr.String())
		default:
		}
		status, _, err := httpGet("http://" + a.addr + "/healthz")
		if err == nil && status == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/healthz: no 200 within %v (last: %d %v); stderr:\n%s", timeout, status, err, a.stderr.String())
		}
		time.Sleep(pollInterval)
	}
}

// stop sends SIGTERM and waits for the agent's orderly exit.
func (a *agentProcess) stop(t testing.TB) {
	t.Helper()
	select {
	case <-a.done:
		return
	default:
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		if a.err != nil {
			t.Errorf("agent exited with %v after SIGTERM; stderr:\n%s", a.err, a.stderr.String())
		}
	case <-time.After(40 * time.Second):
		a.kill()
		t.Errorf("agent did not exit within 40s of SIGTERM; stderr:\n%s", a.stderr.String())
	}
}

func (a *agentProcess) kill() {
	a.cmd.Process.Kill()
	<-a.done
}

// metric sums the samples of one metric family (all label sets) whose labels
// include every pair in match, from the agent's /metrics. ok is false when
// no sample matched.
func (a *agentProcess) metric(name string, match map[string]string) (sum float64, ok bool, err error) {
	status, body, err := httpGet("http://" + a.addr + "/metrics")
	if err != nil {
		return 0, false, err
	}
	if status != http.StatusOK {
		return 0, false, fmt.Errorf("/metrics: HTTP %d", status)
	}
	for _, s := range parseSamples(body) {
		if s.name != name {
			continue
		}
		matched := true
		for k, v := range match {
			if s.labels[k] != v {
				matched = false
			}
		}
		if matched {
			sum += s.value
			ok = true
		}
	}
	return sum, ok, nil
}

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseSamples reads the Prometheus text format's sample lines (enough for
// the agent's own output: no escaped quotes or commas in label values).
func parseSamples(text string) []sample {
	var out []sample
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			s.name, rest = line[:i], line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			for _, pair := range strings.Split(rest[1:end], ",") {
				k, v, ok := strings.Cut(pair, "=")
				if ok {
					s.labels[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
				}
			}
			rest = rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

// --- container logs in the kubelet layout ----------------------------------

// container is one container whose log the tests write.
type container struct {
	namespace, pod, uid, name string
	lines                     int
}

// writeKubeletLogs writes each container's lines (CRI format, one record
// per line) to <root>/pods/<ns>_<pod>_<uid>/<name>/0.log and links it from
// <root>/containers/<pod>_<ns>_<name>-<id>.log, as the kubelet does. It
// returns the glob of the links.
func writeKubeletLogs(t testing.TB, root string, cs []container) string {
	t.Helper()
	links := filepath.Join(root, "containers")
	if err := os.MkdirAll(links, 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, c := range cs {
		dir := filepath.Join(root, "pods", c.namespace+"_"+c.pod+"_"+c.uid, c.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for j := 0; j < c.lines; j++ {
			ts := now.Add(time.Duration(j) * time.Millisecond).UTC().Format(time.RFC3339Nano)
			fmt.Fprintf(&b, "%s stdout F {\"msg\":\"line %d of %s/%s\"}\n", ts, j, c.pod, c.name)
		}
		file := filepath.Join(dir, "0.log")
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("%064x", i+1)
		if err := os.Symlink(file, filepath.Join(links, c.pod+"_"+c.namespace+"_"+c.name+"-"+id+".log")); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(links, "*.log")
}

// --- manifests ---------------------------------------------------------------

// object is one Kubernetes object, decoded from YAML into JSON types.
type object = map[string]any

// decodeObjects splits a multi-document YAML stream into objects, skipping
// empty documents.
func decodeObjects(t testing.TB, data []byte) []object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("split YAML documents: %v", err)
		}
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatalf("decode YAML document: %v\n%s", err, doc)
		}
		if len(o) > 0 {
			out = append(out, o)
		}
	}
	return out
}

// key names an object: Kind/namespace/name.
func key(o object) string {
	ns, _ := get(o, "metadata", "namespace").(string)
	name, _ := get(o, "metadata", "name").(string)
	return fmt.Sprintf("%v/%s/%s", o["kind"], ns, name)
}

// get walks nested maps (string keys) and lists (int indexes); nil if absent.
func get(v any, path ...any) any {
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[p]
		case int:
			l, ok := v.([]any)
			if !ok || p >= len(l) {
				return nil
			}
			v = l[p]
		}
	}
	return v
}

// byKey indexes objects by key, failing t on duplicates.
func byKey(t testing.TB, objs []object) map[string]object {
	t.Helper()
	m := map[string]object{}
	for _, o := range objs {
		k := key(o)
		if _, dup := m[k]; dup {
			t.Fatalf("%s appears twice", k)
		}
		m[k] = o
	}
	return m
}

// find returns the only object of a kind, failing t otherwise.
func find(t testing.TB, objs []object, kind string) object {
	t.Helper()
	var found []object
	for _, o := range objs {
		if o["kind"] == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s, found %d", kind, len(found))
	}
	return found[0]
}

// container returns the agent container of a DaemonSet.
func agentContainer(t testing.TB, ds object) map[string]any {
	t.Helper()
	c, ok := get(ds, "spec", "template", "spec", "containers", 0).(map[string]any)
	if !ok || c["name"] != "logagent" {
		t.Fatalf("DaemonSet %s: first container is not logagent: %v", key(ds), c)
	}
	return c
}

// diff lists the paths where a and b differ, sorted, at most max of them.
func diff(a, b any, max int) []string {
	var out []string
	var walk func(path string, a, b any)
	walk = func(path string, a, b any) {
		switch av := a.(type) {
		case map[string]any:
			bv, ok := b.(map[string]any)
			if !ok {
				out = append(out, fmt.Sprintf("%s: %v != %v", path, a, b))
				return
			}
			keys := map[string]bool{}
			for k := range av {
				keys[k] = true
			}
			for k := range bv {
				keys[k] = true
			}
			for k := range keys {
				walk(path+"."+k, av[k], bv[k])
			}
		case []any:
			bv, ok := b.([]any)
			if !ok || len(av) != len(bv) {
				out = append(out, fmt.Sprintf("%s: %v != %v", path, a, b))
				return
			}
			for i := range av {
				walk(fmt.Sprintf("%s[%d]", path, i), av[i], bv[i])
			}
		default:
			if fmt.Sprintf("%T %v", a, a) != fmt.Sprintf("%T %v", b, b) {
				out = append(out, fmt.Sprintf("%s: %#v != %#v", path, a, b))
			}
		}
	}
	walk("", a, b)
	sort.Strings(out)
	if len(out) > max {
		out = append(out[:max], fmt.Sprintf("... and %d more", len(out)-max))
	}
	return out
}

// --- kubectl and helm without a cluster ---------------------------------------

// toolEnv keeps kubectl and helm away from the developer's ~/.kube and
// ~/.config/helm.
func toolEnv(t testing.TB) []string {
	home := t.TempDir()
	return []string{
		"HOME=" + home, "KUBECONFIG=" + filepath.Join(home, "no-kubeconfig"),
		"HELM_CACHE_HOME=" + filepath.Join(home, "helm-cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(home, "helm-config"),
		"HELM_DATA_HOME=" + filepath.Join(home, "helm-data"),
	}
}

// kustomize renders deploy/kubernetes with the built kubectl.
func kustomize(t testing.TB) []byte {
	t.Helper()
	return kustomizeAt(t, "deploy/kubernetes")
}

// withPodMonitor is the kustomization that adds the PodMonitor.
const withPodMonitor = "deploy/kubernetes-with-podmonitor"

// podMonitorAPI is the --api-versions entry that makes the chart render its
// PodMonitor in `helm template`, as a cluster with the CRD does in install.
const podMonitorAPI = "monitoring.coreos.com/v1/PodMonitor"

// kustomizeAt renders a kustomization (relative to the repository root).
func kustomizeAt(t testing.TB, dir string) []byte {
	t.Helper()
	kubectl := kubetest.RequireBin(t, "kubectl")
	out, err := run(repoRoot(t), toolEnv(t), nil, kubectl, "kustomize", dir)
	if err != nil {
		t.Fatalf("kubectl kustomize: %v", err)
	}
	return []byte(out)
}

// chartDir is the Helm chart, relative to the repository root.
const chartDir = "deploy/helm/logagent"

// helmTemplate renders the chart as release "logagent" in namespace
// "logagent", with extra helm arguments (--set, -f).
func helmTemplate(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	helm := kubetest.RequireBin(t, "helm")
	out, err := run(repoRoot(t), toolEnv(t), nil, helm,
		append([]string{"template", "logagent", chartDir, "--namespace", "logagent"}, args...)...)
	return []byte(out), err
}

// writeFile writes data into a new file in t's temporary folder.
func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// configOf returns the agent configuration file a set of objects carries
// (the ConfigMap's config.yaml), raw and decoded.
func configOf(t testing.TB, objs []object) (string, map[string]any) {
	t.Helper()
	cm := find(t, objs, "ConfigMap")
	raw, ok := get(cm, "data", "config.yaml").(string)
	if !ok {
		t.Fatalf("ConfigMap %s has no config.yaml", key(cm))
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatalf("ConfigMap's config.yaml: %v", err)
	}
	return raw, cfg
}
