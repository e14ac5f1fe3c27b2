package enrich

import (
	"errors"
	"fmt"
	"path"
	"time"
)

// Config is the enrich section of the agent's configuration file.
type Config struct {
	// Enabled turns enrichment on. When off, cmd/logagent does not build an
	// Enricher and batches keep the collector's path metadata.
	Enabled bool `yaml:"enabled"`
	// NodeName is the node this agent runs on (the downward API's spec.nodeName);
	// the pod informer only sees pods bound to it.
	NodeName string `yaml:"-"` // set by cmd from the top-level node_name
	// Kubeconfig is a kubeconfig file to use outside a cluster; "" means the
	// in-cluster service-account configuration.
	Kubeconfig string `yaml:"kubeconfig"`
	// NamespaceLabels runs a namespace informer so records carry
	// namespace_labels and the namespace exclusion label is honoured.
	NamespaceLabels bool `yaml:"namespace_labels"`
	// DeletedGrace is how long a deleted pod's metadata stays usable, so a
	// short-lived pod's last lines (read after its deletion) are still enriched.
	DeletedGrace time.Duration `yaml:"deleted_grace"`
	// MissWait bounds how long a batch of a pod not (yet) in the cache waits
	// for the informer before it goes on with the path metadata.
	MissWait time.Duration `yaml:"miss_wait"`
	// IncludeNamespaces, when not empty, keeps only these namespaces' logs.
	// Entries are path.Match patterns ("team-*").
	IncludeNamespaces []string `yaml:"include_namespaces"`
	// ExcludeNamespaces drops these namespaces' logs (path.Match patterns).
	ExcludeNamespaces []string `yaml:"exclude_namespaces"`
	// Labels is the allow-list of label keys copied into labels and
	// namespace_labels: exact keys, or prefixes ending in "*"; "*" copies all,
	// an empty list none.
	Labels []string `yaml:"labels"`
	// Annotations is the allow-list of annotation keys copied, as Labels.
	Annotations []string `yaml:"annotations"`
	// ExcludeAnnotations are annotation keys never copied, even when
	// Annotations allows them: exact keys, or prefixes ending in "*". The
	// default leaves out kubectl's last-applied-configuration, a whole
	// manifest that would otherwise travel with every record.
	ExcludeAnnotations []string `yaml:"exclude_annotations"`
	// AllowPodExclusion honours the pods' own selection annotations
	// (logagent.io/exclude, logagent.io/exclude-containers). Off by default,
	// as Fluent Bit's K8S-Logging.Exclude: with it on, anyone who can create
	// or annotate a pod can stop its logs being collected.
	AllowPodExclusion bool `yaml:"allow_pod_exclusion"`
}

// lastAppliedAnnotation is the annotation `kubectl apply` writes: the whole
// object as last applied, often kilobytes.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// DefaultConfig returns the defaults: enabled, namespace labels on, a 120 s
// grace for deleted pods, a 1 s wait for unknown pods, every label and
// annotation copied but kubectl's last-applied-configuration, pods' own
// exclusion annotations ignored. NodeName must still be set (usually from
// $NODE_NAME).
func DefaultConfig() Config {
	return Config{
		Enabled:            true,
		NamespaceLabels:    true,
		DeletedGrace:       120 * time.Second,
		MissWait:           time.Second,
		Labels:             []string{"*"},
		Annotations:        []string{"*"},
		ExcludeAnnotations: []string{lastAppliedAnnotation},
	}
}

// maxMissWait caps miss_wait: a parked batch holds the collector's in-flight
// budget and delays its file, so a long wait is a misconfiguration.
const maxMissWait = time.Minute

// Validate reports every bad key and why, in a fixed order.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("node_name: required for enrichment (set it from the downward API's spec.nodeName)"))
	}
	if c.DeletedGrace < 0 {
		errs = append(errs, fmt.Errorf("enrich.deleted_grace: %v is negative", c.DeletedGrace))
	}
	if c.MissWait < 0 || c.MissWait > maxMissWait {
		errs = append(errs, fmt.Errorf("enrich.miss_wait: %v is outside [0, %v]", c.MissWait, maxMissWait))
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"include_namespaces", c.IncludeNamespaces}, {"exclude_namespaces", c.ExcludeNamespaces}} {
		key := l.key
		for _, p := range l.list {
			if p == "" {
				errs = append(errs, fmt.Errorf("enrich.%s: empty pattern", key))
				continue
			}
			if _, err := path.Match(p, ""); err != nil {
				errs = append(errs, fmt.Errorf("enrich.%s: pattern %q: %w", key, p, err))
			}
		}
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"labels", c.Labels}, {"annotations", c.Annotations}, {"exclude_annotations", c.ExcludeAnnotations}} {
		for _, k := range l.list {
			if k == "" {
				errs = append(errs, fmt.Errorf("enrich.%s: empty key (use \"*\" for all, [] for none)", l.key))
			}
		}
	}
	return errors.Join(errs...)
}
