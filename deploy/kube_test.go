package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logagent/logagent/test/kubetest"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// TestManifestsOnAPIServer checks the manifests and the chart against a real
// kube-apiserver (test/kubetest): server-side dry runs with strict field
// validation and admission, the ServiceAccount's permissions (kubectl auth
// can-i and a SelfSubjectRulesReview), pod admission of the DaemonSet's pod
// template, and the agent itself running as the deployed ServiceAccount.
//
// The harness has no Prometheus Operator: the test installs a minimal
// PodMonitor CRD (deploy/testdata/podmonitor-crd.yaml, a subset of the
// operator's schema) so the PodMonitor is dry-run like every other object.
func TestManifestsOnAPIServer(t *testing.T) {
	c := kubetest.Start(t)
	kubetest.RequireBin(t, "helm")
	root := repoRoot(t)
	kubectl := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := c.Kubectl(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	plain := kustomize(t)
	objs := decodeObjects(t, plain)

	// The PodMonitor CRD, for real.
	kubectl(t, "apply", "-f", filepath.Join(root, "deploy", "testdata", "podmonitor-crd.yaml"))
	kubectl(t, "wait", "--for=condition=Established", "--timeout=60s", "crd/podmonitors.monitoring.coreos.com")

	// Namespaced objects can be dry-run only into a namespace that exists, and
	// the permission checks need the RBAC objects: apply those for real.
	var base []object
	for _, o := range objs {
		switch o["kind"] {
		case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding":
			base = append(base, o)
		}
	}
	if len(base) != 4 {
		t.Fatalf("deploy/kubernetes: want a Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding, found %d of them", len(base))
	}
	kubectl(t, "apply", "-f", writeObjects(t, base))

	dryRun := func(t *testing.T, what string, manifest []byte, want []object) {
		t.Helper()
		out := kubectl(t, "apply", "--dry-run=server", "--validate=strict", "-f", writeFile(t, "manifest.yaml", manifest))
		for _, o := range want {
			kind := strings.ToLower(o["kind"].(string))
			name := get(o, "metadata", "name").(string)
			if !strings.Contains(out, "/"+name+" ") || !strings.Contains(strings.ToLower(out), kind) {
				t.Errorf("%s: kubectl's output does not mention %s %s:\n%s", what, kind, name, out)
			}
		}
		if n := strings.Count(out, "(server dry run)"); n != len(want) {
			t.Errorf("%s: %d objects dry-run, want %d:\n%s", what, n, len(want), out)
		}
	}

	withPM := kustomizeAt(t, withPodMonitor)

	t.Run("kustomize dry-run", func(t *testing.T) {
		dryRun(t, "kubectl kustomize deploy/kubernetes", plain, objs)
		dryRun(t, "kubectl kustomize "+withPodMonitor, withPM, decodeObjects(t, withPM))
	})

	t.Run("helm template dry-run", func(t *testing.T) {
		out, err := helmTemplate(t)
		if err != nil {
			t.Fatalf("helm template: %v", err)
		}
		dryRun(t, "helm template", out, decodeObjects(t, out))
	})

	t.Run("helm template with every value dry-run", func(t *testing.T) {
		out, err := helmTemplate(t, "-f", writeFile(t, "values.yaml", []byte(allValues)), "--api-versions", podMonitorAPI)
		if err != nil {
			t.Fatalf("helm template: %v", err)
		}
		dryRun(t, "helm template -f allValues", out, decodeObjects(t, out))
	})

	t.Run("strict validation is on", func(t *testing.T) {
		// A misplaced field must fail the dry run, or the runs above prove little.
		bad := strings.Replace(string(withPM), "  podMetricsEndpoints:", "  podMetricEndpoints:", 1)
		bad = strings.Replace(bad, "      terminationGracePeriodSeconds:", "      terminationGracePeriod:", 1)
		if bad == string(withPM) {
			t.Fatal("could not plant the misspellings")
		}
		out, err := c.Kubectl(t, "apply", "--dry-run=server", "--validate=strict", "-f", writeFile(t, "bad.yaml", []byte(bad)))
		if err == nil {
			t.Fatalf("a dry run with misspelt fields passed:\n%s", out)
		}
		for _, field := range []string{"podMetricEndpoints", "terminationGracePeriod"} {
			if !strings.Contains(err.Error(), field) {
				t.Errorf("the dry run's error does not name %s: %v", field, err)
			}
		}
	})

	t.Run("pod template passes pod admission", func(t *testing.T) {
		ds := find(t, objs, "DaemonSet")
		pod := podFromTemplate(t, ds, "logagent", "node-a")
		out := kubectl(t, "create", "--dry-run=server", "-o", "json", "-f", writeObjects(t, []object{pod}))
		var created corev1.Pod
		if err := json.Unmarshal([]byte(out), &created); err != nil {
			t.Fatalf("decode the dry-run pod: %v\n%s", err, out)
		}
		// The Priority admission plugin resolved the class.
		if created.Spec.Priority == nil || *created.Spec.Priority != 2000001000 {
			t.Errorf("priority = %v, want system-node-critical's 2000001000", created.Spec.Priority)
		}
		// The namespace's pod-security label is what admits the hostPath
		// volumes: the same pod in a "baseline" namespace is refused.
		kubectl(t, "create", "namespace", "logagent-baseline")
		kubectl(t, "label", "namespace", "logagent-baseline", "pod-security.kubernetes.io/enforce=baseline")
		pod = podFromTemplate(t, ds, "logagent-baseline", "node-a")
		_, err := c.Kubectl(t, "create", "--dry-run=server", "-f", writeObjects(t, []object{pod}))
		if err == nil || !strings.Contains(err.Error(), "violates PodSecurity") || !strings.Contains(err.Error(), "hostPath") {
			t.Errorf("the pod in a baseline namespace: error %v, want a PodSecurity refusal over hostPath volumes", err)
		}
	})

	saKubeconfig, saConfig := c.ServiceAccountKubeconfig(t, "logagent", "logagent")

	t.Run("kubectl auth can-i as the ServiceAccount", func(t *testing.T) {
		canI := func(args ...string) bool {
			t.Helper()
			out, err := c.Kubectl(t, append([]string{"--kubeconfig=" + saKubeconfig, "auth", "can-i"}, args...)...)
			switch strings.TrimSpace(out) {
			case "yes":
				return true
			case "no":
				return false
			}
			t.Fatalf("kubectl auth can-i %v: %q, %v", args, out, err)
			return false
		}
		for _, res := range []string{"pods", "namespaces"} {
			for _, verb := range []string{"get", "list", "watch"} {
				for _, scope := range []string{"--all-namespaces", "--namespace=default"} {
					if !canI(verb, res, scope) {
						t.Errorf("the ServiceAccount cannot %s %s (%s)", verb, res, scope)
					}
				}
			}
		}
		denied := [][]string{
			{"get", "secrets", "--all-namespaces"}, {"list", "secrets", "--all-namespaces"},
			{"watch", "secrets", "--all-namespaces"}, {"get", "secrets", "--namespace=logagent"},
			{"get", "configmaps", "--namespace=logagent"}, {"list", "nodes"}, {"list", "services", "--all-namespaces"},
			{"list", "deployments.apps", "--all-namespaces"},
			{"create", "pods", "--namespace=default"}, {"update", "pods", "--namespace=default"},
			{"patch", "pods", "--namespace=default"}, {"delete", "pods", "--namespace=default"},
			{"deletecollection", "pods", "--namespace=default"},
			{"get", "pods", "--subresource=log", "--namespace=default"},
			{"create", "pods", "--subresource=exec", "--namespace=default"},
			{"create", "pods", "--subresource=eviction", "--namespace=default"},
			{"patch", "pods", "--subresource=status", "--namespace=default"},
			{"create", "namespaces"}, {"update", "namespaces"}, {"delete", "namespaces"},
			{"create", "serviceaccounts", "--subresource=token", "--namespace=logagent"},
			{"create", "events", "--namespace=logagent"},
			{"patch", "daemonsets.apps", "--namespace=logagent"},
			{"update", "clusterroles.rbac.authorization.k8s.io"},
			{"*", "*", "--all-namespaces"},
		}
		for _, args := range denied {
			if canI(args...) {
				t.Errorf("the ServiceAccount can %v: it must not", args)
			}
		}
	})

	t.Run("the ServiceAccount's rules are exactly read-only pods and namespaces", func(t *testing.T) {
		// kubectl auth can-i answers single questions; a rules review lists
		// everything an account may do, so nothing else slips through. What
		// every authenticated account may do (self reviews, discovery,
		// cluster trust bundles, ...) is read from an unbound account of the
		// same namespace and set aside.
		_, unboundConfig := c.ServiceAccountKubeconfig(t, "logagent", "unbound")
		for _, ns := range []string{"logagent", "default"} {
			granted := rules(t, saConfig, ns)
			for g := range rules(t, unboundConfig, ns) {
				delete(granted, g)
			}
			var want []string
			for _, res := range []string{"namespaces", "pods"} {
				for _, verb := range []string{"get", "list", "watch"} {
					want = append(want, verb+" "+res)
				}
			}
			var got []string
			for g := range granted {
				got = append(got, g)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("in %s the ServiceAccount is granted %v beyond what every account has; want exactly %v", ns, got, want)
			}
		}
	})

	t.Run("the agent runs as the ServiceAccount", func(t *testing.T) {
		testAgentAsServiceAccount(t, c, objs, saKubeconfig)
	})
}

// rules returns what an account may do in a namespace, from a
// SelfSubjectRulesReview, as "verb resource" strings ("get pods",
// "list deployments.apps", "get secrets/name" for a named resource).
func rules(t *testing.T, cfg *rest.Config, namespace string) map[string]bool {
	t.Helper()
	client, err := kubernetes.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	review, err := client.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx,
		&authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: namespace}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectRulesReview in %s: %v", namespace, err)
	}
	if review.Status.Incomplete {
		t.Fatalf("SelfSubjectRulesReview in %s is incomplete: %s", namespace, review.Status.EvaluationError)
	}
	out := map[string]bool{}
	for _, r := range review.Status.ResourceRules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, group := range r.APIGroups {
			for _, res := range r.Resources {
				if group != "" {
					res += "." + group
				}
				for _, verb := range r.Verbs {
					for _, name := range names {
						g := verb + " " + res
						if name != "" {
							g += "/" + name
						}
						out[g] = true
					}
				}
			}
		}
	}
	return out
}

// testAgentAsServiceAccount runs the built agent with deploy/kubernetes'
// configuration file and the deployed ServiceAccount's token, and proves its
// RBAC is enough: its informers sync, it turns ready, and a record of a pod
// on its node leaves with the pod's labels and its namespace's labels.
func testAgentAsServiceAccount(t *testing.T, c *kubetest.Cluster, objs []object, saKubeconfig string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "shop", Labels: map[string]string{"team": "checkout"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod, err := c.Client.CoreV1().Pods(ns.Name).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			NodeName:   "node-a",
			Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.27"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// The pod's log is there before the agent starts, as after a node's or
	// the agent's restart.
	dir := t.TempDir()
	glob := writeKubeletLogs(t, dir, []container{{namespace: "shop", pod: "web-1", uid: string(pod.UID), name: "nginx", lines: 3}})
	raw, _ := configOf(t, objs)
	config := writeFile(t, "config.yaml", []byte(raw))
	// deploy/kubernetes' own configuration, with what differs off-cluster
	// overridden by flags: no Fluentd here, and no host paths.
	a := startAgent(t, []string{"NODE_NAME=node-a"}, "run", "--config", config,
		"--output", "stdout", "--kubeconfig", saKubeconfig,
		"--log-glob", glob, "--state-dir", filepath.Join(dir, "state"), "--log-format", "text")

	waitFor(t, 90*time.Second, "the agent's /readyz and both informers synced", func() (bool, string) {
		status, body, err := httpGet("http://" + a.addr + "/readyz")
		if err != nil || status != 200 {
			return false, fmt.Sprintf("/readyz: %d %q %v; agent log:\n%s", status, body, err, tail(a.stderr.String(), 20))
		}
		for _, informer := range []string{"pods", "namespaces"} {
			v, ok, err := a.metric("logagent_enrich_informer_synced", map[string]string{"informer": informer})
			if err != nil || !ok || v != 1 {
				return false, fmt.Sprintf("logagent_enrich_informer_synced{informer=%q} = %v (present %v, %v)", informer, v, ok, err)
			}
		}
		return true, ""
	})

	waitFor(t, 60*time.Second, "3 enriched records on stdout", func() (bool, string) {
		var n int
		for _, line := range strings.Split(a.stdout.String(), "\n") {
			if line == "" {
				continue
			}
			var rec struct {
				Record struct {
					Kubernetes struct {
						Labels          map[string]string `json:"labels"`
						NamespaceLabels map[string]string `json:"namespace_labels"`
						PodID           string            `json:"pod_id"`
					} `json:"kubernetes"`
				} `json:"record"`
			}
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				return false, fmt.Sprintf("stdout line %q: %v", line, err)
			}
			k := rec.Record.Kubernetes
			if k.Labels["app"] == "web" && k.NamespaceLabels["team"] == "checkout" && k.PodID == string(pod.UID) {
				n++
			}
		}
		return n == 3, fmt.Sprintf("%d of 3 records carry the pod's and namespace's labels; stdout:\n%s\nagent log:\n%s",
			n, tail(a.stdout.String(), 5), tail(a.stderr.String(), 20))
	})
}

// podFromTemplate makes a Pod of a DaemonSet's pod template, bound to node
// (no scheduler runs), in namespace.
func podFromTemplate(t testing.TB, ds object, namespace, node string) object {
	t.Helper()
	tmpl, err := json.Marshal(get(ds, "spec", "template"))
	if err != nil {
		t.Fatal(err)
	}
	var pod object
	if err := json.Unmarshal(tmpl, &pod); err != nil {
		t.Fatal(err)
	}
	pod["apiVersion"], pod["kind"] = "v1", "Pod"
	meta := pod["metadata"].(map[string]any)
	meta["name"], meta["namespace"] = "logagent-admission", namespace
	pod["spec"].(map[string]any)["nodeName"] = node
	return pod
}

// writeObjects writes objects as a multi-document YAML file.
func writeObjects(t testing.TB, objs []object) string {
	t.Helper()
	var b strings.Builder
	for _, o := range objs {
		data, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	path := filepath.Join(t.TempDir(), "objects.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
