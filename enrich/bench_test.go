package enrich

import (
	"context"
	"testing"
	"time"

	"github.com/logagent/logagent/collector"
)

const benchRecords = 64

// benchEnricher is a synced Enricher with one cached pod and a next stage
// that does nothing.
func benchEnricher(b *testing.B) (*Enricher, *collector.Source) {
	b.Helper()
	pod := newPod("shop", "web-5d8f7c9b6-x2x", "u-1", withContainers("app", "side"),
		labelled("pod-template-hash", "5d8f7c9b6"), labelled("app.kubernetes.io/name", "web"),
		labelled("app.kubernetes.io/version", "1.4.2"), ownedBy("ReplicaSet", "web-5d8f7c9b6"),
		annotated("prometheus.io/scrape", "true"), status("app", "containerd://c1", ""))
	client := newFakeClient(pod, namespace("shop", map[string]string{"team": "shop"}))
	nop := collector.SinkFunc(func(context.Context, *collector.Batch) error { return nil })
	e, err := New(testConfig(), client, nop, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	waitFor(b, 10*time.Second, "synced", func() bool { return e.Ready() == nil })
	src := source("shop", "web-5d8f7c9b6-x2x", "u-1", "app", "c1")
	waitFor(b, 10*time.Second, "namespace labels", func() bool {
		m, _ := e.cache.lookup(src)
		return m != nil && len(m.fields.nsLabels) > 0
	})
	return e, src
}

// BenchmarkSendHit is the enrich step on the usual path: the pod is cached.
// ns/op and allocs/op are per batch of benchRecords records.
func BenchmarkSendHit(b *testing.B) {
	e, src := benchEnricher(b)
	batches := make([]*collector.Batch, 1024)
	for i := range batches {
		batches[i] = batch(src, benchRecords, nil)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := e.Send(ctx, batches[i%len(batches)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchRecords, "ns/record")
}

// BenchmarkSendHitParallel is the same with concurrent senders (the
// collector's file readers), to show lock contention on the hit path.
func BenchmarkSendHitParallel(b *testing.B) {
	e, src := benchEnricher(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		bt := batch(src, benchRecords, nil)
		for pb.Next() {
			if err := e.Send(ctx, bt); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBuildMeta is the cost per pod version (an informer event): slim
// the pod, build and encode both containers' maps.
func BenchmarkBuildMeta(b *testing.B) {
	pod := newPod("shop", "web-5d8f7c9b6-x2x", "u-1", withContainers("app", "side"),
		labelled("pod-template-hash", "5d8f7c9b6"), labelled("app.kubernetes.io/name", "web"),
		labelled("app.kubernetes.io/version", "1.4.2"), ownedBy("ReplicaSet", "web-5d8f7c9b6"),
		annotated("prometheus.io/scrape", "true"), status("app", "containerd://c1", ""), status("side", "containerd://s1", ""))
	f := filters{labels: newKeyFilter([]string{"*"}), annotations: newKeyFilter([]string{"*"})}
	ns := &nsMeta{labels: []kv{{"team", "shop"}}}
	b.ReportAllocs()
	for b.Loop() {
		buildMeta(slimPod(pod, f), ns, f)
	}
}
