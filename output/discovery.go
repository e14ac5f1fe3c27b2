package output

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Discovery resolves forward.discovery.name every refresh and makes the
// answer the set of discovered servers (Fluentd out_forward's service
// discovery; Prometheus' dns_sd_configs for the keys' names). A Kubernetes
// headless Service answers with the ready pods only, so a pod that stops
// being ready, or terminates, leaves the set and is drained while it still
// acknowledges. A lookup that fails, or finds no record, keeps the last good
// set: an outage of DNS, or a moment with no ready pod, must not take every
// server away. The resolver's own cache (none in Go's resolver; a node-local
// DNS cache's TTL) adds to how stale the set may be.

// lookupTimeout bounds one resolution.
const lookupTimeout = 10 * time.Second

// discoveredRecord is one server of a DNS answer.
type discoveredRecord struct {
	addr     string // host:port, as the server's identity
	dial     string // what to dial (an SRV target keeps its final dot: no search domains)
	host     string // its TLS name
	weight   int    // SRV's; 0 for A and AAAA
	priority int    // SRV's
}

// discovery is the last good answer and how lookups went. Guarded by Forward.mu.
type discovery struct {
	name        string // the name records answers (the configured one may have changed since)
	records     []discoveredRecord
	lastLookup  time.Time
	lastSuccess time.Time
	lastErr     error
	lastErrAt   time.Time
	wake        chan struct{} // a new discovery configuration: look up now
}

// specs are the servers of the last good answer, with the discovery
// settings of cfg. SRV records other than those of the lowest priority are
// standbys, and their weights keep their ratios around forward.discovery.weight.
func (d *discovery) specs(cfg ForwardConfig) []serverSpec {
	dc := cfg.Discovery
	if dc.Name == "" || len(d.records) == 0 {
		return nil
	}
	auth := dc.ServerAuth.or(cfg.auth())
	base := weightOr(dc.Weight)
	lowest, sum := math.MaxInt, 0
	for _, r := range d.records {
		lowest = min(lowest, r.priority)
		sum += max(r.weight, 1)
	}
	mean := float64(sum) / float64(len(d.records))
	specs := make([]serverSpec, 0, len(d.records))
	for _, r := range d.records {
		w := base
		if r.weight > 0 || sum > len(d.records) { // SRV weights that differ from 0
			w = int(math.Round(float64(base) * float64(max(r.weight, 1)) / mean))
			w = min(max(w, 1), maxWeight)
		}
		specs = append(specs, serverSpec{addr: r.addr, dial: r.dial, host: r.host, origin: d.name,
			standby: dc.Standby || r.priority != lowest, weight: w, auth: auth})
	}
	return specs
}

// lookup resolves dc's name into servers, sorted by address.
func (f *Forward) lookup(ctx context.Context, dc DiscoveryConfig) ([]discoveredRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	var recs []discoveredRecord
	switch dc.Type {
	case DiscoverySRV:
		_, srvs, err := f.resolver.LookupSRV(ctx, "", "", dc.Name)
		if err != nil && len(srvs) == 0 {
			return nil, err
		}
		// Records with malformed names come with an error and are left
		// out; the others are good.
		for _, s := range srvs {
			host := strings.TrimSuffix(s.Target, ".")
			port := strconv.Itoa(int(s.Port))
			recs = append(recs, discoveredRecord{addr: net.JoinHostPort(host, port), dial: net.JoinHostPort(s.Target, port),
				host: host, weight: int(s.Weight), priority: int(s.Priority)})
		}
	default:
		network := "ip4"
		if dc.Type == DiscoveryAAAA {
			network = "ip6"
		}
		ips, err := f.resolver.LookupNetIP(ctx, network, dc.Name)
		if err != nil {
			return nil, err
		}
		host := strings.TrimSuffix(dc.Name, ".")
		for _, ip := range ips {
			addr := netip.AddrPortFrom(ip.Unmap(), uint16(dc.Port)).String()
			recs = append(recs, discoveredRecord{addr: addr, dial: addr, host: host})
		}
	}
	slices.SortFunc(recs, func(a, b discoveredRecord) int { return cmp.Compare(a.addr, b.addr) })
	recs = slices.CompactFunc(recs, func(a, b discoveredRecord) bool { return a.addr == b.addr })
	return recs, nil
}

// notFound reports whether err says the name has no such records: an
// answer, not a failure.
func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// discoveryLoop looks the name up at start and every refresh, sooner
// (with backoff) after a failure, and at once when Reconfigure changes it.
func (f *Forward) discoveryLoop(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	attempt := 0
	for {
		f.mu.Lock()
		dc := f.cfg.Discovery
		f.mu.Unlock()
		if dc.Name != "" {
			recs, err := f.lookup(ctx, dc)
			if ctx.Err() != nil {
				return
			}
			f.mu.Lock()
			cur := f.cfg.Discovery
			if cur.Name == dc.Name && cur.Type == dc.Type && cur.Port == dc.Port {
				if f.applyLookupLocked(dc, recs, err) {
					attempt = 0
				} else {
					attempt++
				}
			}
			wait := cur.Refresh
			if attempt > 0 {
				wait = min(wait, f.backoffLocked(attempt-1))
			}
			f.mu.Unlock()
			t.Reset(wait)
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-f.disco.wake:
			t.Stop()
		}
	}
}

// applyLookupLocked makes a good answer the discovered set, or keeps the
// last one and counts why. It reports whether the answer was good.
func (f *Forward) applyLookupLocked(dc DiscoveryConfig, recs []discoveredRecord, err error) bool {
	d := &f.disco
	now := time.Now()
	d.lastLookup = now
	if err == nil && len(recs) == 0 {
		err = &net.DNSError{Err: "no records", Name: dc.Name, IsNotFound: true}
	}
	if err != nil {
		result := "error"
		if notFound(err) {
			result = "empty"
		}
		f.m.discoveryLookups.WithLabelValues(result).Inc()
		d.lastErr, d.lastErrAt = fmt.Errorf("%s %s: %w", dc.Type, dc.Name, err), now
		f.log.Warn("forward: discovery lookup failed; keeping the last servers found",
			"name", dc.Name, "type", dc.Type, "result", result, "error", err, "servers", len(d.records))
		return false
	}
	f.m.discoveryLookups.WithLabelValues("ok").Inc()
	d.lastSuccess = now
	if d.name == dc.Name && slices.Equal(recs, d.records) {
		return true
	}
	var added, removed []string
	for _, r := range recs {
		if !slices.ContainsFunc(d.records, func(o discoveredRecord) bool { return o.addr == r.addr }) {
			added = append(added, r.addr)
		}
	}
	for _, o := range d.records {
		if !slices.ContainsFunc(recs, func(r discoveredRecord) bool { return o.addr == r.addr }) {
			removed = append(removed, o.addr)
		}
	}
	f.log.Info("forward: discovered servers changed", "name", dc.Name, "servers", len(recs),
		"added", added, "removed", removed)
	d.name, d.records = dc.Name, recs
	f.m.discoveryServers.Set(float64(len(recs)))
	f.reconcileLocked()
	return true
}
