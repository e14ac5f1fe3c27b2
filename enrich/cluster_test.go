package enrich

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/logagent/logagent/collector"
	"github.com/logagent/logagent/test/kubetest"
)

// clusterRoleRules are all the agent needs; deploy/kubernetes should grant the
// same and no more.
var clusterRoleRules = []rbacv1.PolicyRule{{
	APIGroups: []string{""},
	Resources: []string{"pods", "namespaces"},
	Verbs:     []string{"get", "list", "watch"},
}}

// agentIdentity creates the agent's ServiceAccount, bound to a ClusterRole
// with only clusterRoleRules, and returns its kubeconfig path and config once
// RBAC lets it list pods.
func agentIdentity(t *testing.T, c *kubetest.Cluster) (string, *rest.Config) {
	t.Helper()
	ctx := t.Context()
	const ns, sa, role = "logagent", "logagent", "logagent-enrich"
	mustCreate(t, "namespace", func() error {
		_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, "ClusterRole", func() error {
		_, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: role}, Rules: clusterRoleRules,
		}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, "ClusterRoleBinding", func() error {
		_, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
		}, metav1.CreateOptions{})
		return err
	})
	path, cfg := c.ServiceAccountKubeconfig(t, ns, sa)
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The RBAC authorizer learns bindings from its own informer.
	waitFor(t, time.Minute, "RBAC lets the agent list pods", func() bool {
		_, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil
	})
	// Nothing beyond the rules: no secrets, no writes.
	if _, err := client.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("agent lists secrets: err = %v, want Forbidden", err)
	}
	if err := client.CoreV1().Pods("default").Delete(ctx, "x", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("agent deletes pods: err = %v, want Forbidden", err)
	}
	return path, cfg
}

func mustCreate(t *testing.T, what string, create func() error) {
	t.Helper()
	if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create %s: %v", what, err)
	}
}

// requestLog records the agent's API requests.
type requestLog struct {
	mu   sync.Mutex
	reqs []string // "METHOD path?query"
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		l.mu.Lock()
		l.reqs = append(l.reqs, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		l.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

func (l *requestLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.reqs...)
}

// warningLog keeps the warnings the API server sends.
type warningLog struct {
	mu   sync.Mutex
	text []string
}

func (w *warningLog) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	w.text = append(w.text, text)
	w.mu.Unlock()
}

func (w *warningLog) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.text...)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func clusterPod(ns, name string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName:   testNode, // no scheduler: bound at creation
			Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// TestCluster runs the Enricher against a real kube-apiserver, authenticated
// as a ServiceAccount with only get/list/watch on pods and namespaces.
func TestCluster(t *testing.T) {
	c := kubetest.Start(t)
	ctx := t.Context()
	saPath, saCfg := agentIdentity(t, c)

	for name, labels := range map[string]map[string]string{
		"shop":  {"team": "shop", "env": "prod"},
		"batch": nil,
		"muted": {excludeKey: "true"},
	} {
		mustCreate(t, "namespace "+name, func() error {
			_, err := c.Client.CoreV1().Namespaces().Create(ctx, namespace(name, labels), metav1.CreateOptions{})
			return err
		})
	}
	pods := map[string]*corev1.Pod{} // by name
	create := func(p *corev1.Pod) *corev1.Pod {
		t.Helper()
		got, err := c.Client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create pod %s/%s: %v", p.Namespace, p.Name, err)
		}
		pods[got.Name] = got
		return got
	}
	create(clusterPod("shop", "web-7d9c8b6f5-k2x4q", labelled("pod-template-hash", "7d9c8b6f5"), ownedBy("ReplicaSet", "web-7d9c8b6f5")))
	create(clusterPod("shop", "db-0", labelled("controller-revision-hash", "db-6c5f"), ownedBy("StatefulSet", "db")))
	create(clusterPod("batch", "backup-29123456-xk2p9", labelled("job-name", "backup-29123456"), ownedBy("Job", "backup-29123456")))
	create(clusterPod("shop", "mixed", withContainers("app", "sidecar"), annotated(excludeContainersKey, "sidecar")))
	create(clusterPod("muted", "noisy"))
	create(clusterPod("shop", "elsewhere", onNode("node-b")))

	// The Enricher as the agent would build it: from the ServiceAccount's
	// kubeconfig, with its requests recorded.
	var reqs requestLog
	cfg := rest.CopyConfig(saCfg)
	cfg.WrapTransport = reqs.wrap
	client, err := NewClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewClient(saPath); err != nil {
		t.Fatalf("NewClient(%s): %v", saPath, err)
	}
	ecfg := testConfig()
	ecfg.MissWait = 30 * time.Second // only arrival releases parked batches here
	ecfg.AllowPodExclusion = true    // the "exclusion" subtest checks the pods' own annotations too
	next := &recorder{}
	e, err := New(ecfg, client, next, prometheus.NewRegistry(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	e.SetPolicies(testPolicies(t)) // the "collector policies" subtest
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, time.Minute, "Ready", func() bool { return e.Ready() == nil })

	send := func(t *testing.T, p *corev1.Pod, container string) (*collector.Batch, decoded) {
		t.Helper()
		src := source(p.Namespace, p.Name, string(p.UID), container, "")
		b := batch(src, 2, nil)
		if err := e.Send(ctx, b); err != nil {
			t.Fatal(err)
		}
		if !b.Acked() {
			t.Fatalf("batch of %s/%s not delivered", p.Name, container)
		}
		return b, decode(t, b.Kubernetes)
	}
	lookups := func(r string) float64 { return value(t, e.m.lookups.WithLabelValues(r)) }

	t.Run("owners labels and namespace labels", func(t *testing.T) {
		for _, tc := range []struct{ pod, kind, name string }{
			{"web-7d9c8b6f5-k2x4q", "Deployment", "web"},
			{"db-0", "StatefulSet", "db"},
			{"backup-29123456-xk2p9", "CronJob", "backup"},
		} {
			p := pods[tc.pod]
			_, d := send(t, p, "app")
			if o := d.sub("owner"); o["kind"] != tc.kind || o["name"] != tc.name {
				t.Errorf("%s: owner %v, want %s/%s", tc.pod, o, tc.kind, tc.name)
			}
			if d.str("pod_id") != string(p.UID) || d.str("namespace_name") != p.Namespace || d.str("host") != testNode ||
				d.str("container_image") != "example.com/app:1" || d.sub("labels")["app"] != tc.pod {
				t.Errorf("%s: kubernetes = %v", tc.pod, d.m)
			}
		}
		_, d := send(t, pods["db-0"], "app")
		if nl := d.sub("namespace_labels"); nl["team"] != "shop" || nl["env"] != "prod" {
			t.Errorf("namespace_labels = %v", nl)
		}
		// The server labels every namespace with its name.
		if _, d := send(t, pods["backup-29123456-xk2p9"], "app"); len(d.sub("namespace_labels")) != 1 ||
			d.sub("namespace_labels")["kubernetes.io/metadata.name"] != "batch" {
			t.Errorf("unlabelled namespace: namespace_labels = %v", d.m["namespace_labels"])
		}
	})

	t.Run("label change picked up", func(t *testing.T) {
		if out, err := c.Kubectl(t, "label", "pod", "-n", "shop", "db-0", "version=v2"); err != nil {
			t.Fatalf("kubectl label: %v %s", err, out)
		}
		waitFor(t, 30*time.Second, "new label in records", func() bool {
			_, d := send(t, pods["db-0"], "app")
			return d.sub("labels")["version"] == "v2"
		})
	})

	t.Run("pod on another node never cached", func(t *testing.T) {
		for _, key := range e.inf.Load().pod.GetStore().ListKeys() {
			if key == "shop/elsewhere" {
				t.Error("node-b's pod is in the informer's store")
			}
		}
		if m, _ := e.cache.lookup(source("shop", "elsewhere", string(pods["elsewhere"].UID), "app", "")); m != nil {
			t.Error("node-b's pod is cached")
		}
	})

	t.Run("exclusion", func(t *testing.T) {
		before := next.len()
		for _, tc := range []struct{ pod, container, reason string }{
			{"noisy", "app", reasonNamespaceLabel},
			{"mixed", "sidecar", reasonContainerAnnotation},
		} {
			p := pods[tc.pod]
			was := value(t, e.m.excluded.WithLabelValues(tc.reason))
			b := batch(source(p.Namespace, p.Name, string(p.UID), tc.container, ""), 3, nil)
			if err := e.Send(ctx, b); err != nil {
				t.Fatal(err)
			}
			if !b.Acked() {
				t.Errorf("%s/%s: excluded batch not acknowledged", tc.pod, tc.container)
			}
			if got := value(t, e.m.excluded.WithLabelValues(tc.reason)) - was; got != 3 {
				t.Errorf("%s/%s: excluded records{%s} +%v, want +3", tc.pod, tc.container, tc.reason, got)
			}
		}
		if next.len() != before {
			t.Error("an excluded batch was delivered")
		}
		if _, d := send(t, pods["mixed"], "app"); d.str("container_name") != "app" {
			t.Errorf("mixed/app: %v", d.m)
		}
	})

	t.Run("batch before its pod arrives waits and is enriched", func(t *testing.T) {
		// The server assigns pod uids, so a batch cannot name a pod's uid
		// before the pod exists, except for a static pod: its files live
		// under the kubelet's uid, which its mirror pod names in an
		// annotation. That is also the static-pod path of a real node.
		const kubeletUID = "8d3c3a8f2c6e4b1fa0b7c0d5e9f1a2b3"
		src := source("shop", "static-web-"+testNode, kubeletUID, "app", "")
		was := lookups(resultLate)
		var parked []*collector.Batch
		for range 3 {
			b := batch(src, 1, nil)
			parked = append(parked, b)
			if err := e.Send(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		if parked[0].Acked() {
			t.Fatal("batch of an unknown pod delivered before the pod exists")
		}
		create(clusterPod("shop", "static-web-"+testNode, annotated(mirrorAnnotation, kubeletUID)))
		waitFor(t, 30*time.Second, "parked batches released", func() bool { return parked[2].Acked() })
		got := next.get()
		got = got[len(got)-3:]
		for i := range parked {
			if got[i] != parked[i] {
				t.Fatalf("batch %d released out of order", i)
			}
			if d := decode(t, got[i].Kubernetes); d.sub("labels")["app"] != "static-web-"+testNode {
				t.Errorf("late batch %d: %v", i, d.m)
			}
		}
		if got := lookups(resultLate) - was; got != 3 {
			t.Errorf("late lookups +%v, want +3", got)
		}
	})

	t.Run("collector policies from annotations", func(t *testing.T) {
		mustCreate(t, "namespace team", func() error {
			_, err := c.Client.CoreV1().Namespaces().Create(ctx, annotatedNamespace("team", map[string]string{rateLimitKey: "2MiB"}), metav1.CreateOptions{})
			return err
		})
		p := create(clusterPod("team", "svc", withContainers("api", "worker"),
			annotated(multilineKey, "java"), annotated(multilineContainerPrefix+"worker", "python")))
		api := source("team", "svc", string(p.UID), "api", "")
		worker := source("team", "svc", string(p.UID), "worker", "")
		waitFor(t, 30*time.Second, "pod cached", func() bool { m, _ := e.cache.lookup(api); return m != nil })
		if pol := e.Policy(api); ruleName(pol) != "java" || pol.RateLimit.BytesPerSecond != 2<<20 || pol.Provisional {
			t.Errorf("api: %s %+v", ruleName(pol), pol)
		}
		if pol := e.Policy(worker); ruleName(pol) != "python" {
			t.Errorf("worker: %s", ruleName(pol))
		}
		// Annotations changed with kubectl, on the pod (lowering the
		// limit) and on the namespace.
		if out, err := c.Kubectl(t, "annotate", "pod", "-n", "team", "svc", rateLimitKey+"=512KiB", multilineKey+"=go", "--overwrite"); err != nil {
			t.Fatalf("kubectl annotate pod: %v %s", err, out)
		}
		waitFor(t, 30*time.Second, "pod annotations applied", func() bool {
			pol := e.Policy(api)
			return ruleName(pol) == "go" && pol.RateLimit.BytesPerSecond == 512<<10
		})
		if out, err := c.Kubectl(t, "annotate", "namespace", "team", rateLimitKey+"=256KiB", "--overwrite"); err != nil {
			t.Fatalf("kubectl annotate namespace: %v %s", err, out)
		}
		waitFor(t, 30*time.Second, "namespace annotation applied", func() bool { return e.Policy(api).RateLimit.BytesPerSecond == 256<<10 })

		// A file read before its pod exists (a static pod's, whose uid the
		// kubelet chose): provisional, then the pod's own.
		const kubeletUID = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
		src := source("team", "static-svc-"+testNode, kubeletUID, "app", "")
		if pol := e.Policy(src); !pol.Provisional || pol.RateLimit.BytesPerSecond != 256<<10 {
			t.Errorf("before the pod: %+v, want provisional with the namespace's limit", pol)
		}
		create(clusterPod("team", "static-svc-"+testNode, annotated(mirrorAnnotation, kubeletUID), annotated(multilineKey, "ruby")))
		waitFor(t, 30*time.Second, "the static pod's policy", func() bool {
			pol := e.Policy(src)
			return !pol.Provisional && ruleName(pol) == "ruby"
		})
	})

	t.Run("deleted pod still enriched within grace", func(t *testing.T) {
		p := create(clusterPod("batch", "short-job-x7"))
		waitFor(t, 30*time.Second, "pod cached", func() bool {
			m, _ := e.cache.lookup(source(p.Namespace, p.Name, string(p.UID), "app", ""))
			return m != nil
		})
		if _, d := send(t, p, "app"); d.sub("labels")["app"] != p.Name {
			t.Fatalf("batch before delete: %v", d.m)
		}
		zero := int64(0)
		if err := c.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "delete event seen", func() bool {
			_, res := e.cache.lookup(source(p.Namespace, p.Name, string(p.UID), "app", ""))
			return res == resultDeletedGrace
		})
		// The scenario, not a synchronisation: the pod's last lines are
		// read 100 ms after it is gone.
		time.Sleep(100 * time.Millisecond)
		was := lookups(resultDeletedGrace)
		if _, d := send(t, p, "app"); d.sub("labels")["app"] != p.Name || d.str("pod_id") != string(p.UID) {
			t.Errorf("batch after delete: %v", d.m)
		}
		if got := lookups(resultDeletedGrace) - was; got != 1 {
			t.Errorf("deleted_grace lookups +%v, want +1", got)
		}
	})

	t.Run("kubectl apply's last-applied-configuration not copied", func(t *testing.T) {
		manifest := filepath.Join(t.TempDir(), "pod.yaml")
		if err := os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Pod
metadata:
  name: applied
  namespace: shop
  annotations:
    note: kept
spec:
  nodeName: `+testNode+`
  containers:
    - name: app
      image: example.com/app:1
`), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := c.Kubectl(t, "apply", "-f", manifest); err != nil {
			t.Fatalf("kubectl apply: %v %s", err, out)
		}
		p, err := c.Client.CoreV1().Pods("shop").Get(ctx, "applied", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Annotations[lastAppliedAnnotation] == "" {
			t.Fatalf("kubectl apply wrote no %s: %v", lastAppliedAnnotation, p.Annotations)
		}
		waitFor(t, 30*time.Second, "pod cached", func() bool {
			m, _ := e.cache.lookup(source(p.Namespace, p.Name, string(p.UID), "app", ""))
			return m != nil
		})
		_, d := send(t, p, "app")
		if a := d.sub("annotations"); a["note"] != "kept" || a[lastAppliedAnnotation] != nil {
			t.Errorf("annotations %v: want note, without %s", a, lastAppliedAnnotation)
		}
		obj, ok, err := e.inf.Load().pod.GetStore().GetByKey("shop/applied")
		if err != nil || !ok {
			t.Fatalf("informer store: %v %v", ok, err)
		}
		if _, held := obj.(*corev1.Pod).Annotations[lastAppliedAnnotation]; held {
			t.Errorf("the informer's store holds %s", lastAppliedAnnotation)
		}
	})

	t.Run("benchmark pods are valid: no API warnings", func(t *testing.T) {
		// BenchmarkInformerMemory creates thousands of realisticPods; a
		// warning per pod (client-go prints each) buried its output.
		var warnings warningLog
		cfg := rest.CopyConfig(c.Config)
		cfg.WarningHandlerWithContext = &warnings
		admin, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i, node := range []string{testNode, "node-b"} {
			if _, err := admin.CoreV1().Pods("batch").Create(ctx, realisticPod("batch", i, node), metav1.CreateOptions{}); err != nil {
				t.Fatalf("create realistic pod: %v", err)
			}
		}
		if w := warnings.all(); len(w) != 0 {
			t.Errorf("the API server warned about realisticPod: %q", w)
		}
	})

	t.Run("requests: node-scoped list from the watch cache, then watch; no per-pod GET", func(t *testing.T) {
		var podLists, podWatches int
		for _, r := range reqs.all() {
			path, query, _ := strings.Cut(r, "?")
			q, _ := url.ParseQuery(query)
			method, p, _ := strings.Cut(path, " ")
			switch {
			case strings.HasSuffix(p, "/pods") && method == "GET":
				if q.Get("fieldSelector") != "spec.nodeName="+testNode {
					t.Errorf("pod request without the node's field selector: %s", r)
				}
				if q.Get("watch") == "true" {
					podWatches++
					continue
				}
				podLists++
				if q.Get("resourceVersion") != "0" {
					t.Errorf("pod list not served from the watch cache (resourceVersion=%q): %s", q.Get("resourceVersion"), r)
				}
			case strings.Contains(p, "/pods/"):
				t.Errorf("per-pod request: %s", r)
			}
		}
		if podLists != 1 || podWatches < 1 {
			t.Errorf("%d pod lists and %d watches, want 1 and >= 1", podLists, podWatches)
		}
	})

	// Last: it changes the Enricher's configuration.
	t.Run("reconfigure: label lists applied, the new informers list from the watch cache", func(t *testing.T) {
		before := len(reqs.all())
		db := pods["db-0"]
		podLists := func() (n int) {
			for _, r := range reqs.all()[before:] {
				path, query, _ := strings.Cut(r, "?")
				q, _ := url.ParseQuery(query)
				if strings.HasSuffix(path, "/pods") && q.Get("watch") != "true" {
					n++
					if q.Get("resourceVersion") != "0" || q.Get("fieldSelector") != "spec.nodeName="+testNode {
						t.Errorf("pod list after Reconfigure: %s, want the node's pods from the watch cache", r)
					}
				}
			}
			return n
		}
		narrow := ecfg
		narrow.Labels = []string{"app"}
		if err := e.Reconfigure(narrow); err != nil {
			t.Fatal(err)
		}
		if _, d := send(t, db, "app"); len(d.sub("labels")) != 1 || d.sub("labels")["app"] != "db-0" {
			t.Errorf("labels right after narrowing: %v, want app only", d.sub("labels"))
		}
		waitFor(t, 30*time.Second, "the new informers' pod list", func() bool { return e.inf.Load().podReg.HasSynced() })
		if err := e.Reconfigure(ecfg); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "every label after widening again", func() bool {
			_, d := send(t, db, "app")
			return d.sub("labels")["controller-revision-hash"] == "db-6c5f"
		})
		waitFor(t, 30*time.Second, "the widened informers' pod list", func() bool { return e.inf.Load().podReg.HasSynced() })
		if n := podLists(); n != 2 {
			t.Errorf("%d pod lists for two reconfigurations, want 2", n)
		}
		if err := e.Ready(); err != nil {
			t.Errorf("Ready: %v", err)
		}
	})
}

// forwarder relays TCP connections from a loopback port to the API server,
// so a test can make the server unreachable and reachable again.
type forwarder struct {
	l     net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func forward(addr, target string) (*forwarder, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	f := &forwarder{l: l}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, in, out)
			f.mu.Unlock()
			f.wg.Add(2)
			go func() { defer f.wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
			go func() { defer f.wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return f, nil
}

// close stops accepting, cuts every relayed connection and waits for the
// relays to end.
func (f *forwarder) close() {
	f.l.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// TestClusterDegradedStart starts the Enricher while the API server is
// unreachable: it runs, forwards batches with path metadata, reports the
// degraded state, and syncs once the server is reachable.
func TestClusterDegradedStart(t *testing.T) {
	c := kubetest.Start(t)
	ctx := t.Context()
	_, saCfg := agentIdentity(t, c)
	p, err := c.Client.CoreV1().Pods("logagent").Create(ctx, clusterPod("logagent", "web"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// A loopback port nothing listens on yet.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	server, err := url.Parse(c.Server)
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(saCfg)
	cfg.Host = "https://" + addr
	client, err := NewClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ecfg := testConfig()
	ecfg.MissWait = 50 * time.Millisecond
	next := &recorder{}
	e, err := New(ecfg, client, next, prometheus.NewRegistry(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	e.SetPolicies(testPolicies(t)) // the "collector policies" subtest
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	defer stop()

	waitFor(t, time.Minute, "a failed list counted", func() bool {
		return value(t, e.m.watchRestarts.WithLabelValues(informerPods)) >= 1
	})
	if err := e.Ready(); err == nil || !strings.Contains(err.Error(), "degraded") {
		t.Errorf("Ready = %v, want degraded", err)
	}
	src := source("logagent", "web", string(p.UID), "app", "")
	b := batch(src, 1, nil)
	if err := e.Send(ctx, b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "batch released with path metadata", func() bool { return b.Acked() })
	if d := decode(t, b.Kubernetes); d.m["labels"] != nil || d.str("pod_name") != "web" {
		t.Errorf("degraded batch: %v", d.m)
	}

	// The server becomes reachable on the same address.
	f, err := forward(addr, server.Host)
	if err != nil {
		t.Fatalf("listen on %s again (taken meanwhile?): %v", addr, err)
	}
	defer func() { stop(); f.close() }()
	waitFor(t, 2*time.Minute, "Ready after the server came back", func() bool { return e.Ready() == nil })
	waitFor(t, 10*time.Second, "synced gauge set", func() bool { return value(t, e.m.synced.WithLabelValues(informerPods)) == 1 })
	b = batch(src, 1, nil)
	if err := e.Send(ctx, b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "batch delivered", func() bool { return b.Acked() })
	if d := decode(t, b.Kubernetes); d.sub("labels")["app"] != "web" {
		t.Errorf("batch after recovery not enriched: %v", d.m)
	}
}
