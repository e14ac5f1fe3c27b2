package enrich

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/logagent/logagent/collector"
)

func TestSendHitEnrichesAndSharesBytes(t *testing.T) {
	te := startEnricher(t, testConfig(),
		newPod("shop", "web-5d8f7c9b6-x2x", "u-1", labelled("pod-template-hash", "5d8f7c9b6"),
			ownedBy("ReplicaSet", "web-5d8f7c9b6"), status("app", "containerd://c1", "")),
		namespace("shop", map[string]string{"team": "t1"}))
	waitFor(t, 5*time.Second, "namespace labels applied", func() bool {
		m, _ := te.cache.lookup(source("shop", "web-5d8f7c9b6-x2x", "u-1", "app", ""))
		return m != nil && len(m.fields.nsLabels) == 1
	})
	src := source("shop", "web-5d8f7c9b6-x2x", "u-1", "app", "c1")
	b1, b2 := batch(src, 3, nil), batch(src, 3, nil)
	for _, b := range []*collector.Batch{b1, b2} {
		if err := te.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	// A hit is delivered synchronously.
	if got := te.next.len(); got != 2 {
		t.Fatalf("delivered %d batches, want 2", got)
	}
	if &b1.Kubernetes[0] != &b2.Kubernetes[0] {
		t.Error("batches of one container do not share the encoded map")
	}
	d := decode(t, b1.Kubernetes)
	if d.str("pod_id") != "u-1" || d.str("container_id") != "c1" || d.str("pod_ip") != "10.1.0.7" || d.str("host") != testNode {
		t.Errorf("kubernetes = %v", d.m)
	}
	if o := d.sub("owner"); o["kind"] != "Deployment" || o["name"] != "web" {
		t.Errorf("owner = %v", o)
	}
	if d.sub("labels")["app"] != "web-5d8f7c9b6-x2x" || d.sub("namespace_labels")["team"] != "t1" {
		t.Errorf("labels %v, namespace_labels %v", d.sub("labels"), d.sub("namespace_labels"))
	}
	if got := te.lookups(t, resultHit); got != 2 {
		t.Errorf("hits = %v, want 2", got)
	}
	if got := value(t, te.m.podsCached); got != 1 {
		t.Errorf("pods cached = %v, want 1", got)
	}
}

func TestLabelChangeReencodes(t *testing.T) {
	te := startEnricher(t, testConfig(), newPod("shop", "web", "u-1"))
	src := source("shop", "web", "u-1", "app", "")
	send := func() decoded {
		t.Helper()
		b := batch(src, 1, nil)
		if err := te.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		return decode(t, b.Kubernetes)
	}
	if got := send().sub("labels")["version"]; got != nil {
		t.Fatalf("version label before the change: %v", got)
	}
	pod, err := te.client.CoreV1().Pods("shop").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Labels["version"] = "v2"
	if _, err := te.client.CoreV1().Pods("shop").Update(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "label change picked up", func() bool { return send().sub("labels")["version"] == "v2" })
}

func TestNamespaceLabelChangeReencodes(t *testing.T) {
	te := startEnricher(t, testConfig(), newPod("shop", "web", "u-1"), namespace("shop", nil))
	src := source("shop", "web", "u-1", "app", "")
	ns, err := te.client.CoreV1().Namespaces().Get(context.Background(), "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels = map[string]string{"env": "prod"}
	if _, err := te.client.CoreV1().Namespaces().Update(context.Background(), ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "namespace label applied", func() bool {
		b := batch(src, 1, nil)
		if err := te.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		return decode(t, b.Kubernetes).sub("namespace_labels")["env"] == "prod"
	})
}

func TestOtherNodesPodsNotCached(t *testing.T) {
	cfg := testConfig()
	cfg.MissWait = 0
	te := startEnricher(t, cfg, newPod("shop", "here", "u-1"), newPod("shop", "there", "u-2", onNode("node-b")))
	if m, _ := te.cache.lookup(source("shop", "there", "u-2", "app", "")); m != nil {
		t.Error("node-b's pod is cached")
	}
	if got := value(t, te.m.podsCached); got != 1 {
		t.Errorf("pods cached = %v, want 1", got)
	}
}

func TestStaticPodFoundByMirrorUID(t *testing.T) {
	// The kubelet writes a static pod's logs under its own uid; the API's
	// mirror pod has another uid and names the kubelet's in an annotation.
	te := startEnricher(t, testConfig(), newPod("kube-system", "etcd-node-a", "mirror-uid", annotated(mirrorAnnotation, "static-hash")))
	b := batch(source("kube-system", "etcd-node-a", "static-hash", "app", ""), 1, nil)
	if err := te.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if d := decode(t, b.Kubernetes); d.str("pod_id") != "mirror-uid" || d.sub("labels")["app"] != "etcd-node-a" {
		t.Errorf("static pod batch: %v", d.m)
	}
}

// TestExclusion: the namespace label and the configured namespaces always
// exclude; a pod's own logagent.io/exclude and logagent.io/exclude-containers
// annotations only with allow_pod_exclusion (off by default: then those
// pods' batches are delivered, enriched).
func TestExclusion(t *testing.T) {
	for _, allow := range []bool{true, false} {
		t.Run(fmt.Sprintf("allow_pod_exclusion=%v", allow), func(t *testing.T) {
			cfg := testConfig()
			cfg.ExcludeNamespaces = []string{"kube-*"}
			cfg.AllowPodExclusion = allow
			te := startEnricher(t, cfg,
				newPod("shop", "quiet", "u-1", annotated(excludeKey, "true")),
				newPod("shop", "mixed", "u-2", withContainers("app", "side"), annotated(excludeContainersKey, "side")),
				newPod("muted", "any", "u-3"),
				namespace("shop", nil), namespace("muted", map[string]string{excludeKey: "true"}))
			waitFor(t, 5*time.Second, "namespace label applied", func() bool {
				m, _ := te.cache.lookup(source("muted", "any", "u-3", "app", ""))
				return m != nil && m.sel.reason == reasonNamespaceLabel
			})
			send := func(src *collector.Source, n int) *collector.Batch {
				b := batch(src, n, nil)
				if err := te.Send(context.Background(), b); err != nil {
					t.Fatal(err)
				}
				return b
			}
			byPod := []*collector.Batch{ // the pods' own choice
				send(source("shop", "quiet", "u-1", "app", ""), 2),
				send(source("shop", "mixed", "u-2", "side", ""), 3),
			}
			dropped := []*collector.Batch{
				send(source("muted", "any", "u-3", "app", ""), 4),
				// Excluded by configuration from the path alone: the pod is unknown.
				send(source("kube-system", "coredns", "u-9", "app", ""), 5),
			}
			kept := send(source("shop", "mixed", "u-2", "app", ""), 1)
			want := []*collector.Batch{kept}
			wantByPod := map[string]float64{reasonPodAnnotation: 2, reasonContainerAnnotation: 3}
			if allow {
				dropped = append(dropped, byPod...)
			} else {
				want = append(byPod, kept)
				wantByPod = map[string]float64{reasonPodAnnotation: 0, reasonContainerAnnotation: 0}
			}
			for i, b := range dropped {
				if !b.Acked() {
					t.Errorf("excluded batch %d not acknowledged", i)
				}
			}
			got := te.next.get()
			if !slices.Equal(got, want) {
				t.Fatalf("delivered %d batches, want %d", len(got), len(want))
			}
			if !allow {
				if d := decode(t, byPod[1].Kubernetes); d.str("container_name") != "side" || d.str("pod_name") != "mixed" {
					t.Errorf("mixed/side: kubernetes = %v", d.m)
				}
			}
			wantByPod[reasonNamespaceLabel], wantByPod[reasonNamespaceConfig] = 4, 5
			for reason, want := range wantByPod {
				if got := te.excludedRecords(t, reason); got != want {
					t.Errorf("excluded records{%s} = %v, want %v", reason, got, want)
				}
			}
		})
	}
}

// TestLastAppliedConfigurationNotCopied: kubectl's whole-manifest annotation
// stays out of records by default, other annotations are copied; an empty
// exclude_annotations copies it too.
func TestLastAppliedConfigurationNotCopied(t *testing.T) {
	const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"
	manifest := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},"spec":{"containers":[{"name":"app","image":"example.com/app:1"}]}}`
	for _, tc := range []struct {
		name    string
		exclude []string
		want    bool
	}{
		{"default", DefaultConfig().ExcludeAnnotations, false},
		{"exclude_annotations: []", []string{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.ExcludeAnnotations = tc.exclude
			te := startEnricher(t, cfg, newPod("shop", "web", "u-1", annotated(lastApplied, manifest), annotated("note", "n")))
			b := batch(source("shop", "web", "u-1", "app", ""), 1, nil)
			if err := te.Send(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			a := decode(t, b.Kubernetes).sub("annotations")
			if a["note"] != "n" {
				t.Errorf("annotations %v: note missing", a)
			}
			if _, got := a[lastApplied]; got != tc.want {
				t.Errorf("last-applied-configuration copied = %v, want %v (annotations %v)", got, tc.want, a)
			}
		})
	}
}

func TestNamespaceLabelsOff(t *testing.T) {
	cfg := testConfig()
	cfg.NamespaceLabels = false
	te := startEnricher(t, cfg, newPod("shop", "web", "u-1"), namespace("shop", map[string]string{"team": "t"}))
	if te.client.watching("namespaces") {
		t.Error("namespace informer runs with namespace_labels off")
	}
	b := batch(source("shop", "web", "u-1", "app", ""), 1, nil)
	if err := te.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if d := decode(t, b.Kubernetes); d.m["namespace_labels"] != nil || d.sub("labels")["app"] != "web" {
		t.Errorf("kubernetes = %v", d.m)
	}
}

func TestLabelAnnotationAllowLists(t *testing.T) {
	cfg := testConfig()
	cfg.Labels = []string{"team"}
	cfg.Annotations = []string{}
	te := startEnricher(t, cfg, newPod("shop", "web", "u-1", labelled("team", "t"), annotated("note", "n")))
	b := batch(source("shop", "web", "u-1", "app", ""), 1, nil)
	if err := te.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	d := decode(t, b.Kubernetes)
	if l := d.sub("labels"); len(l) != 1 || l["team"] != "t" {
		t.Errorf("labels = %v", l)
	}
	if d.m["annotations"] != nil {
		t.Errorf("annotations = %v", d.m["annotations"])
	}
}

func TestGraceAfterDelete(t *testing.T) {
	cfg := testConfig()
	cfg.DeletedGrace = 300 * time.Millisecond
	cfg.MissWait = 0
	te := startEnricher(t, cfg, newPod("batch", "job-x", "u-1"))
	src := source("batch", "job-x", "u-1", "app", "")
	if err := te.client.CoreV1().Pods("batch").Delete(context.Background(), "job-x", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "delete seen", func() bool {
		_, res := te.cache.lookup(src)
		return res != resultHit
	})
	te.cache.mu.RLock()
	deletedAt := time.Unix(0, te.cache.pods["u-1"].deletedAt.Load())
	te.cache.mu.RUnlock()
	b := batch(src, 1, nil)
	if err := te.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if time.Since(deletedAt) < cfg.DeletedGrace { // not past the grace period (a slow machine may be)
		if d := decode(t, b.Kubernetes); d.sub("labels")["app"] != "job-x" {
			t.Errorf("batch after delete not enriched: %v", d.m)
		}
		if got := te.lookups(t, resultDeletedGrace); got != 1 {
			t.Errorf("deleted_grace lookups = %v, want 1", got)
		}
	}
	// After the grace period the pod is forgotten (by the janitor too).
	waitFor(t, 5*time.Second, "pod forgotten", func() bool { return value(t, te.m.podsCached) == 0 })
	b = batch(src, 1, nil)
	if err := te.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Kubernetes, src.Kubernetes) {
		t.Error("batch after the grace period not left with path metadata")
	}
}

// TestNamespaceChurnLeavesNothing: a cluster whose CI namespaces come and go
// (each with a pod on this node, some excluded by their label) leaves enrich
// with the series it started with, none naming a namespace, and an empty
// cache once the pods' grace has passed.
func TestNamespaceChurnLeavesNothing(t *testing.T) {
	const n = 40
	cfg := testConfig()
	cfg.DeletedGrace = 50 * time.Millisecond
	reg := prometheus.NewRegistry()
	te := startEnricherWith(t, cfg, reg)
	series := func() (count int, labels []string) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				count++
				for _, l := range m.GetLabel() {
					labels = append(labels, mf.GetName()+"{"+l.GetName()+"="+l.GetValue()+"}")
				}
			}
		}
		return count, labels
	}
	before, _ := series()

	ctx := context.Background()
	var pods []*corev1.Pod
	for i := range n {
		ns := fmt.Sprintf("ci-%d", i)
		var labels map[string]string
		if i%4 == 0 {
			labels = map[string]string{excludeKey: "true"}
		}
		if _, err := te.client.CoreV1().Namespaces().Create(ctx, namespace(ns, labels), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p, err := te.client.CoreV1().Pods(ns).Create(ctx, newPod(ns, "job", fmt.Sprintf("u-%d", i)), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	waitFor(t, 10*time.Second, "pods and namespaces cached", func() bool {
		te.cache.mu.RLock()
		defer te.cache.mu.RUnlock()
		return len(te.cache.pods) == n && len(te.cache.namespaces) == n
	})
	for _, p := range pods {
		if err := te.Send(ctx, batch(source(p.Namespace, p.Name, string(p.UID), "app", ""), 1, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if got := te.excludedRecords(t, reasonNamespaceLabel); got != n/4 {
		t.Errorf("excluded by namespace label %v, want %d", got, n/4)
	}
	if got := te.next.len(); got != n-n/4 {
		t.Errorf("delivered %d batches, want %d", got, n-n/4)
	}
	if count, labels := series(); count != before {
		t.Errorf("%d series with %d namespaces, %d before: %q", count, n, before, labels)
	} else {
		for _, l := range labels {
			if strings.Contains(l, "ci-") || strings.Contains(l, "{namespace=") {
				t.Errorf("series names a namespace: %s", l)
			}
		}
	}

	for _, p := range pods {
		if err := te.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := te.client.CoreV1().Namespaces().Delete(ctx, p.Namespace, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "cache emptied", func() bool {
		te.cache.mu.RLock()
		defer te.cache.mu.RUnlock()
		return len(te.cache.pods)+len(te.cache.byUID)+len(te.cache.byName)+len(te.cache.namespaces) == 0
	})
	if got := value(t, te.m.podsCached); got != 0 {
		t.Errorf("pods_cached = %v after every pod is gone", got)
	}
	if count, labels := series(); count != before {
		t.Errorf("%d series after the namespaces are gone, %d before: %q", count, before, labels)
	}
}

func TestNoGraceForgetsAtOnce(t *testing.T) {
	cfg := testConfig()
	cfg.DeletedGrace = 0
	te := startEnricher(t, cfg, newPod("batch", "job-x", "u-1"))
	if err := te.client.CoreV1().Pods("batch").Delete(context.Background(), "job-x", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "pod forgotten", func() bool {
		m, _ := te.cache.lookup(source("batch", "job-x", "u-1", "app", ""))
		return m == nil
	})
}

func TestMissWaitReleasesWithPathMetadata(t *testing.T) {
	cfg := testConfig()
	cfg.MissWait = 50 * time.Millisecond
	te := startEnricher(t, cfg)
	src := source("shop", "ghost", "u-404", "app", "id1")
	b1 := batch(src, 1, nil)
	if err := te.Send(context.Background(), b1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "parked batch released", func() bool { return te.next.len() == 1 })
	if !bytes.Equal(b1.Kubernetes, src.Kubernetes) {
		t.Error("released batch does not carry the path metadata")
	}
	// The pod gave up waiting: its next batch goes straight on.
	b2 := batch(src, 1, nil)
	if err := te.Send(context.Background(), b2); err != nil {
		t.Fatal(err)
	}
	if te.next.len() != 2 {
		t.Error("batch of a pod that already gave up waited again")
	}
	if got := te.lookups(t, resultMiss); got != 2 {
		t.Errorf("misses = %v, want 2", got)
	}
	// Once the pod shows up, its batches are enriched again.
	if _, err := te.client.CoreV1().Pods("shop").Create(context.Background(), newPod("shop", "ghost", "u-404"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "pod arrived", func() bool { m, _ := te.cache.lookup(src); return m != nil })
	b3 := batch(src, 1, nil)
	if err := te.Send(context.Background(), b3); err != nil {
		t.Fatal(err)
	}
	if d := decode(t, b3.Kubernetes); d.sub("labels")["app"] != "ghost" {
		t.Errorf("batch after the pod arrived: %v", d.m)
	}
}

// A pod's batches that wait for it keep their order, later batches of the
// pod queue behind them, and other pods' batches are not held up.
func TestLateArrivalKeepsOrder(t *testing.T) {
	cfg := testConfig()
	cfg.MissWait = maxMissWait // only the pod's arrival releases them
	te := startEnricher(t, cfg, newPod("shop", "known", "u-1"))
	src := source("shop", "new", "u-2", "app", "")
	var parked []*collector.Batch
	for range 3 {
		b := batch(src, 1, nil)
		parked = append(parked, b)
		if err := te.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if got := te.next.len(); got != 0 {
		t.Fatalf("%d batches of an unknown pod delivered before it arrived", got)
	}
	if got := value(t, te.m.parked); got != 3 {
		t.Errorf("parked gauge = %v, want 3", got)
	}
	other := batch(source("shop", "known", "u-1", "app", ""), 1, nil)
	if err := te.Send(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	if got := te.next.get(); len(got) != 1 || got[0] != other {
		t.Fatal("a known pod's batch was held up by another pod's wait")
	}
	if _, err := te.client.CoreV1().Pods("shop").Create(context.Background(), newPod("shop", "new", "u-2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "parked batches released", func() bool { return te.next.len() == 4 })
	got := te.next.get()[1:]
	for i := range parked {
		if got[i] != parked[i] {
			t.Fatalf("batch %d released out of order", i)
		}
		if d := decode(t, got[i].Kubernetes); d.sub("labels")["app"] != "new" {
			t.Errorf("late batch %d not enriched: %v", i, d.m)
		}
	}
	if l := te.lookups(t, resultLate); l != 3 {
		t.Errorf("late lookups = %v, want 3", l)
	}
	if got := value(t, te.m.parked); got != 0 {
		t.Errorf("parked gauge = %v, want 0", got)
	}
}

// Batches that keep coming while a pod's queue is released join it and keep
// their order.
func TestOrderWhileReleasing(t *testing.T) {
	cfg := testConfig()
	cfg.MissWait = maxMissWait
	client := newFakeClient()
	release := make(chan struct{})
	var mu sync.Mutex
	var seen []int64
	slow := collector.SinkFunc(func(ctx context.Context, b *collector.Batch) error {
		<-release // hold the releaser inside next.Send
		mu.Lock()
		seen = append(seen, b.Records[0].Time)
		mu.Unlock()
		return nil
	})
	e, err := New(cfg, client, slow, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 5*time.Second, "synced", func() bool { return e.Ready() == nil && client.watching("pods") })

	src := source("shop", "new", "u-2", "app", "")
	next := int64(0)
	send := func() {
		b := collector.NewBatch(src, []collector.Record{{Time: next}}, 1, nil)
		next++
		if err := e.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	send()
	send()
	if _, err := client.CoreV1().Pods("shop").Create(context.Background(), newPod("shop", "new", "u-2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	release <- struct{}{} // batch 0 delivered; the releaser is now in batch 1's Send or about to be
	for range 5 {
		send() // these must queue behind batch 1
	}
	close(release)
	waitFor(t, 5*time.Second, "all delivered", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 7 })
	send() // fast path now
	mu.Lock()
	defer mu.Unlock()
	for i, ts := range seen {
		if ts != int64(i) {
			t.Fatalf("delivery order %v", seen)
		}
	}
	if len(seen) != 8 {
		t.Errorf("delivered %d, want 8", len(seen))
	}
}

func TestCloseReleasesParked(t *testing.T) {
	cfg := testConfig()
	cfg.MissWait = maxMissWait
	te := startEnricher(t, cfg)
	src := source("shop", "new", "u-2", "app", "")
	var acks sync.WaitGroup
	for range 3 {
		if err := te.Send(context.Background(), batch(src, 1, &acks)); err != nil {
			t.Fatal(err)
		}
	}
	if te.next.len() != 0 {
		t.Fatal("parked batches delivered early")
	}
	if err := te.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if te.next.len() != 3 {
		t.Fatalf("Close released %d of 3 batches", te.next.len())
	}
	acks.Wait() // the recorder acked every one
	for _, b := range te.next.get() {
		if !bytes.Equal(b.Kubernetes, src.Kubernetes) {
			t.Error("batch released at Close without path metadata")
		}
	}
	if err := te.Send(context.Background(), batch(src, 1, nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
}

func TestCloseHonoursContext(t *testing.T) {
	cfg := testConfig()
	cfg.MissWait = maxMissWait
	blocked := collector.SinkFunc(func(ctx context.Context, b *collector.Batch) error {
		<-ctx.Done()
		return ctx.Err()
	})
	e, err := New(cfg, newFakeClient(), blocked, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := batch(source("shop", "new", "u-2", "app", ""), 1, nil)
	if err := e.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.Close(ctx); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 batches not released") {
		t.Errorf("Close = %v", err)
	}
	if b.Acked() {
		t.Error("a batch the next stage refused was acknowledged")
	}
}

// With no API server reachable the agent still runs: Ready says why, batches
// go on with path metadata after the bounded wait, the informer retries.
func TestDegradedStart(t *testing.T) {
	// A loopback port with nothing listening: connections are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	client, err := NewClientForConfig(&rest.Config{Host: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.MissWait = 20 * time.Millisecond
	next := &recorder{}
	e, err := New(cfg, client, next, prometheus.NewRegistry(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Ready(); err == nil {
		t.Error("Ready before Run = nil")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	waitFor(t, 10*time.Second, "a failed list counted", func() bool {
		return value(t, e.m.watchRestarts.WithLabelValues(informerPods)) >= 1
	})
	err = e.Ready()
	if err == nil || !strings.Contains(err.Error(), "degraded") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Ready = %v, want a degraded error naming the failure", err)
	}
	src := source("shop", "web", "u-1", "app", "")
	var acks sync.WaitGroup
	if err := e.Send(context.Background(), batch(src, 2, &acks)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "batch released with path metadata", func() bool { return next.len() == 1 })
	acks.Wait()
	if !bytes.Equal(next.get()[0].Kubernetes, src.Kubernetes) {
		t.Error("batch does not carry the path metadata")
	}
	if got := value(t, e.m.synced.WithLabelValues(informerPods)); got != 0 {
		t.Errorf("synced gauge = %v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestNewClient(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := NewClient(""); err == nil || !strings.Contains(err.Error(), "in-cluster") {
		t.Errorf("NewClient outside a cluster = %v", err)
	}
	if _, err := NewClient(t.TempDir() + "/missing"); err == nil || !strings.Contains(err.Error(), "enrich.kubeconfig") {
		t.Errorf("NewClient(missing file) = %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	next := &recorder{}
	cfg := testConfig()
	cfg.NodeName = ""
	if _, err := New(cfg, newFakeClient(), next, nil, nil); err == nil {
		t.Error("New without node_name succeeded")
	}
	if _, err := New(testConfig(), nil, next, nil, nil); err == nil {
		t.Error("New without a client succeeded")
	}
	te := startEnricher(t, testConfig())
	if err := te.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

// Until the namespace informer has synced, batches of cached pods wait (at
// most MissWait) so a namespace's exclusion label is not missed at start-up.
func TestWaitsForNamespacesAtStart(t *testing.T) {
	client := newFakeClient(newPod("muted", "p", "u-1"), namespace("muted", map[string]string{excludeKey: "true"}))
	// The fake serialises all calls, so a slow list cannot be a blocked one:
	// fail namespace lists until the test lets them through.
	var nsDown atomic.Bool
	nsDown.Store(true)
	client.PrependReactor("list", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		if nsDown.Load() {
			return true, nil, errors.New("namespaces unavailable")
		}
		return false, nil, nil // fall through to the tracker
	})
	cfg := testConfig()
	cfg.MissWait = maxMissWait
	next := &recorder{}
	e, err := New(cfg, client, next, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	src := source("muted", "p", "u-1", "app", "")
	waitFor(t, 5*time.Second, "pod cached", func() bool { m, _ := e.cache.lookup(src); return m != nil })
	if err := e.Ready(); err == nil || !strings.Contains(err.Error(), "namespaces") {
		t.Errorf("Ready = %v, want the namespace informer named", err)
	}
	b := batch(src, 2, nil)
	if err := e.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if b.Acked() || next.len() != 0 {
		t.Fatal("batch went on before namespace labels were known")
	}
	nsDown.Store(false)
	waitFor(t, 30*time.Second, "batch excluded", func() bool { return b.Acked() })
	if next.len() != 0 {
		t.Error("batch of an excluded namespace delivered")
	}
	if got := value(t, e.m.excluded.WithLabelValues(reasonNamespaceLabel)); got != 2 {
		t.Errorf("excluded records = %v, want 2", got)
	}
}
