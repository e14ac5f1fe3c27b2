package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logagent/logagent/test/kubetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// containerOf makes the log directory of a real pod's container (under the
// uid the API server gave it) and its link; it returns the live file.
func (n *node) containerOf(pod *corev1.Pod, name string) string {
	n.t.Helper()
	dir := filepath.Join(n.root, "pods", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		n.t.Fatal(err)
	}
	live := filepath.Join(dir, "0.log")
	appendLines(n.t, live, "")
	link := filepath.Join(n.root, "containers", fmt.Sprintf("%s_%s_%s-%064x.log", pod.Name, pod.Namespace, name, len(pod.Name)*31+len(name)))
	if err := os.Symlink(live, link); err != nil && !os.IsExist(err) {
		n.t.Fatal(err)
	}
	return live
}

// TestPolicyByAnnotations: policies chosen by annotations, read by enrich
// from a real kube-apiserver, applied by the collector, through the agent
// binary and the Forward output:
//
//   - logagent.io/multiline-app: java on a pod joins its app container's
//     traces, not its sidecar's (same text), nor another pod's;
//   - a kill in the middle of one of its traces: after the restart (enrich
//     starting again, the collector waiting for the pod's policy before its
//     first read) the trace arrives once, whole;
//   - logagent.io/rate-limit on a namespace throttles its container (the
//     namespace's wait series grows), and the other namespace has no series.
func TestPolicyByAnnotations(t *testing.T) {
	c := kubetest.Start(t)
	ctx := context.Background()
	for name, ann := range map[string]map[string]string{
		"shop": nil,
		"loud": {"logagent.io/rate-limit": "256KiB", "logagent.io/rate-limit-burst": "64KiB"},
	} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}}
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkPod := func(ns, name string, ann map[string]string, containers ...string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: ann},
			Spec: corev1.PodSpec{NodeName: "node-a"}}
		for _, cn := range containers {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: cn, Image: "registry.example/app:1"})
		}
		got, err := c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	orders := mkPod("shop", "orders", map[string]string{"logagent.io/multiline-app": "java"}, "app", "sidecar")
	other := mkPod("shop", "catalog", nil, "app")
	spam := mkPod("loud", "spam", nil, "app")

	n := newNode(t, restartConfig)
	n.listen = freeAddr(t)
	n.args = []string{"--enrich=true", "--kubeconfig", c.Kubeconfig}
	app, sidecar, catalog, loud := n.containerOf(orders, "app"), n.containerOf(orders, "sidecar"), n.containerOf(other, "app"), n.containerOf(spam, "app")

	var joinedApp []string
	var singles []string // lines that must arrive alone
	for i := range 3 {
		lines, joined := killTrace("orders", i)
		appendLines(t, app, strings.Join(lines, "")+plainLine("orders", i))
		joinedApp = append(joinedApp, joined)
		lines, _ = killTrace("sidecar", i)
		appendLines(t, sidecar, strings.Join(lines, ""))
		singles = append(singles, fmt.Sprintf("java.lang.IllegalStateException: sidecar trace=%d", i))
		lines, _ = killTrace("catalog", i)
		appendLines(t, catalog, strings.Join(lines, ""))
		singles = append(singles, fmt.Sprintf("java.lang.IllegalStateException: catalog trace=%d", i))
	}
	var b strings.Builder
	for i := range 8000 { // ~1 MiB
		b.WriteString(plainLine("spam", i))
	}
	appendLines(t, loud, b.String())
	n.start()
	waitUntil(t, "the app's traces joined", func() bool {
		for _, j := range joinedApp {
			if n.tally.Count(j) != 1 {
				return false
			}
		}
		return true
	})
	for _, s := range singles {
		if got := n.tally.Count(s); got != 1 {
			t.Errorf("%q (a container without a rule) arrived %d times alone, want once", s, got)
		}
	}
	metrics := "http://" + n.listen + "/metrics"
	waitUntil(t, "the loud namespace throttled", func() bool {
		v, _ := scrapeLabeled(metrics, "logagent_collector_rate_limit_wait_seconds_total", `namespace="loud"`)
		return v > 0
	})
	if _, ok := scrapeLabeled(metrics, "logagent_collector_rate_limit_wait_seconds_total", `namespace="shop"`); ok {
		t.Error("the shop namespace, not limited, has a rate-limit series")
	}

	// A kill in the middle of a trace of the annotated container.
	lines, joined := killTrace("orders", 3)
	fi, err := os.Stat(app)
	if err != nil {
		t.Fatal(err)
	}
	openAt := fi.Size()
	appendLines(t, app, strings.Join(lines[:3], ""))
	waitUntil(t, "the checkpoint at the open trace", func() bool { return n.checkpoints()[app] == openAt })
	n.kill()
	appendLines(t, app, strings.Join(lines[3:], "")+plainLine("orders", 3))
	n.start()
	waitUntil(t, "the trace after the restart", func() bool { return n.tally.Count(seqLine("orders", 3)) == 1 })
	if n.tally.Count(joined) != 1 {
		t.Errorf("the trace open at the kill arrived %d times whole, want once", n.tally.Count(joined))
	}
	if got := n.tally.Count(lines[0][strings.Index(lines[0], "java.") : len(lines[0])-1]); got != 0 {
		t.Errorf("its first line arrived %d times alone: the trace was split", got)
	}
	waitUntil(t, "every spam line", func() bool { return n.tally.Count(seqLine("spam", 7999)) >= 1 })
	n.term(true)
	n.account(map[string]int{"spam": 8000, "orders": 4})
}
