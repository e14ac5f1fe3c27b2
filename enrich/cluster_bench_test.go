package enrich

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/logagent/logagent/test/kubetest"
)

const (
	memPods       = 5000
	memPodsOnNode = 110 // the kubelet's default max-pods
	memNamespaces = 10
)

// realisticPod looks like a Deployment's pod as the API server stores it:
// labels, a last-applied-configuration annotation, two containers with env,
// resources, probes and mounts.
func realisticPod(ns string, i int, node string) *corev1.Pod {
	app := fmt.Sprintf("svc-%03d", i%200)
	hash := fmt.Sprintf("%09x", i%200*7919)
	env := make([]corev1.EnvVar, 8)
	for j := range env {
		env[j] = corev1.EnvVar{Name: fmt.Sprintf("SETTING_%d", j), Value: strings.Repeat("v", 24)}
	}
	// Each container its own port and port name, as in a valid pod: the API
	// server warns about duplicates (once per pod created, printed by
	// client-go), which would bury the benchmark's output.
	ctr := func(name, portName string, port int32) corev1.Container {
		return corev1.Container{
			Name: name, Image: "registry.example.com/team/" + app + "-" + name + ":1.27.3",
			Args:  []string{fmt.Sprintf("--port=%d", port), "--log-level=info"},
			Env:   env,
			Ports: []corev1.ContainerPort{{Name: portName, ContainerPort: port, Protocol: corev1.ProtocolTCP}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(port)}}},
			VolumeMounts:   []corev1.VolumeMount{{Name: "config", MountPath: "/etc/" + app}},
		}
	}
	yes := true
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("%s-%s-%05d", app, hash, i),
			Labels: map[string]string{
				"app": app, "pod-template-hash": hash, "app.kubernetes.io/name": app,
				"app.kubernetes.io/version": "1.27.3", "team": fmt.Sprintf("team-%d", i%17),
			},
			Annotations: map[string]string{
				"prometheus.io/scrape":                             "true",
				"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat(`{"apiVersion":"apps/v1","kind":"Deployment"}`, 30),
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-" + hash, UID: "00000000-0000-0000-0000-000000000001", Controller: &yes}},
		},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{ctr("app", "http", 8080), ctr("proxy", "proxy", 15001)},
			Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
				ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: app}}}}},
			Tolerations: []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}},
		},
	}
}

// populate creates memPods pods, memPodsOnNode of them on testNode, and
// gives those a running status with container ids.
func populate(b *testing.B, c *kubetest.Cluster) {
	b.Helper()
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = 2000, 2000
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	for n := range memNamespaces {
		mustCreateB(b, func() error {
			_, err := admin.CoreV1().Namespaces().Create(ctx, namespace(fmt.Sprintf("ns-%d", n), map[string]string{"team": "t"}), metav1.CreateOptions{})
			return err
		})
	}
	start := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				node := fmt.Sprintf("node-%03d", i%45)
				onNode := i%45 == 0 && i/45 < memPodsOnNode
				if onNode {
					node = testNode
				}
				p, err := admin.CoreV1().Pods(fmt.Sprintf("ns-%d", i%memNamespaces)).Create(ctx, realisticPod(fmt.Sprintf("ns-%d", i%memNamespaces), i, node), metav1.CreateOptions{})
				if err == nil && onNode {
					p.Status.PodIP = fmt.Sprintf("10.1.%d.%d", i/250, i%250)
					p.Status.Phase = corev1.PodRunning
					for _, ctr := range p.Spec.Containers {
						p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
							Name: ctr.Name, Image: ctr.Image, Ready: true,
							ContainerID: fmt.Sprintf("containerd://%064x", i*10+len(ctr.Name)),
							ImageID:     "registry.example.com/team/x@sha256:" + strings.Repeat("ab", 32),
						})
					}
					_, err = admin.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range memPods {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		b.Fatalf("create pods: %v", firstErr)
	}
	fmt.Printf("created %d pods (%d on %s) in %v\n", memPods, memPodsOnNode, testNode, time.Since(start).Round(time.Millisecond))
}

func mustCreateB(b *testing.B, create func() error) {
	b.Helper()
	if err := create(); err != nil && !strings.Contains(err.Error(), "already exists") {
		b.Fatal(err)
	}
}

func heapAfterGC() uint64 {
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkInformerMemory measures the heap that enrichment's informers and
// cache hold after sync, with memPods pods in a real cluster of which
// memPodsOnNode are on this node, against the same process before it started
// (the no-informer baseline). For comparison, a plain client-go informer on
// the same node's pods keeping whole objects. Run with -benchtime=1x.
func BenchmarkInformerMemory(b *testing.B) {
	if _, err := kubetest.Bin("kube-apiserver"); err != nil {
		b.Skipf("needs the test tools (make tools): %v", err)
	}
	c := kubetest.Start(b)
	populate(b, c)

	for _, v := range []struct {
		name   string
		change func(*Config)
		cached int
	}{
		{"enricher", func(*Config) {}, memPodsOnNode},
		{"enricher-last-applied-copied", func(c *Config) { c.ExcludeAnnotations = nil }, memPodsOnNode},
		{"enricher-no-annotations", func(c *Config) { c.Annotations = nil }, memPodsOnNode},
		{"enricher-empty-node", func(c *Config) { c.NodeName = "node-empty" }, 0},
	} {
		b.Run(v.name, func(b *testing.B) {
			client, err := NewClientForConfig(c.Config)
			if err != nil {
				b.Fatal(err)
			}
			cfg := testConfig()
			v.change(&cfg)
			var total uint64
			for range b.N {
				base := heapAfterGC()
				e, err := New(cfg, client, &recorder{}, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(b.Context())
				done := make(chan error, 1)
				began := time.Now()
				go func() { done <- e.Run(ctx) }()
				waitFor(b, time.Minute, "synced", func() bool { return e.Ready() == nil })
				synced := time.Since(began)
				if got := value(b, e.m.podsCached); got != float64(v.cached) {
					b.Fatalf("pods cached = %v, want %d", got, v.cached)
				}
				after := heapAfterGC()
				runtime.KeepAlive(e)
				total += after - base
				b.Logf("baseline heap %d KiB, with enricher %d KiB (+%d KiB), %d pods cached, synced in %v",
					base/1024, after/1024, (after-base)/1024, v.cached, synced.Round(time.Millisecond))
				cancel()
				<-done
			}
			b.ReportMetric(float64(total)/float64(b.N)/1024, "KiB-heap")
			b.ReportMetric(0, "ns/op")
		})
	}

	b.Run("plain-informer-full-objects", func(b *testing.B) {
		cfg := rest.CopyConfig(c.Config)
		cfg.ContentType = "application/vnd.kubernetes.protobuf"
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			b.Fatal(err)
		}
		var total uint64
		for range b.N {
			base := heapAfterGC()
			f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", testNode).String()
			}))
			inf := f.Core().V1().Pods().Informer()
			ctx, cancel := context.WithCancel(b.Context())
			f.Start(ctx.Done())
			if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
				b.Fatal("not synced")
			}
			if n := len(inf.GetStore().ListKeys()); n != memPodsOnNode {
				b.Fatalf("store has %d pods", n)
			}
			after := heapAfterGC()
			runtime.KeepAlive(inf)
			total += after - base
			b.Logf("baseline heap %d KiB, with plain informer %d KiB (+%d KiB)", base/1024, after/1024, (after-base)/1024)
			cancel()
			f.Shutdown()
		}
		b.ReportMetric(float64(total)/float64(b.N)/1024, "KiB-heap")
		b.ReportMetric(0, "ns/op")
	})
}
