package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// plainObjects reads deploy/kubernetes' files as kustomization.yaml lists
// them, without kubectl (so this runs under -short too; the kustomization
// has no transformers, and TestHelmMatchesKustomize compares with kubectl's
// rendering).
func plainObjects(t testing.TB) []object {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy", "kubernetes")
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	var objs []object
	for _, r := range k.Resources {
		data, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, decodeObjects(t, data)...)
	}
	return objs
}

// typed converts an object to a typed API struct.
func typed[T any](t testing.TB, o object) *T {
	t.Helper()
	data, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", key(o), err)
	}
	return &v
}

// TestDaemonSetRequirements checks deploy/kubernetes against what the agent
// needs of it, and its objects against each other: the things a server-side
// dry run accepts either way.
func TestDaemonSetRequirements(t *testing.T) {
	objs := plainObjects(t)
	ds := typed[appsv1.DaemonSet](t, find(t, objs, "DaemonSet"))
	pod := ds.Spec.Template
	spec := pod.Spec
	c := spec.Containers[0]
	_, cfg := configOf(t, objs)

	t.Run("every node", func(t *testing.T) {
		if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists ||
			spec.Tolerations[0].Key != "" || spec.Tolerations[0].Effect != "" {
			t.Errorf("tolerations %+v: want one {operator: Exists}, which tolerates every taint", spec.Tolerations)
		}
		if len(spec.NodeSelector) > 0 || spec.Affinity != nil {
			t.Errorf("nodeSelector %v, affinity %v: the agent belongs on every node", spec.NodeSelector, spec.Affinity)
		}
		if spec.PriorityClassName == "" {
			t.Error("no priorityClassName")
		}
		u := ds.Spec.UpdateStrategy
		if u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil ||
			u.RollingUpdate.MaxSurge == nil || u.RollingUpdate.MaxSurge.IntValue() != 0 {
			t.Errorf("updateStrategy %+v: want RollingUpdate with maxSurge 0 (two agents on a node would share the state directory)", u)
		}
	})

	t.Run("host paths", func(t *testing.T) {
		mounts := map[string]corev1.VolumeMount{}
		for _, m := range c.VolumeMounts {
			mounts[m.Name] = m
		}
		vols := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			vols[v.Name] = v
		}
		for _, p := range []string{"/var/log/pods", "/var/log/containers", "/var/lib/docker/containers"} {
			found := false
			for name, m := range mounts {
				v := vols[name]
				if v.HostPath != nil && v.HostPath.Path == p {
					found = true
					if m.MountPath != p || !m.ReadOnly {
						t.Errorf("hostPath %s mounted at %s, readOnly %v: want read-only at the same path (the kubelet's links are absolute)", p, m.MountPath, m.ReadOnly)
					}
				}
			}
			if !found {
				t.Errorf("hostPath %s is not mounted", p)
			}
		}
		stateDir, _ := get(cfg, "collector", "state_dir").(string)
		st, ok := mounts["state"]
		v := vols["state"]
		if !ok || st.MountPath != stateDir || st.ReadOnly || v.HostPath == nil || v.HostPath.Path != "/var/lib/logagent" ||
			v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectoryOrCreate {
			t.Errorf("state: mount %+v, volume %+v: want hostPath /var/lib/logagent (DirectoryOrCreate), writable, at collector.state_dir %q", st, v.VolumeSource, stateDir)
		}
		glob, _ := get(cfg, "collector", "log_glob").(string)
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return strings.HasPrefix(glob, m.MountPath+"/") }) {
			t.Errorf("collector.log_glob %q is under no mount", glob)
		}
		cm := find(t, objs, "ConfigMap")
		proj := vols["config"].Projected
		if proj == nil || proj.Sources[0].ConfigMap == nil || proj.Sources[0].ConfigMap.Name != get(cm, "metadata", "name") ||
			mounts["config"].MountPath+"/config.yaml" != strings.TrimPrefix(c.Args[1], "--config=") {
			t.Errorf("the container's --config (%v) is not the ConfigMap's config.yaml", c.Args)
		}
	})

	t.Run("identity and API access", func(t *testing.T) {
		var nodeName *corev1.EnvVar
		for i := range c.Env {
			if c.Env[i].Name == "NODE_NAME" {
				nodeName = &c.Env[i]
			}
		}
		if nodeName == nil || nodeName.ValueFrom == nil || nodeName.ValueFrom.FieldRef == nil || nodeName.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
			t.Errorf("NODE_NAME %+v: want it from the downward API's spec.nodeName", nodeName)
		}
		sa := find(t, objs, "ServiceAccount")
		if spec.ServiceAccountName != get(sa, "metadata", "name") {
			t.Errorf("serviceAccountName %q is not the ServiceAccount %v", spec.ServiceAccountName, get(sa, "metadata", "name"))
		}
		crb := find(t, objs, "ClusterRoleBinding")
		cr := find(t, objs, "ClusterRole")
		if get(crb, "roleRef", "name") != get(cr, "metadata", "name") ||
			get(crb, "subjects", 0, "name") != get(sa, "metadata", "name") ||
			get(crb, "subjects", 0, "namespace") != get(sa, "metadata", "namespace") {
			t.Errorf("the ClusterRoleBinding does not bind the ClusterRole to the ServiceAccount: %v", crb)
		}
		want := []any{map[string]any{"apiGroups": []any{""}, "resources": []any{"pods", "namespaces"}, "verbs": []any{"get", "list", "watch"}}}
		if d := diff(cr["rules"], want, 5); len(d) > 0 {
			t.Errorf("ClusterRole rules: %v", d)
		}
	})

	t.Run("security context", func(t *testing.T) {
		sc := c.SecurityContext
		if sc == nil {
			t.Fatal("no container securityContext")
		}
		checks := []struct {
			what string
			ok   bool
		}{
			{"readOnlyRootFilesystem", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem},
			{"allowPrivilegeEscalation false", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
			{"not privileged", sc.Privileged == nil || !*sc.Privileged},
			{"capabilities drop ALL", sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"})},
			{"capabilities add only DAC_READ_SEARCH", sc.Capabilities != nil && slices.Equal(sc.Capabilities.Add, []corev1.Capability{"DAC_READ_SEARCH"})},
			{"explicit runAsUser", sc.RunAsUser != nil},
			{"seccomp RuntimeDefault", spec.SecurityContext != nil && spec.SecurityContext.SeccompProfile != nil &&
				spec.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
			{"no host namespaces", !spec.HostNetwork && !spec.HostPID && !spec.HostIPC},
		}
		for _, ch := range checks {
			if !ch.ok {
				t.Errorf("securityContext: want %s", ch.what)
			}
		}
	})

	t.Run("resources, probes and shutdown", func(t *testing.T) {
		r := c.Resources
		want := map[string]string{"requests.cpu": "50m", "requests.memory": "64Mi", "limits.memory": "128Mi"}
		got := map[string]resource.Quantity{"requests.cpu": r.Requests[corev1.ResourceCPU], "requests.memory": r.Requests[corev1.ResourceMemory], "limits.memory": r.Limits[corev1.ResourceMemory]}
		for k, w := range want {
			if q := got[k]; q.Cmp(resource.MustParse(w)) != 0 {
				t.Errorf("resources %s = %s, want %s", k, q.String(), w)
			}
		}
		if _, ok := r.Limits[corev1.ResourceCPU]; ok {
			t.Error("a CPU limit throttles bursts of logs into lag")
		}
		listen, _ := get(cfg, "listen").(string)
		port, err := strconv.Atoi(listen[strings.LastIndex(listen, ":")+1:])
		if err != nil || len(c.Ports) != 1 || int(c.Ports[0].ContainerPort) != port {
			t.Errorf("container ports %+v: want the config's listen port %q", c.Ports, listen)
		}
		for name, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port.String() != c.Ports[0].Name {
				t.Errorf("probe for %s: %+v, want an HTTP GET of %s on port %s", name, p, name, c.Ports[0].Name)
			}
		}
		timeout, err := time.ParseDuration(get(cfg, "shutdown_timeout").(string))
		if err != nil {
			t.Fatal(err)
		}
		if spec.TerminationGracePeriodSeconds == nil || time.Duration(*spec.TerminationGracePeriodSeconds)*time.Second < timeout+5*time.Second {
			t.Errorf("terminationGracePeriodSeconds %v: want at least shutdown_timeout %v plus a margin", spec.TerminationGracePeriodSeconds, timeout)
		}
	})

	t.Run("scraping", func(t *testing.T) {
		a := pod.Annotations
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != strconv.Itoa(int(c.Ports[0].ContainerPort)) || a["prometheus.io/path"] != "/metrics" {
			t.Errorf("prometheus.io annotations %v: want scrape true, port %d, path /metrics", a, c.Ports[0].ContainerPort)
		}
		podLabels := labels.Set(pod.Labels)
		if !labels.SelectorFromSet(ds.Spec.Selector.MatchLabels).Matches(podLabels) {
			t.Error("the DaemonSet's selector does not match its pods")
		}
		svc := typed[corev1.Service](t, find(t, objs, "Service"))
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses ||
			!labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) || len(svc.Spec.Ports) != 1 ||
			svc.Spec.Ports[0].TargetPort.String() != c.Ports[0].Name {
			t.Errorf("Service %+v: want headless, publishing unready agents, selecting the pods, targeting port %s", svc.Spec, c.Ports[0].Name)
		}
		pmData, err := os.ReadFile(filepath.Join(repoRoot(t), withPodMonitor, "podmonitor.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		pm := unstructured.Unstructured{Object: find(t, decodeObjects(t, pmData), "PodMonitor")}
		sel, _, _ := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels")
		eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
		if pm.GetNamespace() != ds.Namespace || !labels.SelectorFromSet(sel).Matches(podLabels) || len(eps) != 1 ||
			get(eps[0], "port") != c.Ports[0].Name || get(eps[0], "path") != "/metrics" {
			t.Errorf("PodMonitor %v: want it in the DaemonSet's namespace, selecting its pods, scraping port %s /metrics", pm.Object["spec"], c.Ports[0].Name)
		}
	})

	t.Run("namespace", func(t *testing.T) {
		ns := find(t, objs, "Namespace")
		name := get(ns, "metadata", "name")
		if name != "logagent" {
			t.Errorf("namespace %v, want logagent", name)
		}
		for _, o := range objs {
			if k := o["kind"]; k != "Namespace" && k != "ClusterRole" && k != "ClusterRoleBinding" && get(o, "metadata", "namespace") != name {
				t.Errorf("%s is not in namespace %v", key(o), name)
			}
		}
		if get(ns, "metadata", "labels", "pod-security.kubernetes.io/enforce") != "privileged" {
			t.Error("the namespace does not admit hostPath volumes (pod-security.kubernetes.io/enforce: privileged)")
		}
	})
}
