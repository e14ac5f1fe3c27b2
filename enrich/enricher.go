package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logagent/logagent/collector"
)

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("enrich: closed")

// Enricher is the pipeline stage that replaces a batch's path metadata with
// its pod's full metadata, or drops the batch when selection says so. It is a
// collector.Sink wrapping the next stage.
type Enricher struct {
	// cfg is the configuration as applied (Reconfigure changes it, under mu).
	cfg    Config
	client Client
	next   collector.Sink
	log    *slog.Logger
	m      *metrics
	cache  *podCache
	park   *parker

	// live holds the settings the batch path reads, swapped whole by
	// Reconfigure.
	live atomic.Pointer[liveSettings]
	// inf is the current set of informers; Reconfigure replaces it when
	// what they keep of each object changes (reconfigure.go).
	inf atomic.Pointer[informerSet]

	// mu orders Reconfigure against Run's start and end.
	mu      sync.Mutex
	runCtx  context.Context // Run's, nil before Run
	stopped bool            // Run has ended: no informers start any more
	infWG   sync.WaitGroup  // the informers' goroutines, of every set

	// Counters resolved once, off the batch path.
	lookups  map[string]prometheus.Counter
	excluded map[string]prometheus.Counter

	lastErr atomic.Pointer[error] // the latest list/watch failure, for Ready
	running atomic.Bool
	closed  atomic.Bool

	// nsSynced is set once a namespace informer has synced; until then
	// (for at most MissWait after Run starts) batches of cached pods wait too,
	// so a namespace's exclusion label cannot be missed at start-up.
	nsSynced atomic.Bool
	// podSynced is set once a pod informer has synced. Both stay set when
	// Reconfigure replaces the informers: the cache keeps what it has while
	// the new ones list again.
	podSynced atomic.Bool
	// regrace wakes the janitor when deleted_grace changes.
	regrace   chan struct{}
	startedAt atomic.Int64 // Unix ns when Run began

	// policies resolve the collector's per-container policies (policy.go);
	// nil until SetPolicies.
	policies   atomic.Pointer[collector.Policies]
	policyWait *policyWaits
}

// liveSettings are the settings Send reads on every batch.
type liveSettings struct {
	missWait time.Duration
	nsSel    namespaceFilter
}

func newLiveSettings(cfg Config) *liveSettings {
	return &liveSettings{missWait: cfg.MissWait, nsSel: namespaceFilter{include: cfg.IncludeNamespaces, exclude: cfg.ExcludeNamespaces}}
}

// New builds an Enricher for cfg.NodeName's pods. It does not contact the
// API server: Run starts the informers.
func New(cfg Config, client Client, next collector.Sink, reg prometheus.Registerer, log *slog.Logger) (*Enricher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled {
		return nil, errors.New("enrich: New called with enabled: false")
	}
	if client == nil || next == nil {
		return nil, errors.New("enrich: New needs a client and a next sink")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := newMetrics(reg)
	e := &Enricher{
		cfg:        cfg,
		client:     client,
		next:       next,
		log:        log,
		m:          m,
		park:       newParker(m),
		lookups:    make(map[string]prometheus.Counter),
		excluded:   make(map[string]prometheus.Counter),
		policyWait: newPolicyWaits(),
		regrace:    make(chan struct{}, 1),
	}
	e.live.Store(newLiveSettings(cfg))
	for _, r := range []string{resultHit, resultMiss, resultLate, resultDeletedGrace} {
		e.lookups[r] = m.lookups.WithLabelValues(r)
	}
	for _, r := range []string{reasonNamespaceConfig, reasonNamespaceLabel, reasonPodAnnotation, reasonContainerAnnotation} {
		e.excluded[r] = m.excluded.WithLabelValues(r)
	}
	f := newFilters(cfg, nil, new([]string))
	e.cache = newPodCache(cfg.NodeName, cfg.DeletedGrace, f, m, func() { signal(e.park.wake) })
	e.cache.log = log
	inf, err := e.newInformers(cfg, f)
	if err != nil {
		return nil, err
	}
	e.inf.Store(inf)
	return e, nil
}

// newFilters are what cfg keeps of pods and namespaces; policies and
// policyLabels are SetPolicies', carried from one set of filters to the next.
func newFilters(cfg Config, policies *collector.Policies, policyLabels *[]string) filters {
	return filters{
		labels:       newKeyFilter(cfg.Labels),
		annotations:  newKeyFilter(cfg.Annotations).without(cfg.ExcludeAnnotations),
		podExclusion: cfg.AllowPodExclusion,
		policies:     policies,
		policyLabels: policyLabels,
	}
}

// Send enriches b and passes it to the next stage. On a cache hit that is a
// direct, blocking call of next.Send (so the next stage's backpressure
// reaches the collector). A batch of a pod not yet cached is parked and Send
// returns at once: the batch goes on when its pod arrives or after MissWait,
// behind any earlier batches of the same pod. Excluded batches are counted
// and acknowledged.
func (e *Enricher) Send(ctx context.Context, b *collector.Batch) error {
	if e.closed.Load() {
		return ErrClosed
	}
	src := b.Source
	if src == nil {
		return e.next.Send(ctx, b) // nothing to look up by: pass as it is
	}
	live := e.live.Load()
	if live.nsSel.excluded(src.Namespace) {
		e.exclude(b, reasonNamespaceConfig)
		return nil
	}
	key := podKey(src)
	if e.park.join(key, b) {
		return nil
	}
	m, res := e.cache.lookup(src)
	if m != nil && e.namespacesReady() {
		return e.deliver(ctx, b, m, res)
	}
	if m != nil && live.missWait > 0 && e.park.park(key, b, time.Now().Add(live.missWait)) {
		return nil // waits for the namespaces, not for the pod
	}
	if m != nil {
		return e.deliver(ctx, b, m, res)
	}
	if live.missWait <= 0 || e.cache.gaveUpOn(key) {
		e.lookups[resultMiss].Inc()
		return e.next.Send(ctx, b)
	}
	if e.park.park(key, b, time.Now().Add(live.missWait)) {
		return nil
	}
	return e.release(ctx, b) // Close has begun: no waiting
}

// namespacesReady reports whether namespace labels are known, or have been
// waited for long enough: MissWait after Run began.
func (e *Enricher) namespacesReady() bool {
	if e.nsSynced.Load() {
		return true
	}
	inf := e.inf.Load()
	if inf.ns == nil {
		return true
	}
	if inf.nsReg.HasSynced() {
		e.nsSynced.Store(true)
		return true
	}
	start := e.startedAt.Load()
	return start != 0 && time.Since(time.Unix(0, start)) >= e.live.Load().missWait
}

// deliver attaches m's metadata to b (or drops b if selection says so) and
// passes it on.
func (e *Enricher) deliver(ctx context.Context, b *collector.Batch, m *podMeta, res string) error {
	e.lookups[res].Inc()
	if reason := m.sel.excludedReason(b.Source.Container); reason != "" {
		e.exclude(b, reason)
		return nil
	}
	b.Kubernetes = m.kubernetes(b.Source.Container, b.Source.ContainerID)
	return e.next.Send(ctx, b)
}

// release delivers a parked batch: late if its pod has arrived, else with
// the path metadata, and later batches of the pod stop waiting.
func (e *Enricher) release(ctx context.Context, b *collector.Batch) error {
	m, res := e.cache.lookup(b.Source)
	if m != nil {
		if res == resultHit {
			res = resultLate
		}
		return e.deliver(ctx, b, m, res)
	}
	e.cache.giveUp(podKey(b.Source))
	e.lookups[resultMiss].Inc()
	return e.next.Send(ctx, b)
}

func (e *Enricher) exclude(b *collector.Batch, reason string) {
	e.excluded[reason].Add(float64(len(b.Records)))
	b.Ack()
}

// Run runs the informers, releases parked batches and forgets deleted pods
// past their grace period, until ctx is done. It returns nil then. With the
// API server unreachable it keeps running (batches go on with their path
// metadata) while the informers retry; Ready reports the degraded state.
func (e *Enricher) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("enrich: Run called twice")
	}
	e.startedAt.Store(time.Now().UnixNano())
	e.mu.Lock()
	e.runCtx = ctx
	e.startLocked(e.inf.Load(), false)
	e.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.janitor(ctx) }()
	e.releaser(ctx)
	wg.Wait()
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	e.infWG.Wait()
	return nil
}

// releaser releases parked queues as their pods arrive or their deadlines pass.
func (e *Enricher) releaser(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ready := func(b *collector.Batch) bool {
		m, _ := e.cache.lookup(b.Source)
		return m != nil && e.namespacesReady()
	}
	for {
		keys, next := e.park.due(time.Now(), ready)
		for _, k := range keys {
			if err := e.park.drain(ctx, k, e.release); err != nil {
				return // ctx is done; Close releases the rest
			}
		}
		if len(keys) > 0 {
			continue // more may have become due while delivering
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-e.park.wake:
		case <-timer.C:
		}
	}
}

// janitor forgets deleted pods once their grace period is over.
func (e *Enricher) janitor(ctx context.Context) {
	interval := func() time.Duration {
		return min(max(e.cache.gracePeriod()/4, 100*time.Millisecond), 10*time.Second)
	}
	every := interval()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.regrace: // deleted_grace was reconfigured
		}
		e.cache.prune()
		e.policyWait.prune(max(2*e.live.Load().missWait, time.Second))
		if d := interval(); d != every {
			every = d
			t.Reset(every)
		}
	}
}

// Close releases every parked batch now into next (enriched if its pod has
// arrived, else with the path metadata) and makes later Sends fail with
// ErrClosed. Call it after the collector has stopped sending and before
// closing the next stage.
func (e *Enricher) Close(ctx context.Context) error {
	e.closed.Store(true)
	if err := e.park.closeAll(ctx, e.release); err != nil {
		return fmt.Errorf("enrich: close: %d batches not released: %w", e.park.len(), err)
	}
	return nil
}

// Ready returns nil once the informers have delivered their initial lists,
// else an error naming the degraded state and the last API failure.
func (e *Enricher) Ready() error {
	if !e.running.Load() {
		return errors.New("enrich: not running")
	}
	var missing []string
	inf := e.inf.Load()
	if !e.podSynced.Load() && !inf.podReg.HasSynced() {
		missing = append(missing, informerPods)
	}
	if inf.ns != nil && !e.nsSynced.Load() && !inf.nsReg.HasSynced() {
		missing = append(missing, informerNamespaces)
	}
	if len(missing) == 0 {
		return nil
	}
	err := fmt.Errorf("enrich: degraded: %v informer(s) for node %q not synced with the API server; records carry path metadata only", missing, e.cache.node)
	if last := e.lastErr.Load(); last != nil {
		err = fmt.Errorf("%w (last error: %v)", err, *last)
	}
	return err
}
