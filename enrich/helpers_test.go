package enrich

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/tinylib/msgp/msgp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/logagent/logagent/collector"
)

const testNode = "node-a"

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorder is a next stage that keeps what it receives, in order, and acks it.
type recorder struct {
	mu      sync.Mutex
	batches []*collector.Batch
}

func (r *recorder) Send(_ context.Context, b *collector.Batch) error {
	r.mu.Lock()
	r.batches = append(r.batches, b)
	r.mu.Unlock()
	b.Ack()
	return nil
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.batches)
}

func (r *recorder) get() []*collector.Batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*collector.Batch(nil), r.batches...)
}

// source builds a file's Source with path metadata, as the collector would.
func source(ns, pod, uid, container, id string) *collector.Source {
	p := &podFields{namespace: ns, name: pod, uid: uid, host: testNode}
	return &collector.Source{
		Path:        fmt.Sprintf("/var/log/pods/%s_%s_%s/%s/0.log", ns, pod, uid, container),
		Namespace:   ns,
		Pod:         pod,
		PodUID:      uid,
		Container:   container,
		ContainerID: id,
		Node:        testNode,
		Kubernetes:  encode(p, containerFields{name: container, id: id}),
	}
}

// batch builds a batch of n records whose Ack is counted in acks.
func batch(src *collector.Source, n int, acks *sync.WaitGroup) *collector.Batch {
	recs := make([]collector.Record, n)
	for i := range recs {
		recs[i] = collector.Record{Time: int64(i), Log: []byte(fmt.Sprintf("line %d", i))}
	}
	if acks != nil {
		acks.Add(1)
		return collector.NewBatch(src, recs, n*10, acks.Done)
	}
	return collector.NewBatch(src, recs, n*10, nil)
}

// podOpt changes a test pod.
type podOpt func(*corev1.Pod)

func newPod(ns, name, uid string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName:   testNode,
			Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}},
		},
		Status: corev1.PodStatus{PodIP: "10.1.0.7"},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func onNode(n string) podOpt { return func(p *corev1.Pod) { p.Spec.NodeName = n } }

func annotated(k, v string) podOpt {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[k] = v
	}
}

func withContainers(names ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers = nil
		for _, n := range names {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n, Image: "example.com/" + n + ":1"})
		}
	}
}

func ownedBy(kind, name string) podOpt {
	return func(p *corev1.Pod) {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, UID: "owner-uid", Controller: &yes}}
	}
}

func labelled(k, v string) podOpt { return func(p *corev1.Pod) { p.Labels[k] = v } }

func status(name, id, lastID string) podOpt {
	return func(p *corev1.Pod) {
		s := corev1.ContainerStatus{Name: name, ContainerID: id, Image: "example.com/" + name + "@sha256:abc"}
		if lastID != "" {
			s.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: lastID}
		}
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, s)
	}
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// annotatedNamespace is a namespace with annotations.
func annotatedNamespace(name string, annotations map[string]string) *corev1.Namespace {
	ns := namespace(name, nil)
	ns.Annotations = annotations
	return ns
}

// fakeClient is a fake clientset whose watches report when they start: the
// fake tracker cannot resume a watch from a resource version, so objects made
// between the informer's list and its watch would be missed; tests create
// objects only after the watch is up.
type fakeClient struct {
	*fake.Clientset
	mu      sync.Mutex
	watches map[string]int
}

func newFakeClient(objs ...runtime.Object) *fakeClient {
	f := &fakeClient{Clientset: fake.NewClientset(objs...), watches: map[string]int{}}
	f.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		w, err := f.Tracker().Watch(a.GetResource(), a.GetNamespace())
		if err != nil {
			return false, nil, err
		}
		f.mu.Lock()
		f.watches[a.GetResource().Resource]++
		f.mu.Unlock()
		return true, w, nil
	})
	return f
}

func (f *fakeClient) List(ctx context.Context, resource string, o metav1.ListOptions) (runtime.Object, error) {
	return clientsetClient{f.Clientset}.List(ctx, resource, o)
}

func (f *fakeClient) Watch(ctx context.Context, resource string, o metav1.ListOptions) (watch.Interface, error) {
	return clientsetClient{f.Clientset}.Watch(ctx, resource, o)
}

// clientsetClient is a client-go clientset (a fake one, or one with its
// own configuration) as a Client.
type clientsetClient struct{ kubernetes.Interface }

func (c clientsetClient) List(ctx context.Context, resource string, o metav1.ListOptions) (runtime.Object, error) {
	switch resource {
	case "pods":
		return c.CoreV1().Pods(metav1.NamespaceAll).List(ctx, o)
	case "namespaces":
		return c.CoreV1().Namespaces().List(ctx, o)
	}
	return nil, fmt.Errorf("cannot list %q", resource)
}

func (c clientsetClient) Watch(ctx context.Context, resource string, o metav1.ListOptions) (watch.Interface, error) {
	switch resource {
	case "pods":
		return c.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, o)
	case "namespaces":
		return c.CoreV1().Namespaces().Watch(ctx, o)
	}
	return nil, fmt.Errorf("cannot watch %q", resource)
}

func (f *fakeClient) watching(resource string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watches[resource] > 0
}

// testEnricher runs an Enricher on a fake client until the test ends.
type testEnricher struct {
	*Enricher
	client *fakeClient
	next   *recorder
	cancel context.CancelFunc
	done   chan error
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.NodeName = testNode
	return cfg
}

func startEnricher(t *testing.T, cfg Config, objs ...runtime.Object) *testEnricher {
	t.Helper()
	return startEnricherWith(t, cfg, prometheus.NewRegistry(), objs...)
}

// startEnricherWith is startEnricher registering the metrics on reg.
func startEnricherWith(t *testing.T, cfg Config, reg prometheus.Registerer, objs ...runtime.Object) *testEnricher {
	t.Helper()
	return startEnricherSetup(t, cfg, reg, nil, objs...)
}

// startEnricherSetup is startEnricherWith calling setup (if not nil) on the
// Enricher before it runs.
func startEnricherSetup(t *testing.T, cfg Config, reg prometheus.Registerer, setup func(*Enricher), objs ...runtime.Object) *testEnricher {
	t.Helper()
	client := newFakeClient(objs...)
	next := &recorder{}
	e, err := New(cfg, client, next, reg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if setup != nil {
		setup(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	te := &testEnricher{Enricher: e, client: client, next: next, cancel: cancel, done: make(chan error, 1)}
	go func() { te.done <- e.Run(ctx) }()
	t.Cleanup(te.stop)
	waitFor(t, 10*time.Second, "informers synced", func() bool { return e.Ready() == nil })
	waitFor(t, 10*time.Second, "pod watch started", func() bool { return client.watching("pods") })
	if cfg.NamespaceLabels {
		waitFor(t, 10*time.Second, "namespace watch started", func() bool { return client.watching("namespaces") })
	}
	return te
}

func (te *testEnricher) stop() {
	if te.cancel == nil {
		return
	}
	te.cancel()
	<-te.done
	te.cancel = nil
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// value reads a counter or gauge.
func value(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func (te *testEnricher) lookups(t testing.TB, result string) float64 {
	return value(t, te.m.lookups.WithLabelValues(result))
}

func (te *testEnricher) excludedRecords(t testing.TB, reason string) float64 {
	return value(t, te.m.excluded.WithLabelValues(reason))
}

// decoded is a "kubernetes" map decoded for assertions, with its keys in
// encoding order.
type decoded struct {
	keys []string
	m    map[string]any
}

func decode(t testing.TB, b []byte) decoded {
	t.Helper()
	n, rest, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		t.Fatalf("decode map header: %v", err)
	}
	d := decoded{m: map[string]any{}}
	for range n {
		var k string
		var v any
		if k, rest, err = msgp.ReadStringBytes(rest); err != nil {
			t.Fatalf("decode key: %v", err)
		}
		if v, rest, err = msgp.ReadIntfBytes(rest); err != nil {
			t.Fatalf("decode %s: %v", k, err)
		}
		d.keys = append(d.keys, k)
		d.m[k] = v
	}
	if len(rest) != 0 {
		t.Fatalf("%d trailing bytes", len(rest))
	}
	return d
}

func (d decoded) str(k string) string {
	s, _ := d.m[k].(string)
	return s
}

func (d decoded) sub(k string) map[string]any {
	m, _ := d.m[k].(map[string]any)
	return m
}
