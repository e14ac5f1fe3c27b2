package deploy

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/logagent/logagent/output/forwardtest"
	"github.com/logagent/logagent/test/kubetest"
)

// TestHelmLint: `helm lint --strict` passes at the default values and with
// every optional block set.
func TestHelmLint(t *testing.T) {
	helm := kubetest.RequireBin(t, "helm")
	root := repoRoot(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		{"all values", []string{"-f", writeFile(t, "values.yaml", []byte(allValues))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(root, toolEnv(t), nil, helm, append([]string{"lint", "--strict", chartDir}, tc.args...)...)
			if err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			if !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") {
				t.Fatalf("helm lint did not report a clean lint:\n%s", out)
			}
			// --strict turns warnings into failures; [INFO] lines are
			// suggestions (an icon, say) that do not fail the lint.
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, "[WARNING]") || strings.Contains(line, "[ERROR]") {
					t.Errorf("helm lint: %s", line)
				}
			}
		})
	}
}

// TestHelmMatchesKustomize: at its default values the chart renders exactly
// the objects of deploy/kubernetes less the Namespace (Helm's
// --create-namespace makes it), and on a cluster with the PodMonitor API those
// of deploy/kubernetes-with-podmonitor; compared as parsed objects (comments
// and formatting aside), Helm's own labels included: the chart adds none.
func TestHelmMatchesKustomize(t *testing.T) {
	for _, tc := range []struct {
		name, dir string
		helmArgs  []string
		want      []string
	}{
		{"no PodMonitor API", "deploy/kubernetes", nil,
			[]string{"ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Namespace", "Service", "ServiceAccount"}},
		{"PodMonitor API", withPodMonitor, []string{"--api-versions", podMonitorAPI},
			[]string{"ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Namespace", "PodMonitor", "Service", "ServiceAccount"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rendered, err := helmTemplate(t, tc.helmArgs...)
			if err != nil {
				t.Fatalf("helm template: %v", err)
			}
			chart := byKey(t, decodeObjects(t, rendered))
			plainObjs := decodeObjects(t, kustomizeAt(t, tc.dir))
			var kinds []string
			for _, o := range plainObjs {
				kinds = append(kinds, o["kind"].(string))
			}
			sort.Strings(kinds)
			if !reflect.DeepEqual(kinds, tc.want) {
				t.Errorf("%s has %v, want %v", tc.dir, kinds, tc.want)
			}
			plain := byKey(t, plainObjs)
			var keys []string
			for k, o := range plain {
				if o["kind"] == "Namespace" {
					continue // the chart leaves the release namespace to Helm
				}
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for k := range chart {
				if _, ok := plain[k]; !ok || strings.HasPrefix(k, "Namespace/") {
					t.Errorf("the chart renders %s, %s has no such object", k, tc.dir)
				}
			}
			for _, k := range keys {
				c, ok := chart[k]
				if !ok {
					t.Errorf("%s has %s, the chart does not render it", tc.dir, k)
					continue
				}
				if d := diff(plain[k], c, 20); len(d) > 0 {
					t.Errorf("%s differs between %s and the chart (kustomize != helm):\n  %s", k, tc.dir, strings.Join(d, "\n  "))
				}
			}
		})
	}
}

// allValues sets every optional block of the chart.
const allValues = `
image:
  repository: registry.example.com/logagent
  tag: "1.2.3"
imagePullSecrets:
  - name: registry-creds
config:
  log:
    level: debug
  forward:
    servers:
      - address: fluentd-0.logging.svc:24224
      - address: fluentd-1.logging.svc:24224
        standby: true
    discovery:
      name: _forward._tcp.fluentd-headless.logging.svc.cluster.local.
      type: SRV
      refresh: 30s
    gzip: true
    require_ack: true
tls:
  enabled: true
  secretName: fluentd-tls
  caKey: ca.crt
  certKey: tls.crt
  keyKey: tls.key
  serverName: fluentd.logging.svc
sharedKey:
  secretName: fluentd-auth
  key: shared_key
  usernameKey: username
  passwordKey: password
resources:
  requests:
    cpu: 100m
    memory: 96Mi
  limits:
    memory: 256Mi
tolerations:
  - key: dedicated
    operator: Equal
    value: logging
    effect: NoSchedule
nodeSelector:
  kubernetes.io/os: linux
commonLabels:
  team: platform
commonAnnotations:
  owner: platform@example.com
podLabels:
  tier: node
podAnnotations:
  example.com/note: hello
extraEnv:
  - name: LOGAGENT_READ_FROM
    value: tail
extraVolumes:
  - name: fluentd-b-auth
    secret:
      secretName: fluentd-b-auth
extraVolumeMounts:
  - name: fluentd-b-auth
    mountPath: /etc/logagent/fluentd-b
    readOnly: true
podMonitor:
  interval: 15s
  labels:
    release: kube-prometheus-stack
`

// TestHelmValues: each value reaches the objects it is for, and only those.
func TestHelmValues(t *testing.T) {
	defaults, err := helmTemplate(t)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	defaultObjs := decodeObjects(t, defaults)
	rendered, err := helmTemplate(t, "-f", writeFile(t, "values.yaml", []byte(allValues)), "--api-versions", podMonitorAPI)
	if err != nil {
		t.Fatalf("helm template -f all-values: %v", err)
	}
	objs := decodeObjects(t, rendered)
	ds := find(t, objs, "DaemonSet")
	pod := get(ds, "spec", "template").(map[string]any)
	c := agentContainer(t, ds)

	t.Run("forward servers and TLS in the config", func(t *testing.T) {
		_, cfg := configOf(t, objs)
		wantServers := []any{
			map[string]any{"address": "fluentd-0.logging.svc:24224"},
			map[string]any{"address": "fluentd-1.logging.svc:24224", "standby": true},
		}
		if got := get(cfg, "forward", "servers"); !reflect.DeepEqual(got, wantServers) {
			t.Errorf("forward.servers = %v, want %v", got, wantServers)
		}
		wantTLS := map[string]any{
			"enabled":     true,
			"ca_file":     "/etc/logagent/tls/ca.crt",
			"cert_file":   "/etc/logagent/tls/tls.crt",
			"key_file":    "/etc/logagent/tls/tls.key",
			"server_name": "fluentd.logging.svc",
		}
		if got := get(cfg, "forward", "tls"); !reflect.DeepEqual(got, wantTLS) {
			t.Errorf("forward.tls = %v, want %v", got, wantTLS)
		}
		wantDiscovery := map[string]any{"name": "_forward._tcp.fluentd-headless.logging.svc.cluster.local.", "type": "SRV", "refresh": "30s"}
		if got := get(cfg, "forward", "discovery"); !reflect.DeepEqual(got, wantDiscovery) {
			t.Errorf("forward.discovery = %v, want %v", got, wantDiscovery)
		}
		if got := get(cfg, "forward", "gzip"); got != true {
			t.Errorf("forward.gzip = %v, want true", got)
		}
		// Defaults of the other sections survive a partial override.
		if got := get(cfg, "collector", "state_dir"); got != "/var/lib/logagent" {
			t.Errorf("collector.state_dir = %v, want the default /var/lib/logagent", got)
		}
		if got := get(cfg, "log", "level"); got != "debug" {
			t.Errorf("log.level = %v, want debug", got)
		}
	})

	t.Run("TLS Secret projected next to the config", func(t *testing.T) {
		vol := get(pod, "spec", "volumes", 0).(map[string]any)
		want := map[string]any{"secret": map[string]any{"name": "fluentd-tls", "items": []any{
			map[string]any{"key": "ca.crt", "path": "tls/ca.crt"},
			map[string]any{"key": "tls.crt", "path": "tls/tls.crt"},
			map[string]any{"key": "tls.key", "path": "tls/tls.key"},
		}}}
		if vol["name"] != "config" || !reflect.DeepEqual(get(vol, "projected", "sources", 1), want) {
			t.Errorf("config volume = %v, want a projected source %v", vol, want)
		}
	})

	t.Run("shared key and credentials from the Secret as env", func(t *testing.T) {
		env := map[string]any{}
		for _, e := range c["env"].([]any) {
			env[e.(map[string]any)["name"].(string)] = e
		}
		for name, key := range map[string]string{
			"LOGAGENT_FORWARD_SHARED_KEY": "shared_key",
			"LOGAGENT_FORWARD_USERNAME":   "username",
			"LOGAGENT_FORWARD_PASSWORD":   "password",
		} {
			want := map[string]any{"name": name, "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "fluentd-auth", "key": key}}}
			if !reflect.DeepEqual(env[name], want) {
				t.Errorf("env %s = %v, want %v", name, env[name], want)
			}
		}
		if want := map[string]any{"name": "LOGAGENT_READ_FROM", "value": "tail"}; !reflect.DeepEqual(env["LOGAGENT_READ_FROM"], want) {
			t.Errorf("extraEnv: env LOGAGENT_READ_FROM = %v, want %v", env["LOGAGENT_READ_FROM"], want)
		}
		if env["NODE_NAME"] == nil {
			t.Error("NODE_NAME is gone from env")
		}
	})

	t.Run("extra volumes and mounts", func(t *testing.T) {
		vols := get(pod, "spec", "volumes").([]any)
		want := map[string]any{"name": "fluentd-b-auth", "secret": map[string]any{"secretName": "fluentd-b-auth"}}
		if last := vols[len(vols)-1]; !reflect.DeepEqual(last, want) {
			t.Errorf("last volume = %v, want %v", last, want)
		}
		mounts := c["volumeMounts"].([]any)
		wantMount := map[string]any{"name": "fluentd-b-auth", "mountPath": "/etc/logagent/fluentd-b", "readOnly": true}
		if last := mounts[len(mounts)-1]; !reflect.DeepEqual(last, wantMount) {
			t.Errorf("last volume mount = %v, want %v", last, wantMount)
		}
	})

	t.Run("scheduling, image and resources", func(t *testing.T) {
		checks := []struct {
			what      string
			got, want any
		}{
			{"image", c["image"], "registry.example.com/logagent:1.2.3"},
			{"imagePullSecrets", get(pod, "spec", "imagePullSecrets"), []any{map[string]any{"name": "registry-creds"}}},
			{"tolerations", get(pod, "spec", "tolerations"), []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "logging", "effect": "NoSchedule"}}},
			{"nodeSelector", get(pod, "spec", "nodeSelector"), map[string]any{"kubernetes.io/os": "linux"}},
			{"resources", c["resources"], map[string]any{
				"requests": map[string]any{"cpu": "100m", "memory": "96Mi"},
				"limits":   map[string]any{"memory": "256Mi"},
			}},
			{"pod label tier", get(pod, "metadata", "labels", "tier"), "node"},
			{"pod annotation", get(pod, "metadata", "annotations", "example.com/note"), "hello"},
			// The selector is immutable: extra labels must stay out of it.
			{"selector", get(ds, "spec", "selector", "matchLabels"), map[string]any{
				"app.kubernetes.io/name": "logagent", "app.kubernetes.io/instance": "logagent",
			}},
			{"PodMonitor interval", get(find(t, objs, "PodMonitor"), "spec", "podMetricsEndpoints", 0, "interval"), "15s"},
			{"PodMonitor release label", get(find(t, objs, "PodMonitor"), "metadata", "labels", "release"), "kube-prometheus-stack"},
		}
		for _, ch := range checks {
			if !reflect.DeepEqual(ch.got, ch.want) {
				t.Errorf("%s = %v, want %v", ch.what, ch.got, ch.want)
			}
		}
	})

	t.Run("common labels and annotations on every object", func(t *testing.T) {
		for _, o := range objs {
			if got := get(o, "metadata", "labels", "team"); got != "platform" {
				t.Errorf("%s: label team = %v, want platform", key(o), got)
			}
			if got := get(o, "metadata", "annotations", "owner"); got != "platform@example.com" {
				t.Errorf("%s: annotation owner = %v, want platform@example.com", key(o), got)
			}
		}
		if got := get(pod, "metadata", "labels", "team"); got != "platform" {
			t.Errorf("pod template: label team = %v, want platform", got)
		}
	})

	t.Run("a config change rolls the pods only with rollOnConfigChange", func(t *testing.T) {
		// By default the pod template does not depend on config: the agents
		// reload the ConfigMap live.
		if a := get(find(t, defaultObjs, "DaemonSet"), "spec", "template", "metadata", "annotations", "checksum/config"); a != nil {
			t.Errorf("checksum/config at defaults = %v, want none", a)
		}
		if a := get(pod, "metadata", "annotations", "checksum/config"); a != nil {
			t.Errorf("checksum/config with another config = %v, want none", a)
		}
		sum := func(args ...string) any {
			out, err := helmTemplate(t, append([]string{"--set", "rollOnConfigChange=true"}, args...)...)
			if err != nil {
				t.Fatalf("helm template: %v", err)
			}
			return get(find(t, decodeObjects(t, out), "DaemonSet"), "spec", "template", "metadata", "annotations", "checksum/config")
		}
		before, after := sum(), sum("--set", "config.log.level=debug")
		if before == nil || before == after {
			t.Errorf("rollOnConfigChange: checksum/config %v at defaults, %v with another config: want both set and different", before, after)
		}
	})

	t.Run("optional objects can be left out", func(t *testing.T) {
		out, err := helmTemplate(t, "--api-versions", podMonitorAPI, "--set", "podMonitor.enabled=false",
			"--set", "service.enabled=false", "--set", "rbac.create=false", "--set", "serviceAccount.create=false",
			"--set", "serviceAccount.name=existing", "--set", "metrics.podAnnotations=false", "--set", "priorityClassName=")
		if err != nil {
			t.Fatalf("helm template: %v", err)
		}
		objs := decodeObjects(t, out)
		var kinds []string
		for _, o := range objs {
			kinds = append(kinds, o["kind"].(string))
		}
		sort.Strings(kinds)
		if want := []string{"ConfigMap", "DaemonSet"}; !reflect.DeepEqual(kinds, want) {
			t.Errorf("kinds = %v, want %v", kinds, want)
		}
		ds := find(t, objs, "DaemonSet")
		if got := get(ds, "spec", "template", "spec", "serviceAccountName"); got != "existing" {
			t.Errorf("serviceAccountName = %v, want existing", got)
		}
		if got := get(ds, "spec", "template", "spec", "priorityClassName"); got != nil {
			t.Errorf("priorityClassName = %v, want none", got)
		}
		if got := get(ds, "spec", "template", "metadata", "annotations", "prometheus.io/scrape"); got != nil {
			t.Errorf("prometheus.io/scrape = %v, want none", got)
		}
	})

	t.Run("a release name without logagent prefixes the objects", func(t *testing.T) {
		helm := kubetest.RequireBin(t, "helm")
		out, err := run(repoRoot(t), toolEnv(t), nil, helm, "template", "logs", chartDir, "--namespace", "obs", "--api-versions", podMonitorAPI)
		if err != nil {
			t.Fatalf("helm template: %v", err)
		}
		for _, o := range decodeObjects(t, []byte(out)) {
			if name := get(o, "metadata", "name"); name != "logs-logagent" {
				t.Errorf("%s: name %v, want logs-logagent", key(o), name)
			}
		}
	})
}

// TestHelmRejectsBadValues: values that would render a broken agent fail the
// render with a message naming them.
func TestHelmRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"tls.secretName=x"}, "tls.secretName is set but tls.enabled is false"},
		{[]string{"tls.enabled=true", "tls.secretName=x", "tls.certKey=tls.crt"}, "tls.certKey and tls.keyKey: set both or neither"},
		{[]string{"tls.enabled=true", "tls.certKey=a", "tls.keyKey=b"}, "tls.certKey and tls.keyKey need tls.secretName"},
		{[]string{"sharedKey.usernameKey=u"}, "sharedKey.usernameKey and sharedKey.passwordKey need sharedKey.secretName"},
		{[]string{"config.listen=nowhere"}, `config.listen "nowhere" has no port`},
		// values.schema.json: misspelt or mistyped values fail instead of being ignored.
		{[]string{"tls.enable=true"}, "additional properties 'enable' not allowed"},
		{[]string{"podMonitor.interval=30 seconds"}, "/podMonitor/interval"},
		{[]string{"config.output=fluentd"}, "/config/output"},
		// config.* is checked key by key, with the agent's own schema.
		{[]string{"config.forwrd.gzip=true"}, "additional properties 'forwrd' not allowed"},
		{[]string{"config.collector.rotate_wait=soon"}, "/config/collector/rotate_wait"},
		{[]string{"config.forward.window_bytes=many"}, "/config/forward/window_bytes"},
		{[]string{"hostPaths.state=var/lib/logagent"}, "/hostPaths/state"},
	} {
		t.Run(strings.Join(tc.set, ","), func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			_, err := helmTemplate(t, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("helm template --set %v: error %v, want one containing %q", tc.set, err, tc.want)
			}
		})
	}
}

// tlsFiles writes a CA bundle and a client certificate and key under the
// names allValues gives the chart's tls Secret keys, and returns the folder.
func tlsFiles(t testing.TB) string {
	t.Helper()
	pki, err := forwardtest.NewPKI("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := pki.Issue("logagent", nil, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"ca.crt": pki.CAPEM, "tls.crt": cert, "tls.key": key} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestShippedConfigsPassAgentCheck: the agent itself (`logagent check`, its
// strict decoder and Validate) accepts the configuration file of
// deploy/kubernetes and of the chart with every value set.
func TestShippedConfigsPassAgentCheck(t *testing.T) {
	bin := agentBinary(t)
	allRendered, err := helmTemplate(t, "-f", writeFile(t, "values.yaml", []byte(allValues)))
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	for name, objs := range map[string][]object{
		"deploy/kubernetes":    decodeObjects(t, kustomize(t)),
		"chart with allValues": decodeObjects(t, allRendered),
	} {
		t.Run(name, func(t *testing.T) {
			raw, _ := configOf(t, objs)
			// check opens the TLS files the configuration names: put real
			// ones where the chart mounts the Secret's keys.
			raw = strings.ReplaceAll(raw, "/etc/logagent/tls/", tlsFiles(t)+"/")
			path := writeFile(t, "config.yaml", []byte(raw))
			// NODE_NAME is what the DaemonSet sets from the downward API; the
			// pod's ServiceAccount (which check reports it cannot check
			// outside a cluster) and the hostPath state directory are the
			// pod's.
			out, err := run(t.TempDir(), []string{"NODE_NAME=node-a"}, nil, bin, "check", "--config", path, "--state-dir", t.TempDir())
			if err != nil || !strings.Contains(out, "configuration ok") {
				t.Fatalf("logagent check: %v\n%s\nconfig:\n%s", err, out, raw)
			}
		})
	}
	// The check is not vacuous: a misspelt key fails it, naming the key.
	path := writeFile(t, "bad.yaml", []byte("forward:\n  server:\n    - address: x:1\n"))
	out, err := run(t.TempDir(), []string{"NODE_NAME=node-a"}, nil, bin, "check", "--config", path)
	if err == nil {
		t.Fatalf("logagent check accepted a misspelt key: %s", out)
	}
	if !strings.Contains(err.Error(), "server") {
		t.Errorf("logagent check's error does not name the bad key: %v", err)
	}
}

// TestSharedKeyEnvReachesAgent: the chart passes the Forward shared key (and
// user credentials) as LOGAGENT_FORWARD_* environment variables; the agent
// must read them. A config naming a user but no shared key is invalid unless
// the environment supplies the key.
func TestSharedKeyEnvReachesAgent(t *testing.T) {
	bin := agentBinary(t)
	path := writeFile(t, "config.yaml", []byte(
		"output: forward\nenrich:\n  enabled: false\nforward:\n  servers:\n    - address: 127.0.0.1:24224\n  username: fluent\n"))
	if _, err := run(t.TempDir(), nil, nil, bin, "check", "--config", path); err == nil {
		t.Fatal("logagent check accepted a username without a shared key: the test below would prove nothing")
	}
	out, err := run(t.TempDir(), []string{"LOGAGENT_FORWARD_SHARED_KEY=s3cret", "LOGAGENT_FORWARD_PASSWORD=pw"}, nil, bin, "check", "--config", path)
	if err != nil {
		t.Fatalf("with LOGAGENT_FORWARD_SHARED_KEY set, logagent check still fails: the agent ignores the variable the chart's sharedKey.secretName sets: %v\n%s", err, out)
	}
}
