package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logagent/logagent/test/kubetest"
)

// checkAgentConfig runs `logagent check` on a configuration file's text.
func checkAgentConfig(t *testing.T, raw string, env ...string) {
	t.Helper()
	out, err := run(t.TempDir(), append([]string{"NODE_NAME=node-a"}, env...), nil, agentBinary(t),
		"check", "--config", writeFile(t, "config.yaml", []byte(raw)), "--state-dir", t.TempDir())
	if err != nil || !strings.Contains(out, "configuration ok") {
		t.Errorf("logagent check: %v\n%s\nconfig:\n%s", err, out, raw)
	}
}

// discoveryOf is forward.discovery of a rendered configuration, and
// whether forward.servers is empty.
func discoveryOf(t *testing.T, objs []object) (map[string]any, bool) {
	t.Helper()
	_, cfg := configOf(t, objs)
	d, _ := get(cfg, "forward", "discovery").(map[string]any)
	servers, _ := get(cfg, "forward", "servers").([]any)
	return d, len(servers) == 0
}

// TestREADMEDiscoveryInstall: the README's ways to make the agents follow a
// Fluentd StatefulSet render a configuration that discovers it, and nothing
// else, which the agent accepts: the Helm command and the kustomize overlay.
func TestREADMEDiscoveryInstall(t *testing.T) {
	const name = "fluentd-headless.logging.svc.cluster.local."
	t.Run("helm", func(t *testing.T) {
		var cmd string
		for _, c := range readmeCommands(t, "Install") {
			if strings.HasPrefix(c, "helm upgrade --install logagent ") && strings.Contains(c, "discovery") {
				cmd = c
			}
		}
		if cmd == "" {
			t.Fatal("README Install: no helm upgrade --install command with discovery")
		}
		template := strings.Replace(cmd, "helm upgrade --install logagent", "helm template logagent", 1)
		assets, err := kubetest.AssetsDir()
		if err != nil {
			t.Skip(err)
		}
		kubetest.RequireBin(t, "helm")
		env := append(toolEnv(t), "PATH="+assets+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := run(repoRoot(t), env, nil, "sh", "-c", template)
		if err != nil {
			t.Fatalf("%s: %v", template, err)
		}
		objs := decodeObjects(t, []byte(out))
		d, noServers := discoveryOf(t, objs)
		if d["name"] != name || !noServers {
			t.Errorf("the README's helm command renders forward.discovery %v, no servers %v", d, noServers)
		}
		raw, _ := configOf(t, objs)
		checkAgentConfig(t, raw)
	})
	t.Run("kustomize", func(t *testing.T) {
		overlay := readmeCodeBlock(t, "Install", "# kustomization.yaml, following a Fluentd StatefulSet")
		dir := t.TempDir()
		rel, err := filepath.Rel(dir, filepath.Join(repoRoot(t), "deploy", "kubernetes"))
		if err != nil {
			t.Fatal(err)
		}
		overlay = strings.Replace(overlay, "../logagent/deploy/kubernetes", filepath.ToSlash(rel), 1)
		if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o644); err != nil {
			t.Fatal(err)
		}
		kubectl := kubetest.RequireBin(t, "kubectl")
		out, err := run(dir, toolEnv(t), nil, kubectl, "kustomize", ".")
		if err != nil {
			t.Fatalf("kubectl kustomize of the README's discovery overlay: %v", err)
		}
		objs := decodeObjects(t, []byte(out))
		if len(objs) != 7 {
			t.Errorf("the overlay renders %d objects, want deploy/kubernetes' 7", len(objs))
		}
		d, noServers := discoveryOf(t, objs)
		if d["name"] != name || !noServers {
			t.Errorf("the README's overlay renders forward.discovery %v, no servers %v", d, noServers)
		}
		raw, cfg := configOf(t, objs)
		if cfg["output"] != "forward" {
			t.Errorf("the overlay's configuration has output %v", cfg["output"])
		}
		checkAgentConfig(t, raw)
	})
}

// TestREADMEFluentdStatefulSet: the README's aggregator example is what
// discovery needs (a headless Service over the StatefulSet, its port named
// for the SRV record), the agent's snippet names that Service's DNS name and
// port and passes `logagent check`, the weights example too, and the
// manifests are accepted by a real kube-apiserver.
func TestREADMEFluentdStatefulSet(t *testing.T) {
	manifests := readmeCodeBlock(t, "Receivers", "# fluentd.yaml:")
	objs := decodeObjects(t, []byte(manifests))
	svc, sts := find(t, objs, "Service"), find(t, objs, "StatefulSet")
	if get(svc, "spec", "clusterIP") != "None" || get(svc, "spec", "publishNotReadyAddresses") != nil {
		t.Errorf("the Service is not headless over ready pods only: %v", get(svc, "spec"))
	}
	if get(sts, "spec", "serviceName") != get(svc, "metadata", "name") {
		t.Errorf("the StatefulSet's serviceName %v is not the Service %v", get(sts, "spec", "serviceName"), get(svc, "metadata", "name"))
	}
	if get(svc, "spec", "ports", 0, "name") != "forward" {
		t.Errorf("the Service's port is named %v, want forward (the SRV record's name)", get(svc, "spec", "ports", 0, "name"))
	}
	fqdn := get(svc, "metadata", "name").(string) + "." + get(svc, "metadata", "namespace").(string) + ".svc.cluster.local."

	agent := readmeCodeBlock(t, "Receivers", "# logagent.yaml, following the StatefulSet")
	if !strings.Contains(agent, "name: "+fqdn+"\n") {
		t.Errorf("the agent's snippet does not discover %s:\n%s", fqdn, agent)
	}
	if port := get(svc, "spec", "ports", 0, "port"); !strings.Contains(agent, fmt.Sprintf("port: %v\n", port)) {
		t.Errorf("the agent's snippet does not name the Service's port %v:\n%s", port, agent)
	}
	checkAgentConfig(t, agent)

	weights := readmeCodeBlock(t, "Receivers", "# logagent.yaml, weights and a key per server")
	keyFile := writeFile(t, "shared_key", []byte("s3cret\n"))
	weights = strings.ReplaceAll(weights, "/etc/logagent/fluentd-eu/shared_key", keyFile)
	checkAgentConfig(t, weights, "FLUENTD_SHARED_KEY=s3cret")

	if testing.Short() {
		return
	}
	c := freshCluster(t, false)
	if _, err := c.Kubectl(t, "create", "namespace", "logging"); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Kubectl(t, "apply", "--dry-run=server", "-f", writeFile(t, "fluentd.yaml", []byte(manifests))); err != nil {
		t.Errorf("the README's Fluentd manifests on a kube-apiserver: %v\n%s", err, out)
	}
}
