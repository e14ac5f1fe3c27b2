package enrich

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/logagent/logagent/collector"
)

// testPolicies are the collector's policies as a test configures them:
// java for shop's "api" containers, python for pods labelled
// lang=python, a 4 MiB/s default rate limit.
func testPolicies(t testing.TB) *collector.Policies {
	t.Helper()
	cfg := collector.DefaultConfig()
	cfg.Multiline.Select = []collector.MultilineSelect{
		{PodLabels: map[string]string{"lang": "py*"}, Rule: "python"},
		{Namespaces: []string{"shop"}, Containers: []string{"api"}, Rule: "java"},
	}
	cfg.Multiline.Rules = []collector.MultilineRuleConfig{{Name: "dated", StartPattern: `^\d{4}-`}}
	cfg.RateLimit.BytesPerSecond = 4 << 20
	p, err := collector.NewPolicies(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ruleName(p collector.Policy) string {
	if p.Multiline == nil {
		return "-"
	}
	return p.Multiline.Name()
}

// TestContainerPolicy: which annotation or configuration entry decides, and
// that a pod can lower its rate limit but never lift or raise it.
func TestContainerPolicy(t *testing.T) {
	p := testPolicies(t)
	const mib = 1 << 20
	for _, tc := range []struct {
		name          string
		ns, container string
		labels        map[string]string
		podAnn, nsAnn map[string]string
		rule          string
		rate, burst   int64
		errs          []string // annotations reported
	}{
		{name: "configuration select", ns: "shop", container: "api", rule: "java", rate: 4 * mib},
		{name: "configuration by pod label", ns: "other", container: "x", labels: map[string]string{"lang": "python3"}, rule: "python", rate: 4 * mib},
		{name: "pod labels unknown", ns: "other", container: "x", rule: "-", rate: 4 * mib},
		{name: "namespace annotation over configuration", ns: "shop", container: "api", nsAnn: map[string]string{multilineKey: "go"}, rule: "go", rate: 4 * mib},
		{name: "pod annotation over namespace's", ns: "shop", container: "api",
			podAnn: map[string]string{multilineKey: "nodejs"}, nsAnn: map[string]string{multilineKey: "go"}, rule: "nodejs", rate: 4 * mib},
		{name: "container annotation over pod's", ns: "shop", container: "api",
			podAnn: map[string]string{multilineKey: "nodejs", multilineContainerPrefix + "api": "ruby,python"}, rule: "python,ruby", rate: 4 * mib},
		{name: "another container's annotation does not apply", ns: "shop", container: "api",
			podAnn: map[string]string{multilineContainerPrefix + "sidecar": "go"}, rule: "java", rate: 4 * mib},
		{name: "none turns joining off", ns: "shop", container: "api", podAnn: map[string]string{multilineKey: "none"}, rule: "-", rate: 4 * mib},
		{name: "custom rule by name", ns: "x", container: "y", podAnn: map[string]string{multilineKey: "dated"}, rule: "dated", rate: 4 * mib},
		{name: "unknown rule ignored and reported", ns: "shop", container: "api",
			podAnn: map[string]string{multilineKey: "cobol"}, nsAnn: map[string]string{multilineKey: "go"}, rule: "go", rate: 4 * mib, errs: []string{multilineKey}},
		{name: "namespace sets the rate and burst", ns: "x", container: "y",
			nsAnn: map[string]string{rateLimitKey: "500KiB/s", rateLimitBurstKey: "1MiB"}, rule: "-", rate: 500 << 10, burst: mib},
		{name: "namespace lifts the limit", ns: "x", container: "y", nsAnn: map[string]string{rateLimitKey: "none"}, rule: "-"},
		{name: "pod lowers", ns: "x", container: "y", podAnn: map[string]string{rateLimitKey: "1Mi"}, rule: "-", rate: mib},
		{name: "pod cannot raise", ns: "x", container: "y", podAnn: map[string]string{rateLimitKey: "64MiB"}, rule: "-", rate: 4 * mib},
		{name: "pod cannot lift", ns: "x", container: "y", podAnn: map[string]string{rateLimitKey: "none"}, rule: "-", rate: 4 * mib, errs: []string{rateLimitKey}},
		{name: "pod lowers below the namespace's", ns: "x", container: "y",
			podAnn: map[string]string{rateLimitKey: "100k"}, nsAnn: map[string]string{rateLimitKey: "8MiB"}, rule: "-", rate: 100000},
		{name: "pod limits an unlimited namespace", ns: "x", container: "y",
			podAnn: map[string]string{rateLimitKey: "2MiB", rateLimitBurstKey: "4MiB"}, nsAnn: map[string]string{rateLimitKey: "off"}, rule: "-", rate: 2 * mib, burst: 4 * mib},
		{name: "bad sizes ignored and reported", ns: "x", container: "y",
			podAnn: map[string]string{rateLimitKey: "fast", rateLimitBurstKey: "-1"}, nsAnn: map[string]string{rateLimitKey: "2 parsecs"},
			rule: "-", rate: 4 * mib, errs: []string{rateLimitKey, rateLimitBurstKey, rateLimitKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var errs []string
			pol := containerPolicy(p, tc.ns, tc.container, tc.labels, tc.podAnn, tc.nsAnn, func(e annotationError) { errs = append(errs, e.key) })
			if ruleName(pol) != tc.rule || pol.RateLimit.BytesPerSecond != tc.rate || pol.RateLimit.Burst != tc.burst {
				t.Errorf("policy %s %+v, want %s %d/%d", ruleName(pol), pol.RateLimit, tc.rule, tc.rate, tc.burst)
			}
			if len(errs) != len(tc.errs) {
				t.Errorf("reported %v, want %v", errs, tc.errs)
			}
		})
	}
}

func startPolicyEnricher(t *testing.T, cfg Config, reg prometheus.Registerer, objs ...runtime.Object) *testEnricher {
	t.Helper()
	p := testPolicies(t)
	return startEnricherSetup(t, cfg, reg, func(e *Enricher) { e.SetPolicies(p) }, objs...)
}

// TestPolicyFromCache: the Enricher answers the collector's policy
// questions from its cache, and the answer follows annotation changes of
// the pod and of its namespace. Ignored annotations are counted once per
// change, not once per pod update.
func TestPolicyFromCache(t *testing.T) {
	reg := prometheus.NewRegistry()
	te := startPolicyEnricher(t, testConfig(), reg,
		newPod("shop", "web", "u-1", withContainers("api", "sidecar"), annotated(multilineContainerPrefix+"sidecar", "go")),
		annotatedNamespace("shop", map[string]string{rateLimitKey: "1MiB"}))
	ctx := context.Background()
	api, sidecar := source("shop", "web", "u-1", "api", ""), source("shop", "web", "u-1", "sidecar", "")
	waitFor(t, 5*time.Second, "namespace annotation applied", func() bool {
		return te.Policy(api).RateLimit.BytesPerSecond == 1<<20
	})
	if p := te.Policy(api); ruleName(p) != "java" || p.Provisional {
		t.Errorf("api: %s %+v", ruleName(p), p)
	}
	if p := te.Policy(sidecar); ruleName(p) != "go" {
		t.Errorf("sidecar: %s", ruleName(p))
	}
	// The same answer, as a value, each time: the collector compares them.
	if first, second := te.Policy(api), te.Policy(api); first != second {
		t.Error("two answers for one unchanged pod differ")
	}

	update := func(edit func(*corev1.Pod)) {
		t.Helper()
		pod, err := te.client.CoreV1().Pods("shop").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		edit(pod)
		if _, err := te.client.CoreV1().Pods("shop").Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	update(func(p *corev1.Pod) { p.Annotations[multilineKey] = "cobol" })
	errs := func() float64 { return value(t, te.m.annotationErrors.WithLabelValues(annMultiline)) }
	waitFor(t, 5*time.Second, "bad annotation reported", func() bool { return errs() == 1 })
	// Status updates of the pod do not report it again.
	for i := range 3 {
		update(func(p *corev1.Pod) { p.Status.PodIP = "10.1.0." + string(rune('1'+i)) })
	}
	update(func(p *corev1.Pod) { p.Annotations[multilineKey] = "python" })
	waitFor(t, 5*time.Second, "pod annotation applied", func() bool { return ruleName(te.Policy(api)) == "python" })
	if n := errs(); n != 1 {
		t.Errorf("annotation errors %v, want 1", n)
	}

	ns, err := te.client.CoreV1().Namespaces().Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Annotations = map[string]string{rateLimitKey: "unlimited"}
	if _, err := te.client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "namespace lifted the limit", func() bool { return !te.Policy(api).RateLimit.Limited() })
}

// TestPolicyOfNewPod: a file whose pod the informer has not delivered yet
// gets the configuration's policy for its namespace and container, marked
// provisional, and the pod's own policy once it arrives. A pod that never
// comes stops being waited for after miss_wait, for its batches too.
func TestPolicyOfNewPod(t *testing.T) {
	cfg := testConfig()
	cfg.MissWait = 300 * time.Millisecond
	te := startPolicyEnricher(t, cfg, prometheus.NewRegistry(), annotatedNamespace("shop", map[string]string{rateLimitKey: "2MiB"}))
	ctx := context.Background()
	src := source("shop", "new", "u-new", "api", "")
	waitFor(t, 5*time.Second, "namespace cached", func() bool { return te.cache.namespaceAnnotations("shop") != nil })
	p := te.Policy(src)
	if !p.Provisional || ruleName(p) != "java" || p.RateLimit.BytesPerSecond != 2<<20 {
		t.Fatalf("before the pod: %s %+v, want provisional java at the namespace's 2MiB", ruleName(p), p)
	}
	if _, err := te.client.CoreV1().Pods("shop").Create(ctx,
		newPod("shop", "new", "u-new", withContainers("api"), annotated(multilineKey, "nodejs")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the pod's policy", func() bool {
		p := te.Policy(src)
		return !p.Provisional && ruleName(p) == "nodejs"
	})

	ghost := source("shop", "ghost", "u-ghost", "api", "")
	start := time.Now()
	for te.Policy(ghost).Provisional {
		if time.Since(start) > 5*time.Second {
			t.Fatal("still provisional after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if waited := time.Since(start); waited < cfg.MissWait {
		t.Errorf("provisional for %v, less than miss_wait %v", waited, cfg.MissWait)
	}
	// Given up: the ghost's batches no longer wait either.
	b := batch(ghost, 1, nil)
	if err := te.Send(ctx, b); err != nil {
		t.Fatal(err)
	}
	if !b.Acked() {
		t.Error("a batch of the pod given up on waits")
	}
	// The janitor forgets the first-question times.
	if te.policyWait.len() == 0 {
		t.Error("no question remembered")
	}
	te.policyWait.prune(0)
	if n := te.policyWait.len(); n != 0 {
		t.Errorf("%d questions remembered after pruning", n)
	}
}

// TestPolicyKeysBeyondAllowLists: the annotations and labels policies read
// are kept by the informer even when enrich copies none into records.
func TestPolicyKeysBeyondAllowLists(t *testing.T) {
	cfg := testConfig()
	cfg.Labels, cfg.Annotations = []string{}, []string{}
	te := startPolicyEnricher(t, cfg, prometheus.NewRegistry(),
		newPod("other", "py", "u-1", labelled("lang", "python"), withContainers("a", "b"), annotated(multilineContainerPrefix+"b", "go")))
	a, b := source("other", "py", "u-1", "a", ""), source("other", "py", "u-1", "b", "")
	waitFor(t, 5*time.Second, "pod cached", func() bool { m, _ := te.cache.lookup(a); return m != nil })
	if got := ruleName(te.Policy(a)); got != "python" {
		t.Errorf("a (by label lang=python): %s", got)
	}
	if got := ruleName(te.Policy(b)); got != "go" {
		t.Errorf("b (by annotation): %s", got)
	}
	bt := batch(a, 1, nil)
	if err := te.Send(context.Background(), bt); err != nil {
		t.Fatal(err)
	}
	if d := decode(t, bt.Kubernetes); d.m["labels"] != nil || d.m["annotations"] != nil {
		t.Errorf("labels or annotations copied against the allow-lists: %v", d.m)
	}
}

// TestPolicyWithoutSetPolicies: an Enricher nobody asked for policies
// answers the zero policy.
func TestPolicyWithoutSetPolicies(t *testing.T) {
	te := startEnricher(t, testConfig(), newPod("shop", "web", "u-1"))
	if p := te.Policy(source("shop", "web", "u-1", "app", "")); p != (collector.Policy{}) {
		t.Errorf("policy %+v", p)
	}
}
