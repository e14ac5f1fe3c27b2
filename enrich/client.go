package enrich

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// userAgent names the agent in the API server's audit log and metrics.
const userAgent = "logagent-enrich"

// Client is what enrich reads from the API server: pods and namespaces,
// listed, then watched.
//
// The agent's client (NewClient) is a REST client that knows the core/v1
// group only. client-go's Clientset knows every API group: importing it
// registers some 60 groups' types at start and links their typed clients,
// which cost the agent ~9 MiB of resident memory (binary pages touched by
// that registration, and the scheme) for two resources.
type Client interface {
	ListPods(ctx context.Context, o metav1.ListOptions) (*corev1.PodList, error)
	WatchPods(ctx context.Context, o metav1.ListOptions) (watch.Interface, error)
	ListNamespaces(ctx context.Context, o metav1.ListOptions) (*corev1.NamespaceList, error)
	WatchNamespaces(ctx context.Context, o metav1.ListOptions) (watch.Interface, error)
}

// NewClient returns a client from the in-cluster service-account
// configuration when kubeconfig is "", else from that kubeconfig file (its
// current context). It does not contact the server, so an unreachable API
// server is not an error here.
func NewClient(kubeconfig string) (Client, error) {
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return NewClientForConfig(cfg)
}

// NewClientForConfig returns a client for an existing REST configuration
// (tests use it with a ServiceAccount's).
func NewClientForConfig(cfg *rest.Config) (Client, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = userAgent
	}
	// Protobuf halves the bytes and the decoding work of pod lists and events.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("enrich: scheme: %w", err)
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	cfg.GroupVersion = &corev1.SchemeGroupVersion
	cfg.APIPath = "/api"
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("enrich: client for %s: %w", cfg.Host, err)
	}
	return &coreClient{rc: rc, params: runtime.NewParameterCodec(scheme)}, nil
}

// coreClient lists and watches core/v1 resources, as client-go's typed
// client does.
type coreClient struct {
	rc     *rest.RESTClient
	params runtime.ParameterCodec
}

func (c *coreClient) ListPods(ctx context.Context, o metav1.ListOptions) (*corev1.PodList, error) {
	out := &corev1.PodList{}
	return out, c.list(ctx, "pods", o, out)
}

func (c *coreClient) WatchPods(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	return c.watch(ctx, "pods", o)
}

func (c *coreClient) ListNamespaces(ctx context.Context, o metav1.ListOptions) (*corev1.NamespaceList, error) {
	out := &corev1.NamespaceList{}
	return out, c.list(ctx, "namespaces", o, out)
}

func (c *coreClient) WatchNamespaces(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	return c.watch(ctx, "namespaces", o)
}

func (c *coreClient) list(ctx context.Context, resource string, o metav1.ListOptions, into runtime.Object) error {
	return c.rc.Get().Resource(resource).VersionedParams(&o, c.params).Timeout(timeoutOf(o)).Do(ctx).Into(into)
}

func (c *coreClient) watch(ctx context.Context, resource string, o metav1.ListOptions) (watch.Interface, error) {
	o.Watch = true
	return c.rc.Get().Resource(resource).VersionedParams(&o, c.params).Timeout(timeoutOf(o)).Watch(ctx)
}

// timeoutOf is the request timeout the options ask for (0: none).
func timeoutOf(o metav1.ListOptions) time.Duration {
	if o.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*o.TimeoutSeconds) * time.Second
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("enrich: in-cluster config (set enrich.kubeconfig outside a cluster): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("enrich.kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}
