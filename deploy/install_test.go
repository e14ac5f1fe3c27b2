package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/logagent/logagent/test/kubetest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The README's install commands, run verbatim by a shell in the repository
// root against a fresh kube-apiserver, with and without the Prometheus
// Operator's PodMonitor CRD: what a new user copies must do what the README
// says. The harness has no controller-manager, so nothing creates pods,
// rollout status would wait forever (it is not run), and a deleted
// namespace stays Terminating; everything the commands themselves do is
// checked.

// readmeCommands returns the shell commands of the README section's ```sh
// blocks, continuation lines joined, comments dropped.
func readmeCommands(t testing.TB, section string) []string {
	t.Helper()
	text := readmeSection(t, repoRoot(t), section)
	var cmds []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(text, -1) {
		joined := strings.ReplaceAll(m[1], "\\\n", " ")
		for _, line := range strings.Split(joined, "\n") {
			if i := strings.Index(line, " # "); i >= 0 {
				line = line[:i]
			}
			line = strings.Join(strings.Fields(line), " ")
			if line != "" && !strings.HasPrefix(line, "#") {
				cmds = append(cmds, line)
			}
		}
	}
	return cmds
}

// readmeCommand is the one command of the Install section that is prefix
// or starts with prefix and a space.
func readmeCommand(t testing.TB, prefix string) string {
	t.Helper()
	var found []string
	for _, c := range readmeCommands(t, "Install") {
		if c == prefix || strings.HasPrefix(c, prefix+" ") {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("README Install: %d commands start with %q, want exactly one: %q", len(found), prefix, found)
	}
	return found[0]
}

// freshCluster starts a kube-apiserver, with the PodMonitor CRD installed
// (and established) when crd.
func freshCluster(t *testing.T, crd bool) *kubetest.Cluster {
	t.Helper()
	c := kubetest.Start(t)
	kubetest.RequireBin(t, "helm")
	if crd {
		if _, err := c.Kubectl(t, "apply", "-f", filepath.Join(repoRoot(t), "deploy", "testdata", "podmonitor-crd.yaml")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Kubectl(t, "wait", "--for=condition=Established", "--timeout=60s", "crd/podmonitors.monitoring.coreos.com"); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// shell runs a README command as a user would, in the repository root, with
// the built kubectl and helm first on $PATH and the cluster as the current
// context. It returns stdout, and an error carrying stderr.
func shell(t *testing.T, c *kubetest.Cluster, command string) (string, error) {
	t.Helper()
	assets, err := kubetest.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	env := append(toolEnv(t), "KUBECONFIG="+c.Kubeconfig, "PATH="+assets+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := run(repoRoot(t), env, nil, "sh", "-c", command)
	t.Logf("$ %s\n%s", command, out)
	return out, err
}

// installed are what an install creates (the Namespace aside).
var installed = []struct{ kind, namespace, name string }{
	{"serviceaccount", "logagent", "logagent"},
	{"configmap", "logagent", "logagent"},
	{"daemonset", "logagent", "logagent"},
	{"service", "logagent", "logagent"},
	{"clusterrole", "", "logagent"},
	{"clusterrolebinding", "", "logagent"},
}

// exists reports whether kubectl finds an object.
func exists(t *testing.T, c *kubetest.Cluster, kind, namespace, name string) bool {
	t.Helper()
	args := []string{"get", kind, name, "-o", "name"}
	if namespace != "" {
		args = append(args, "-n", namespace)
	}
	out, err := c.Kubectl(t, args...)
	switch {
	case err == nil && strings.TrimSpace(out) != "":
		return true
	case err != nil && strings.Contains(err.Error(), "NotFound"):
		return false
	}
	t.Fatalf("kubectl get %s %s: %q, %v", kind, name, out, err)
	return false
}

func requireObjects(t *testing.T, c *kubetest.Cluster, podMonitor bool) {
	t.Helper()
	for _, o := range installed {
		if !exists(t, c, o.kind, o.namespace, o.name) {
			t.Errorf("%s %s/%s was not created", o.kind, o.namespace, o.name)
		}
	}
	if podMonitor {
		if !exists(t, c, "podmonitors.monitoring.coreos.com", "logagent", "logagent") {
			t.Error("the PodMonitor was not created, though the cluster has its CRD")
		}
	}
}

func requireGone(t *testing.T, c *kubetest.Cluster, podMonitor bool) {
	t.Helper()
	for _, o := range installed {
		if exists(t, c, o.kind, o.namespace, o.name) {
			t.Errorf("%s %s/%s is still there", o.kind, o.namespace, o.name)
		}
	}
	if podMonitor && exists(t, c, "podmonitors.monitoring.coreos.com", "logagent", "logagent") {
		t.Error("the PodMonitor is still there")
	}
}

// podAdmitted dry-runs a pod of the installed DaemonSet's template in its
// namespace: nil when Pod Security admission lets the hostPath volumes in.
func podAdmitted(t *testing.T, c *kubetest.Cluster) error {
	t.Helper()
	out, err := c.Kubectl(t, "get", "daemonset", "logagent", "-n", "logagent", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var ds object
	if err := json.Unmarshal([]byte(out), &ds); err != nil {
		t.Fatal(err)
	}
	_, err = c.Kubectl(t, "create", "--dry-run=server", "-f", writeObjects(t, []object{podFromTemplate(t, ds, "logagent", "node-a")}))
	return err
}

// finalizeNamespace does what the namespace controller (which the harness
// does not run) does for a deleted namespace, once nothing of the install is
// left in it: removes its finalizer, so it goes and a waiting `kubectl
// delete` returns. The channel says whether it did, within two minutes.
func finalizeNamespace(t *testing.T, c *kubetest.Cluster, name string) <-chan bool {
	done := make(chan bool, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	go func() {
		defer cancel()
		for ctx.Err() == nil {
			time.Sleep(pollInterval) // poll: the harness has no watch-driven controller
			ns, err := c.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
			if err != nil || ns.DeletionTimestamp == nil {
				continue
			}
			_, errDS := c.Client.AppsV1().DaemonSets(name).Get(ctx, "logagent", metav1.GetOptions{})
			_, errCM := c.Client.CoreV1().ConfigMaps(name).Get(ctx, "logagent", metav1.GetOptions{})
			if !apierrors.IsNotFound(errDS) || !apierrors.IsNotFound(errCM) {
				continue // kubectl has not deleted everything yet
			}
			ns.Spec.Finalizers = nil
			if _, err := c.Client.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err == nil {
				done <- true
				return
			}
		}
		done <- false
	}()
	return done
}

func TestREADMEHelmInstallOnFreshCluster(t *testing.T) {
	install := readmeCommand(t, "helm install logagent")
	label := readmeCommand(t, "kubectl label namespace logagent")
	upgrade := readmeCommand(t, "helm upgrade logagent")
	uninstall := readmeCommand(t, "helm uninstall logagent")
	for _, crd := range []bool{false, true} {
		t.Run(fmt.Sprintf("PodMonitor CRD %v", crd), func(t *testing.T) {
			c := freshCluster(t, crd)
			out, err := shell(t, c, install)
			if err != nil {
				t.Fatalf("the README's helm install on a fresh cluster: %v", err)
			}
			requireObjects(t, c, crd)
			if strings.Contains(out, "No PodMonitor") == crd {
				t.Errorf("helm install's notes say \"No PodMonitor\" %v, with the CRD %v:\n%s", !crd, crd, out)
			}
			// The notes name the Pod Security label the README shows.
			if !strings.Contains(out, label) {
				t.Errorf("helm install's notes do not show %q for the unlabelled namespace:\n%s", label, out)
			}

			// Pod Security: where the namespace's level forbids hostPath
			// volumes (here set by hand, as a cluster-wide default would),
			// the pods are refused until the README's label command.
			if _, err := c.Kubectl(t, "label", "namespace", "logagent", "pod-security.kubernetes.io/enforce=baseline"); err != nil {
				t.Fatal(err)
			}
			if err := podAdmitted(t, c); err == nil || !strings.Contains(err.Error(), "hostPath") {
				t.Fatalf("a pod in a baseline namespace: %v, want a refusal over hostPath volumes", err)
			}
			if _, err := shell(t, c, label); err != nil {
				t.Fatalf("the README's label command: %v", err)
			}
			if err := podAdmitted(t, c); err != nil {
				t.Fatalf("after the README's label command the pod is still refused: %v", err)
			}

			// An upgrade with a changed value changes the configuration and
			// leaves the pod template alone: the agents reload it live, the
			// pods do not roll (rollOnConfigChange is off).
			generation := func() string {
				out, err := c.Kubectl(t, "get", "daemonset", "logagent", "-n", "logagent", "-o", `jsonpath={.metadata.generation}`)
				if err != nil || out == "" {
					t.Fatalf("generation: %q, %v", out, err)
				}
				return out
			}
			before := generation()
			if _, err := shell(t, c, upgrade); err != nil {
				t.Fatalf("the README's helm upgrade: %v", err)
			}
			cm, err := c.Client.CoreV1().ConfigMaps("logagent").Get(context.Background(), "logagent", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if cfg := cm.Data["config.yaml"]; !strings.Contains(cfg, "level: debug") || !strings.Contains(cfg, "fluentd.logging.svc:24224") {
				t.Errorf("after the upgrade config.yaml is\n%s\nwant log.level debug and the install's server kept", cfg)
			}
			if after := generation(); after != before {
				t.Errorf("the upgrade changed the DaemonSet (generation %s -> %s): the pods would roll for a config change", before, after)
			}
			requireObjects(t, c, crd)

			if _, err := shell(t, c, uninstall); err != nil {
				t.Fatalf("the README's helm uninstall: %v", err)
			}
			requireGone(t, c, crd)
		})
	}
}

func TestREADMEKubectlApplyOnFreshCluster(t *testing.T) {
	apply := readmeCommand(t, "kubectl apply -k deploy/kubernetes")
	applyPM := readmeCommand(t, "kubectl apply -k "+withPodMonitor)
	remove := readmeCommand(t, "kubectl delete -k deploy/kubernetes")
	removePM := readmeCommand(t, "kubectl delete -k "+withPodMonitor)
	for _, crd := range []bool{false, true} {
		t.Run(fmt.Sprintf("PodMonitor CRD %v", crd), func(t *testing.T) {
			c := freshCluster(t, crd)
			add, del := apply, remove
			if crd {
				add, del = applyPM, removePM
			} else if _, err := shell(t, c, applyPM); err == nil || !strings.Contains(err.Error(), `no matches for kind "PodMonitor"`) {
				// What the README says happens without the operator.
				t.Errorf("%s without the CRD: %v, want no matches for kind \"PodMonitor\"", applyPM, err)
			}
			if _, err := shell(t, c, add); err != nil {
				t.Fatalf("the README's %s on a fresh cluster: %v", add, err)
			}
			requireObjects(t, c, crd)
			ns, err := c.Client.CoreV1().Namespaces().Get(context.Background(), "logagent", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
				t.Errorf("namespace labels %v: want pod-security.kubernetes.io/enforce=privileged", ns.Labels)
			}
			if err := podAdmitted(t, c); err != nil {
				t.Errorf("a pod of the DaemonSet is refused: %v", err)
			}
			// Applying again changes nothing and fails nothing.
			if out, err := shell(t, c, add); err != nil || strings.Contains(out, "created") {
				t.Errorf("applying again: %v\n%s", err, out)
			}

			// kubectl delete waits until the namespace is gone, which takes
			// the namespace controller: stand in for it.
			finalized := finalizeNamespace(t, c, "logagent")
			if _, err := shell(t, c, del); err != nil {
				t.Fatalf("the README's %s: %v", del, err)
			}
			requireGone(t, c, crd)
			if !<-finalized {
				t.Error("the namespace was not deleted")
			}
			if _, err := c.Client.CoreV1().Namespaces().Get(context.Background(), "logagent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("the namespace: %v, want NotFound", err)
			}
		})
	}
}
