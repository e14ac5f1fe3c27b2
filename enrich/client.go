package enrich

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// userAgent names the agent in the API server's audit log and metrics.
const userAgent = "logagent-enrich"

// NewClient returns a client from the in-cluster service-account
// configuration when kubeconfig is "", else from that kubeconfig file (its
// current context). It does not contact the server, so an unreachable API
// server is not an error here.
func NewClient(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return NewClientForConfig(cfg)
}

// NewClientForConfig returns a client for an existing REST configuration
// (tests use it with a ServiceAccount's).
func NewClientForConfig(cfg *rest.Config) (kubernetes.Interface, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = userAgent
	}
	// Protobuf halves the bytes and the decoding work of pod lists and events.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("enrich: client for %s: %w", cfg.Host, err)
	}
	return c, nil
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
