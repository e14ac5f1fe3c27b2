package enrich

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// sendOne sends one record of src through te and returns its decoded
// metadata, nil when the batch was excluded (acknowledged, not delivered).
func (te *testEnricher) sendOne(t *testing.T, src sourceArgs) *decoded {
	t.Helper()
	before := te.next.len()
	var acks sync.WaitGroup
	b := batch(source(src.ns, src.pod, src.uid, "app", ""), 1, &acks)
	if err := te.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	acks.Wait()
	if te.next.len() == before {
		return nil
	}
	d := decode(t, b.Kubernetes)
	return &d
}

type sourceArgs struct{ ns, pod, uid string }

// The settings the batch path reads apply to the next batch; the filters
// apply at once where they drop something, and after the informers list
// again where they add something; the lists come again from new informers.
func TestReconfigureLive(t *testing.T) {
	cfg := testConfig()
	cfg.Labels = []string{"app"}
	cfg.Annotations = []string{"note"}
	web := sourceArgs{"shop", "web", "u-1"}
	te := startEnricher(t, cfg,
		newPod("shop", "web", "u-1", labelled("tier", "front"), annotated("note", "n1"), annotated("owner", "o1")),
		newPod("other", "job", "u-2"),
		namespace("shop", map[string]string{"app": "shop", "team": "t1"}))
	waitFor(t, 5*time.Second, "namespace labels", func() bool {
		d := te.sendOne(t, web)
		return d != nil && len(d.sub("namespace_labels")) > 0
	})
	d := te.sendOne(t, web)
	if !equalKeys(d.sub("labels"), "app") || !equalKeys(d.sub("annotations"), "note") {
		t.Fatalf("before: labels %v, annotations %v; want app, note", d.sub("labels"), d.sub("annotations"))
	}
	watches := func() int { te.client.mu.Lock(); defer te.client.mu.Unlock(); return te.client.watches["pods"] }
	w0 := watches()

	// Wider lists: the informers list again and keep what they dropped.
	cfg.Labels = []string{"*"}
	cfg.Annotations = []string{"note", "owner"}
	cfg.ExcludeNamespaces = []string{"other"}
	if err := te.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if te.sendOne(t, sourceArgs{"other", "job", "u-2"}) != nil {
		t.Error("exclude_namespaces not applied to the next batch")
	}
	waitFor(t, 5*time.Second, "the wider lists after the relist", func() bool {
		d := te.sendOne(t, web)
		return d.sub("labels")["tier"] == "front" && d.sub("annotations")["owner"] == "o1" && d.sub("namespace_labels")["team"] == "t1"
	})
	if watches() <= w0 {
		t.Errorf("pod watches %d, before %d: the informers were not started again", watches(), w0)
	}
	if err := te.Ready(); err != nil {
		t.Errorf("Ready after the relist: %v", err)
	}

	// Narrower lists: applied when Reconfigure returns.
	cfg.Labels = []string{"tier"}
	cfg.Annotations = nil
	if err := te.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	d = te.sendOne(t, web)
	if !equalKeys(d.sub("labels"), "tier") || d.m["annotations"] != nil || d.m["namespace_labels"] != nil {
		t.Errorf("narrowed at once: labels %v, annotations %v, namespace_labels %v; want tier only, none, none",
			d.sub("labels"), d.m["annotations"], d.m["namespace_labels"])
	}

	// namespace_labels off: no namespace informer, no namespace labels.
	cfg.Labels = []string{"*"}
	cfg.NamespaceLabels = false
	if err := te.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	waitFor(t, 5*time.Second, "labels back, without namespace labels", func() bool {
		d := te.sendOne(t, web)
		return d.sub("labels")["tier"] == "front" && d.m["namespace_labels"] == nil
	})
	if te.inf.Load().ns != nil {
		t.Error("a namespace informer runs with namespace_labels off")
	}
	// ... and on again.
	cfg.NamespaceLabels = true
	if err := te.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	waitFor(t, 5*time.Second, "namespace labels back", func() bool {
		return te.sendOne(t, web).sub("namespace_labels")["team"] == "t1"
	})
	if got := te.lookups(t, resultMiss); got != 0 {
		t.Errorf("%v lookups missed while the informers were replaced, want 0", got)
	}
}

// Settings that need another client or node stay as they are, named; the
// others apply. An invalid configuration changes nothing.
func TestReconfigureNotLiveAndInvalid(t *testing.T) {
	cfg := testConfig()
	te := startEnricher(t, cfg, newPod("shop", "web", "u-1"), newPod("other", "job", "u-2"))
	job := sourceArgs{"other", "job", "u-2"}

	bad := cfg
	bad.ExcludeNamespaces = []string{"other"}
	bad.MissWait = 2 * time.Hour
	err := te.Reconfigure(bad)
	if err == nil || IsNotLive(err) {
		t.Fatalf("invalid miss_wait: %v, want a refusal", err)
	}
	if te.sendOne(t, job) == nil {
		t.Error("a refused configuration's exclude_namespaces was applied")
	}

	next := cfg
	next.Kubeconfig = "/elsewhere/kubeconfig"
	next.NodeName = "node-z"
	next.ExcludeNamespaces = []string{"other"}
	err = te.Reconfigure(next)
	var nl *NotLiveError
	if !errors.As(err, &nl) || !slices.Equal(nl.Keys, []string{"node_name", "enrich.kubeconfig"}) {
		t.Fatalf("Reconfigure: %v, want a NotLiveError naming node_name and enrich.kubeconfig", err)
	}
	if te.sendOne(t, job) != nil {
		t.Error("exclude_namespaces not applied beside the settings that cannot change")
	}
	if d := te.sendOne(t, sourceArgs{"shop", "web", "u-1"}); d == nil || d.str("pod_name") != "web" {
		t.Errorf("after a partial reconfiguration: %v", d)
	}

	te.stop()
	if err := te.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := te.Reconfigure(cfg); !errors.Is(err, ErrClosed) {
		t.Errorf("Reconfigure after Close: %v, want ErrClosed", err)
	}
}

// A shorter deleted_grace applies to pods already in their grace period.
func TestReconfigureGrace(t *testing.T) {
	cfg := testConfig()
	cfg.DeletedGrace = time.Hour
	p := newPod("shop", "web", "u-1")
	te := startEnricher(t, cfg, p)
	if err := te.client.CoreV1().Pods("shop").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	src := source("shop", "web", "u-1", "app", "")
	waitFor(t, 5*time.Second, "the deletion", func() bool {
		_, res := te.cache.lookup(src)
		return res == resultDeletedGrace
	})
	cfg.DeletedGrace = 50 * time.Millisecond
	if err := te.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the deleted pod forgotten after the new grace", func() bool {
		return value(t, te.m.podsCached) == 0
	})
}

// Pods and namespaces that a new informer's list no longer holds were
// deleted while no informer watched: the pods get their grace period, the
// namespaces are forgotten.
func TestReconcileAfterRelist(t *testing.T) {
	c := newPodCache(testNode, time.Hour, newFilters(testConfig(), nil, new([]string)), newMetrics(nil), nil)
	for _, p := range []*corev1.Pod{newPod("shop", "kept", "u-1"), newPod("shop", "gone", "u-2")} {
		c.upsertPod(p)
	}
	c.upsertNamespace(namespace("shop", nil))
	c.upsertNamespace(namespace("old", nil))
	c.reconcile(map[string]bool{"u-1": true}, map[string]bool{"shop": true})
	if _, res := c.lookup(source("shop", "kept", "u-1", "app", "")); res != resultHit {
		t.Errorf("listed pod: %s, want hit", res)
	}
	if _, res := c.lookup(source("shop", "gone", "u-2", "app", "")); res != resultDeletedGrace {
		t.Errorf("pod missing from the list: %s, want deleted_grace", res)
	}
	if c.namespaces["old"] != nil || c.namespaces["shop"] == nil {
		t.Errorf("namespaces after reconcile: %v", c.namespaces)
	}
}

// equalKeys reports whether m has exactly keys.
func equalKeys(m map[string]any, keys ...string) bool {
	if len(m) != len(keys) {
		return false
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}
