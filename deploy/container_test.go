package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// A container engine driven through its command line, and a pod's container
// translated into that engine's `run` flags, for the image test.

// engine is the container engine `make image` uses: Docker when an engine
// answers, else podman (daemonless).
type engine struct {
	name string   // "docker" or "podman"
	env  []string // added to every command's environment
}

// findEngine returns the engine, or skips t where there is none (fails it
// under CI, where .ci/run installs podman).
func findEngine(t testing.TB) engine {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: builds and runs the container image (not run under -short)")
	}
	if _, err := exec.LookPath("docker"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if exec.CommandContext(ctx, "docker", "info").Run() == nil {
			return engine{name: "docker"}
		}
	}
	if _, err := exec.LookPath("podman"); err == nil {
		var env []string
		if os.Getenv("CONTAINERS_CONF") == "" {
			// As deploy/image/build.sh: the settings sandboxed machines need.
			env = append(env, "CONTAINERS_CONF="+filepath.Join(repoRoot(t), "deploy", "image", "containers.conf"))
		}
		return engine{name: "podman", env: env}
	}
	msg := "neither a Docker engine nor podman is available; `make deps` installs podman and runc on Debian"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI must run the image test)")
	}
	t.Skip("skipping: " + msg)
	return engine{}
}

// cmd runs an engine command and returns its stdout; the error carries stderr.
func (e engine) cmd(args ...string) (string, error) {
	return run("", e.env, nil, e.name, args...)
}

// inspect returns one field of a container or image (a Go template).
func (e engine) inspect(t testing.TB, what, name, format string) string {
	t.Helper()
	out, err := e.cmd(what, "inspect", "--format", format, name)
	if err != nil {
		t.Fatalf("%s inspect %s: %v", what, name, err)
	}
	return strings.TrimSpace(out)
}

// agentPod is the DaemonSet's pod template as the test runs it.
type agentPod struct {
	spec      corev1.PodSpec
	container corev1.Container
	config    string // the ConfigMap's config.yaml
}

// loadAgentPod reads deploy/kubernetes' DaemonSet and ConfigMap.
func loadAgentPod(t testing.TB) agentPod {
	t.Helper()
	objs := plainObjects(t)
	ds := typed[appsv1.DaemonSet](t, find(t, objs, "DaemonSet"))
	raw, _ := configOf(t, objs)
	p := agentPod{spec: ds.Spec.Template.Spec, config: raw}
	if len(p.spec.Containers) != 1 || len(p.spec.InitContainers) > 0 {
		t.Fatalf("the DaemonSet's pod has %d containers and %d init containers: the image test runs exactly one",
			len(p.spec.Containers), len(p.spec.InitContainers))
	}
	p.container = p.spec.Containers[0]
	return p
}

// onlyFields fails t when v (a Kubernetes API struct) sets a field the test
// does not translate: a new setting in the manifest must be taught to the
// test rather than silently left out of the run.
func onlyFields(t testing.TB, what string, v any, known ...string) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(known, k) {
			t.Fatalf("%s.%s is set in daemonset.yaml, and the image test does not give it to the container: teach runFlags", what, k)
		}
	}
}

// capNames are the Linux capabilities by number (linux/capability.h).
var capNames = strings.Fields(`CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
	LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO
	SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE
	AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
	CHECKPOINT_RESTORE`)

// capMask is the capability set of the names, as /proc/<pid>/status shows it.
func capMask(t testing.TB, names []corev1.Capability) uint64 {
	t.Helper()
	var m uint64
	for _, n := range names {
		i := slices.Index(capNames, strings.TrimPrefix(string(n), "CAP_"))
		if i < 0 {
			t.Fatalf("unknown capability %s", n)
		}
		m |= 1 << i
	}
	return m
}

// runFlags translates the pod's container into `engine run` flags: its
// security context (container and pod level), its volume mounts with every
// hostPath p at node+p and the projected ConfigMap at configDir, its
// environment (the downward API's spec.nodeName as nodeName; env overrides
// or adds variables), its memory limit and its arguments. The network is the
// host's: the container reaches the Forward receiver on 127.0.0.1, and the
// test reaches the agent's /healthz there, as the kubelet's probes would
// reach the pod.
func (p agentPod) runFlags(t testing.TB, e engine, sc *corev1.SecurityContext, node, configDir, nodeName string, env map[string]string) []string {
	t.Helper()
	c := p.container
	onlyFields(t, "spec.template.spec.containers[0]", c, "name", "image", "imagePullPolicy", "args", "env", "ports",
		"livenessProbe", "readinessProbe", "resources", "securityContext", "volumeMounts")
	f := []string{"--network", "host"}

	// The pod's security context: seccomp RuntimeDefault is what both
	// engines apply when not told otherwise.
	if psc := p.spec.SecurityContext; psc != nil {
		onlyFields(t, "spec.template.spec.securityContext", psc, "seccompProfile")
		if psc.SeccompProfile != nil && psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Fatalf("seccompProfile %s: the image test knows RuntimeDefault only", psc.SeccompProfile.Type)
		}
	}
	if sc == nil {
		t.Fatal("the container has no securityContext")
	}
	onlyFields(t, "securityContext", sc, "runAsUser", "runAsGroup", "runAsNonRoot", "privileged",
		"allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities")
	if sc.RunAsUser != nil {
		user := strconv.FormatInt(*sc.RunAsUser, 10)
		if sc.RunAsGroup != nil {
			user += ":" + strconv.FormatInt(*sc.RunAsGroup, 10)
		}
		f = append(f, "--user", user)
	}
	if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && (sc.RunAsUser == nil || *sc.RunAsUser == 0) {
		t.Fatal("runAsNonRoot with uid 0: the kubelet would refuse to start the container")
	}
	if sc.Privileged != nil && *sc.Privileged {
		f = append(f, "--privileged")
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		f = append(f, "--security-opt", "no-new-privileges")
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		f = append(f, "--read-only")
		if e.name == "podman" {
			// podman's --read-only also mounts writable tmpfs on /tmp,
			// /run and /var/tmp; Kubernetes does not.
			f = append(f, "--read-only-tmpfs=false")
		}
	}
	if caps := sc.Capabilities; caps != nil {
		for _, name := range caps.Drop {
			f = append(f, "--cap-drop", string(name))
		}
		for _, name := range caps.Add {
			f = append(f, "--cap-add", string(name))
		}
	}

	// Volumes.
	vols := map[string]corev1.Volume{}
	for _, v := range p.spec.Volumes {
		vols[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		onlyFields(t, "volumeMounts["+m.Name+"]", m, "name", "mountPath", "readOnly")
		v, ok := vols[m.Name]
		if !ok {
			t.Fatalf("volumeMount %s names no volume", m.Name)
		}
		var src string
		switch {
		case v.HostPath != nil:
			src = filepath.Join(node, v.HostPath.Path)
			typ := corev1.HostPathUnset
			if v.HostPath.Type != nil {
				typ = *v.HostPath.Type
			}
			switch typ {
			case corev1.HostPathDirectory:
				if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
					t.Fatalf("hostPath %s (type Directory) does not exist on the test node: the kubelet would not start the pod", v.HostPath.Path)
				}
			case corev1.HostPathDirectoryOrCreate, corev1.HostPathUnset:
				// The kubelet (DirectoryOrCreate) or the runtime (no type)
				// creates a missing folder, root-owned, 0755.
				if err := os.MkdirAll(src, 0o755); err != nil {
					t.Fatal(err)
				}
			default:
				t.Fatalf("hostPath %s of type %s: the image test does not know it", v.HostPath.Path, typ)
			}
		case v.Projected != nil && len(v.Projected.Sources) == 1 && v.Projected.Sources[0].ConfigMap != nil:
			src = configDir
		default:
			t.Fatalf("volume %s: the image test knows hostPath and a projected ConfigMap only", m.Name)
		}
		opt := "rw"
		if m.ReadOnly {
			opt = "ro"
		}
		f = append(f, "--volume", src+":"+m.MountPath+":"+opt)
	}

	// Environment.
	vars := map[string]string{}
	for _, ev := range c.Env {
		switch {
		case ev.ValueFrom == nil:
			vars[ev.Name] = ev.Value
		case ev.ValueFrom.FieldRef != nil && ev.ValueFrom.FieldRef.FieldPath == "spec.nodeName":
			vars[ev.Name] = nodeName
		default:
			t.Fatalf("env %s: the image test knows values and spec.nodeName only", ev.Name)
		}
	}
	maps.Copy(vars, env)
	names := slices.Collect(maps.Keys(vars))
	sort.Strings(names)
	for _, n := range names {
		f = append(f, "--env", n+"="+vars[n])
	}

	// Resources: the memory limit is enforced; requests only schedule.
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		f = append(f, "--memory", strconv.FormatInt(q.Value(), 10))
	}
	if _, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		t.Fatal("a CPU limit: teach runFlags (--cpus)")
	}
	return f
}

// procFile reads /proc/<pid>/<file> of a container's process, as the host's
// kernel sees it.
func procFile(t testing.TB, e engine, name, file string) string {
	t.Helper()
	pid := e.inspect(t, "container", name, "{{.State.Pid}}")
	data, err := os.ReadFile(filepath.Join("/proc", pid, file))
	if err != nil {
		t.Fatalf("container %s's process %s: %v", name, pid, err)
	}
	return string(data)
}

// procStatus returns the fields of the container process's status.
func procStatus(t testing.TB, e engine, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(procFile(t, e, name, "status"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// mountOptions returns, per mount point inside the container, the mount's
// options (mountinfo: rw or ro first).
func mountOptions(t testing.TB, e engine, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(procFile(t, e, name, "mountinfo"), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 {
			out[f[4]] = f[5] // later mounts on the same point win, as they do in the container
		}
	}
	return out
}

// hexMask formats a capability set as /proc/<pid>/status does.
func hexMask(m uint64) string { return fmt.Sprintf("%016x", m) }
