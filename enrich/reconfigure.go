package enrich

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// NotLiveError names the settings Reconfigure left at their running values
// because they cannot change while the Enricher runs; it applied the others.
type NotLiveError struct {
	Keys []string // "enrich.kubeconfig"
}

func (e *NotLiveError) Error() string {
	return "enrich: cannot change while running, restart to apply (the running value stays): " + strings.Join(e.Keys, ", ")
}

// IsNotLive reports whether err is a *NotLiveError: the configuration was
// applied but for the settings it names.
func IsNotLive(err error) bool {
	var nl *NotLiveError
	return errors.As(err, &nl)
}

// Reconfigure applies cfg to the running Enricher. No batch is lost, held
// twice or reordered: parked batches keep waiting under the new settings.
//
//   - include_namespaces, exclude_namespaces, miss_wait: from the next batch;
//   - deleted_grace: for every deleted pod from now, those already in their
//     grace period included;
//   - labels, annotations, exclude_annotations, allow_pod_exclusion,
//     namespace_labels: these decide what the informers keep of each object,
//     so new informers list this node's pods (and the namespaces) again with
//     the new filters, served from the API server's watch cache. Meanwhile
//     the cache keeps serving: at once without what the new lists drop,
//     and with what they add as soon as the lists arrive. Pods deleted in
//     between are found missing from the new list and get their grace period.
//
// enabled, kubeconfig and node_name (the client, and the node the informers
// select) cannot change live: they keep their running values and are named
// in a *NotLiveError, the rest is applied. An invalid cfg changes nothing and
// is returned as an error.
func (e *Enricher) Reconfigure(cfg Config) error {
	if e.closed.Load() {
		return ErrClosed
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return ErrClosed
	}
	old := e.cfg
	var notLive []string
	if cfg.Enabled != old.Enabled {
		notLive = append(notLive, "enrich.enabled")
		cfg.Enabled = old.Enabled
	}
	if cfg.NodeName != old.NodeName {
		notLive = append(notLive, "node_name")
		cfg.NodeName = old.NodeName
	}
	if cfg.Kubeconfig != old.Kubeconfig {
		notLive = append(notLive, "enrich.kubeconfig")
		cfg.Kubeconfig = old.Kubeconfig
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("enrich: configuration refused, the running one stays: %w", err)
	}

	relist := filtersChanged(old, cfg)
	var next *informerSet
	if relist {
		e.cache.mu.Lock()
		f := newFilters(cfg, e.cache.f.policies, e.cache.f.policyLabels)
		e.cache.mu.Unlock()
		var err error
		if next, err = e.newInformers(cfg, f); err != nil {
			return fmt.Errorf("enrich: configuration refused, the running one stays: %w", err)
		}
	}

	e.live.Store(newLiveSettings(cfg))
	if cfg.DeletedGrace != old.DeletedGrace {
		e.cache.grace.Store(int64(cfg.DeletedGrace))
		signal(e.regrace)
	}
	if relist {
		cur := e.inf.Load()
		if cur.stop != nil {
			// Stopped first, and waited for: an event of the old informers
			// handled after the new ones' would put back what the new
			// filters leave out.
			cur.stop()
			<-cur.done
		}
		e.cache.setFilters(next.f, cfg.NamespaceLabels)
		if old.NamespaceLabels && !cfg.NamespaceLabels {
			e.m.synced.DeleteLabelValues(informerNamespaces)
		}
		e.inf.Store(next)
		if e.runCtx != nil {
			e.startLocked(next, true)
		}
	}
	e.cfg = cfg
	e.log.Info("enrich: configuration applied", "relist", relist)
	signal(e.park.wake) // a shorter miss_wait may release parked batches now
	if len(notLive) > 0 {
		return &NotLiveError{Keys: notLive}
	}
	return nil
}

// filtersChanged reports whether what the informers keep of pods and
// namespaces differs between a and b.
func filtersChanged(a, b Config) bool {
	return !slices.Equal(a.Labels, b.Labels) || !slices.Equal(a.Annotations, b.Annotations) ||
		!slices.Equal(a.ExcludeAnnotations, b.ExcludeAnnotations) ||
		a.AllowPodExclusion != b.AllowPodExclusion || a.NamespaceLabels != b.NamespaceLabels
}

// informerSet is the pod informer and, with namespace_labels, the namespace
// informer, with the filters that decide what they keep of each object.
type informerSet struct {
	f             filters
	pod, ns       cache.SharedIndexInformer
	podReg, nsReg cache.ResourceEventHandlerRegistration
	stop          context.CancelFunc // nil until started
	done          chan struct{}      // closed once started and every goroutine of theirs returned
}

// newInformers builds (without starting) the informers cfg asks for, feeding
// the cache.
func (e *Enricher) newInformers(cfg Config, f filters) (*informerSet, error) {
	setLast := func(err error) { e.lastErr.Store(&err) }
	inf := &informerSet{f: f, done: make(chan struct{})}
	inf.pod = newPodInformer(e.client, e.cache.node, f)
	if err := inf.pod.SetWatchErrorHandlerWithContext(watchErrorHandler(informerPods, e.m, e.log, setLast)); err != nil {
		return nil, fmt.Errorf("enrich: pod informer: %w", err)
	}
	reg, err := inf.pod.AddEventHandler(podHandler(e.cache))
	if err != nil {
		return nil, fmt.Errorf("enrich: pod informer: %w", err)
	}
	inf.podReg = reg
	if !e.podSynced.Load() {
		e.m.synced.WithLabelValues(informerPods).Set(0)
	}
	if cfg.NamespaceLabels {
		inf.ns = newNamespaceInformer(e.client, f)
		if err := inf.ns.SetWatchErrorHandlerWithContext(watchErrorHandler(informerNamespaces, e.m, e.log, setLast)); err != nil {
			return nil, fmt.Errorf("enrich: namespace informer: %w", err)
		}
		reg, err := inf.ns.AddEventHandler(namespaceHandler(e.cache))
		if err != nil {
			return nil, fmt.Errorf("enrich: namespace informer: %w", err)
		}
		inf.nsReg = reg
		if !e.nsSynced.Load() {
			e.m.synced.WithLabelValues(informerNamespaces).Set(0)
		}
	}
	return inf, nil
}

// startLocked runs inf's informers until Run's context is done or inf is
// replaced (e.mu held, Run started). A set that replaces another, once it
// has synced, tells the cache which pods and namespaces its lists no
// longer hold: deleted while no informer watched.
func (e *Enricher) startLocked(inf *informerSet, replacing bool) {
	ctx, cancel := context.WithCancel(e.runCtx)
	inf.stop = cancel
	var wg sync.WaitGroup
	run := func(name string, i cache.SharedIndexInformer, reg cache.ResourceEventHandlerRegistration, synced *atomic.Bool) {
		wg.Add(2)
		go func() { defer wg.Done(); i.RunWithContext(ctx) }()
		go func() {
			defer wg.Done()
			if cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
				e.m.synced.WithLabelValues(name).Set(1)
				synced.Store(true)
				e.log.Info("enrich: informer synced", "informer", name, "node", e.cache.node)
				signal(e.park.wake)
			}
		}()
	}
	run(informerPods, inf.pod, inf.podReg, &e.podSynced)
	regs := []cache.InformerSynced{inf.podReg.HasSynced}
	if inf.ns != nil {
		run(informerNamespaces, inf.ns, inf.nsReg, &e.nsSynced)
		regs = append(regs, inf.nsReg.HasSynced)
	}
	if replacing {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cache.WaitForCacheSync(ctx.Done(), regs...) {
				e.cache.reconcile(uidsOf(inf.pod), namesOf(inf.ns))
			}
		}()
	}
	e.infWG.Add(1)
	go func() {
		defer e.infWG.Done()
		wg.Wait()
		close(inf.done)
	}()
}

// uidsOf lists the uids of the pods in an informer's store.
func uidsOf(inf cache.SharedIndexInformer) map[string]bool {
	out := map[string]bool{}
	for _, o := range inf.GetStore().List() {
		if p, ok := o.(*corev1.Pod); ok {
			out[string(p.UID)] = true
		}
	}
	return out
}

// namesOf lists the namespaces in an informer's store; nil without one.
func namesOf(inf cache.SharedIndexInformer) map[string]bool {
	if inf == nil {
		return nil
	}
	out := map[string]bool{}
	for _, o := range inf.GetStore().List() {
		if ns, ok := o.(*corev1.Namespace); ok {
			out[ns.Name] = true
		}
	}
	return out
}

// setFilters makes f the cache's filters and rebuilds every pod with them:
// what f drops is gone at once; what it adds comes with the objects listed
// again. Without namespace labels the namespaces are forgotten.
func (c *podCache) setFilters(f filters, namespaceLabels bool) {
	c.mu.Lock()
	c.f = f
	if !namespaceLabels {
		clear(c.namespaces)
	}
	for name, ns := range c.namespaces {
		kept := slices.DeleteFunc(slices.Clone(ns.labels), func(l kv) bool { return !f.labels.allows(l.k) })
		c.namespaces[name] = &nsMeta{labels: kept, excluded: ns.excluded, policy: ns.policy}
	}
	for _, old := range c.pods {
		m := buildMeta(old.pod, c.namespaces[old.fields.namespace], f)
		m.deletedAt.Store(old.deletedAt.Load())
		c.putLocked(m)
	}
	c.mu.Unlock()
	if c.added != nil {
		c.added()
	}
}

// reconcile starts the grace period of the live pods whose uid is not in
// pods, and forgets the namespaces not in namespaces (unless nil): they
// were deleted while no informer was watching.
func (c *podCache) reconcile(pods, namespaces map[string]bool) {
	c.mu.Lock()
	var gone []*corev1.Pod
	for uid, m := range c.pods {
		if m.deletedAt.Load() == 0 && !pods[uid] {
			gone = append(gone, m.pod)
		}
	}
	if namespaces != nil {
		for name := range c.namespaces {
			if !namespaces[name] {
				delete(c.namespaces, name)
			}
		}
	}
	c.mu.Unlock()
	for _, p := range gone {
		c.deletePod(p)
	}
}
