package enrich

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// listThenWatch makes the reflector list with resourceVersion=0 (served from
// the API server's watch cache) and then watch, instead of client-go's
// default watch-list stream: the streaming mode retries an unreachable server
// inside the reflector without reporting it, so the watch error handler (the
// watch_restarts metric, Ready's last error) would never see the outage. For
// one node's pods the list is small either way.
type listThenWatch struct{ *cache.ListWatch }

func (listThenWatch) IsWatchListSemanticsUnSupported() bool { return true }

// newPodInformer watches the pods bound to one node: an initial list with
// resourceVersion=0 served from the watch cache, then watch events. No pod
// is ever fetched one by one.
func newPodInformer(client Client, node string, f filters) cache.SharedIndexInformer {
	sel := fields.OneTermEqualSelector("spec.nodeName", node).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return client.List(ctx, "pods", o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return client.Watch(ctx, "pods", o)
		},
	}
	inf := cache.NewSharedIndexInformerWithOptions(
		listThenWatch{lw}, &corev1.Pod{},
		cache.SharedIndexInformerOptions{ObjectDescription: "pods on node " + node},
	)
	// Only fails once the informer runs, which it does not yet.
	_ = inf.SetTransform(func(obj any) (any, error) {
		if p, ok := obj.(*corev1.Pod); ok {
			return slimPod(p, f), nil
		}
		return obj, nil
	})
	return inf
}

// newNamespaceInformer watches every namespace, for their labels.
func newNamespaceInformer(client Client, f filters) cache.SharedIndexInformer {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return client.List(ctx, "namespaces", o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return client.Watch(ctx, "namespaces", o)
		},
	}
	inf := cache.NewSharedIndexInformerWithOptions(
		listThenWatch{lw}, &corev1.Namespace{},
		cache.SharedIndexInformerOptions{ObjectDescription: "namespaces"},
	)
	_ = inf.SetTransform(func(obj any) (any, error) {
		if ns, ok := obj.(*corev1.Namespace); ok {
			return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name:            ns.Name,
				UID:             ns.UID,
				ResourceVersion: ns.ResourceVersion,
				Labels:          keepKeys(ns.Labels, f.labels, excludeKey),
				Annotations:     policyAnnotations(ns.Annotations),
			}}, nil
		}
		return obj, nil
	})
	return inf
}

// slimPod keeps only what enrichment reads, so the informer's store (and the
// cache that points into it) holds a small fraction of each pod: no spec
// beyond container names and images, no managedFields, no annotations outside
// the allow-list or on the deny-list (last-applied-configuration alone can be
// kilobytes). It is
// idempotent, as client-go requires of transforms.
func slimPod(p *corev1.Pod, f filters) *corev1.Pod {
	s := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            p.Name,
			Namespace:       p.Namespace,
			UID:             p.UID,
			ResourceVersion: p.ResourceVersion,
			Labels:          keepKeys(p.Labels, f.labels, append([]string{podTemplateHashLabel}, policyLabels(f)...)...),
			Annotations:     withPolicyAnnotations(keepKeys(p.Annotations, f.annotations, slimKeep(f)...), p.Annotations),
		},
		Spec: corev1.PodSpec{NodeName: p.Spec.NodeName},
		Status: corev1.PodStatus{
			PodIP:                      p.Status.PodIP,
			InitContainerStatuses:      slimStatuses(p.Status.InitContainerStatuses),
			ContainerStatuses:          slimStatuses(p.Status.ContainerStatuses),
			EphemeralContainerStatuses: slimStatuses(p.Status.EphemeralContainerStatuses),
		},
	}
	if ref := controllerRef(p.OwnerReferences); ref != nil {
		s.OwnerReferences = []metav1.OwnerReference{{Kind: ref.Kind, Name: ref.Name, Controller: ref.Controller}}
	}
	for _, c := range p.Spec.InitContainers {
		s.Spec.InitContainers = append(s.Spec.InitContainers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range p.Spec.Containers {
		s.Spec.Containers = append(s.Spec.Containers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range p.Spec.EphemeralContainers {
		s.Spec.EphemeralContainers = append(s.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: c.Name, Image: c.Image},
		})
	}
	return s
}

// withPolicyAnnotations adds the policy annotations of all to kept: the
// collector's policies need them whatever the allow-list copies into records.
func withPolicyAnnotations(kept, all map[string]string) map[string]string {
	p := policyAnnotations(all)
	if kept == nil {
		return p
	}
	maps.Copy(kept, p)
	return kept
}

// policyLabels are the label keys the policies' selectors read.
func policyLabels(f filters) []string {
	if f.policyLabels == nil {
		return nil
	}
	return *f.policyLabels
}

// slimKeep are the annotations enrichment reads whatever the allow-list.
func slimKeep(f filters) []string {
	if f.podExclusion {
		return []string{mirrorAnnotation, excludeKey, excludeContainersKey}
	}
	return []string{mirrorAnnotation}
}

func slimStatuses(in []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(in))
	for i, s := range in {
		out[i] = corev1.ContainerStatus{Name: s.Name, Image: s.Image, ContainerID: s.ContainerID}
		if t := s.LastTerminationState.Terminated; t != nil {
			out[i].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: t.ContainerID}
		}
	}
	return out
}

// keepKeys copies the entries of m that f allows or that are listed in also.
func keepKeys(m map[string]string, f keyFilter, also ...string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if f.allows(k) {
			out[k] = v
		}
	}
	for _, k := range also {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

// podHandler feeds pod events into the cache.
func podHandler(c *podCache) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if p, ok := obj.(*corev1.Pod); ok {
				c.upsertPod(p)
			}
		},
		UpdateFunc: func(_, obj any) {
			if p, ok := obj.(*corev1.Pod); ok {
				c.upsertPod(p)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj // a delete missed while the watch was down, seen at relist
			}
			if p, ok := obj.(*corev1.Pod); ok {
				c.deletePod(p)
			}
		},
	}
}

// namespaceHandler feeds namespace events into the cache.
func namespaceHandler(c *podCache) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if ns, ok := obj.(*corev1.Namespace); ok {
				c.upsertNamespace(ns)
			}
		},
		UpdateFunc: func(_, obj any) {
			if ns, ok := obj.(*corev1.Namespace); ok {
				c.upsertNamespace(ns)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if ns, ok := obj.(*corev1.Namespace); ok {
				c.deleteNamespace(ns.Name)
			}
		},
	}
}

// watchErrorHandler counts and logs the reflector's list/watch failures, after
// each of which it backs off and lists again, and remembers the last one for
// Ready.
func watchErrorHandler(name string, m *metrics, log *slog.Logger, last func(error)) cache.WatchErrorHandlerWithContext {
	restarts := m.watchRestarts.WithLabelValues(name)
	return func(_ context.Context, _ *cache.Reflector, err error) {
		restarts.Inc()
		last(err)
		switch {
		case errors.Is(err, io.EOF):
			// The server closed the watch: routine, the reflector resumes.
			log.Debug("enrich: watch closed", "informer", name)
		case strings.Contains(err.Error(), "context canceled"):
			log.Debug("enrich: watch stopped", "informer", name, "err", err)
		default:
			log.Warn("enrich: list/watch failed; retrying with backoff", "informer", name, "err", err)
		}
	}
}
