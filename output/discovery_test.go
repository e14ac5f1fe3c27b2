package output

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/logagent/logagent/output/forwardtest"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// discoveryConfig discovers name every second (the shortest refresh).
func discoveryConfig(typ, name string, port int) ForwardConfig {
	cfg := testConfig()
	cfg.Discovery.Name, cfg.Discovery.Type, cfg.Discovery.Port = name, typ, port
	cfg.Discovery.Refresh = time.Second
	return cfg
}

// TestDiscoveryFollowsScaling: an aggregator tier behind a DNS name grows
// from one server to three and shrinks to two while records flow. Servers
// that appear get traffic, evenly; the one that disappears is drained and
// forgotten (its connection closed, its series deleted, no frame after);
// nothing is lost, and a record arrives twice only if it was in flight on
// the removed server when that one was killed.
func TestDiscoveryFollowsScaling(t *testing.T) {
	skipShort(t)
	for _, tc := range []struct {
		name string
		typ  string
		kill bool // the removed server dies with its record (a pod gone), rather than draining
	}{
		{"SRV records, the removed server drains", DiscoverySRV, false},
		{"A records, the removed server is killed", DiscoveryA, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDNS(t)
			tally := &forwardtest.Tally{}
			recv := make([]*forwardtest.Receiver, 3)
			var ips []string
			recv[0] = startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
			_, portStr, _ := net.SplitHostPort(recv[0].Addr())
			port, _ := strconv.Atoi(portStr)
			for i := range recv {
				ip := fmt.Sprintf("127.0.0.%d", i+1)
				ips = append(ips, ip)
				if i == 0 {
					continue
				}
				addr := "127.0.0.1:0"
				if tc.typ == DiscoveryA {
					addr = net.JoinHostPort(ip, portStr) // the same port on other loopback addresses
				}
				recv[i] = startReceiver(t, addr, forwardtest.Config{}, tally)
			}
			name := "fluentd.logging.svc.cluster.test."
			var addrs []string // as the output names the servers
			var records []*dns.SRV
			for i, r := range recv {
				if tc.typ == DiscoverySRV {
					_, p, _ := net.SplitHostPort(r.Addr())
					pn, _ := strconv.Atoi(p)
					target := fmt.Sprintf("fluentd-%d.fluentd.logging.svc.cluster.test", i)
					records = append(records, srvRecord(target, uint16(pn), 0, 33))
					addrs = append(addrs, net.JoinHostPort(target, p))
				} else {
					addrs = append(addrs, r.Addr())
				}
			}
			set := func(n ...int) {
				if tc.typ == DiscoverySRV {
					var rs []*dns.SRV
					for _, i := range n {
						rs = append(rs, records[i])
					}
					d.setSRV("_forward._tcp."+name, rs...)
				} else {
					var a []string
					for _, i := range n {
						a = append(a, ips[i])
					}
					d.setA(name, a...)
				}
			}
			lookupName := name
			if tc.typ == DiscoverySRV {
				lookupName = "_forward._tcp." + name
			}

			set(0)
			h := startForwardWith(t, discoveryConfig(tc.typ, lookupName, port), func(f *Forward) { f.resolver = d.resolver() })
			fd := newFeeder(6, 100)
			l := startLoad(t, fd, h.f, 20)
			waitStates(t, h.f, 10*time.Second, map[string]string{addrs[0]: StateConnected})
			grows(t, "records on the first server", 2000, recv[0].Records)

			// Scale out to three: both new servers get traffic, evenly.
			set(0, 1, 2)
			waitStates(t, h.f, 10*time.Second, map[string]string{addrs[0]: StateConnected, addrs[1]: StateConnected, addrs[2]: StateConnected})
			total := func() int { return recv[0].Records() + recv[1].Records() + recv[2].Records() }
			// What the first server had in flight when the others came
			// (up to its window, more on a slow machine) is acknowledged
			// first: the shares are measured after it.
			grows(t, "10000 records over three servers", 10000, total)
			before := []int{recv[0].Records(), recv[1].Records(), recv[2].Records()}
			grows(t, "30000 more records over three servers", 30000, total)
			var got []int
			sum := 0
			for i, r := range recv {
				got = append(got, r.Records()-before[i])
				sum += got[i]
			}
			for i, n := range got {
				share := float64(n) / float64(sum)
				t.Logf("server %d: %d of %d records (%.1f%%)", i, n, sum, 100*share)
				// Chunks are large and sending is work-conserving (a
				// server whose acknowledgements come later gets less), so
				// a share is about a third, not exactly: this catches a
				// server left out or one taking the others' part.
				if share < 0.2 || share > 0.47 {
					t.Errorf("server %d took %.1f%% of the records over three equal servers, want about a third: %v", i, 100*share, got)
				}
			}

			// Scale in to two: the third is drained and forgotten.
			inFlight := 0
			for _, s := range h.f.ServerStatus() {
				if s.Address == addrs[2] {
					inFlight = s.InFlightChunks
				}
			}
			set(0, 1)
			if tc.kill {
				recv[2].Close()
			}
			waitStates(t, h.f, 10*time.Second, map[string]string{addrs[0]: StateConnected, addrs[1]: StateConnected})
			waitFor(t, 10*time.Second, "the removed server's connection closed", func() bool {
				return recv[2].Ended() == recv[2].Connections()
			})
			left := recv[2].Records()
			grows(t, "records on the two servers left", 5000, func() int { return recv[0].Records() + recv[1].Records() })
			if n := recv[2].Records() - left; n != 0 {
				t.Errorf("the removed server took %d records after it was drained", n)
			}
			if n := testutil.CollectAndCount(h.f.m.serverUp); n != 2 {
				t.Errorf("%d logagent_output_server_up series, want the two servers left", n)
			}

			l.finish(t)
			waitFor(t, 30*time.Second, "all batches acknowledged", fd.allAcked)
			dups := checkTally(t, tally, fd)
			t.Logf("%d records, %d duplicates; %d chunks were in flight on the removed server shortly before", len(fd.want()), dups, inFlight)
			if !tc.kill && dups != 0 {
				t.Errorf("%d duplicates, though the removed server drained in good order", dups)
			}
			if got := h.metric(h.f.m.discoveryServers); got != 2 {
				t.Errorf("discovery_servers = %v, want 2", got)
			}
			if got := h.metric(h.f.m.discoveryLookups.WithLabelValues("error")); got != 0 {
				t.Errorf("%v failed lookups", got)
			}
		})
	}
}

// TestDiscoveryKeepsLastSetOnFailure: a DNS outage, then an answer with no
// record (a headless Service with no ready pod), keep the servers found
// last, counted; records go on flowing; the next good answer is followed.
func TestDiscoveryKeepsLastSetOnFailure(t *testing.T) {
	skipShort(t)
	d := startDNS(t)
	tally := &forwardtest.Tally{}
	r0 := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	r1 := startReceiver(t, "127.0.0.1:0", forwardtest.Config{}, tally)
	port := func(r *forwardtest.Receiver) uint16 {
		_, p, _ := net.SplitHostPort(r.Addr())
		n, _ := strconv.Atoi(p)
		return uint16(n)
	}
	name := "_forward._tcp.fluentd.test."
	d.setSRV(name, srvRecord("fluentd-0.test", port(r0), 0, 0))
	h := startForwardWith(t, discoveryConfig(DiscoverySRV, name, 24224), func(f *Forward) { f.resolver = d.resolver() })
	a0, a1 := net.JoinHostPort("fluentd-0.test", strconv.Itoa(int(port(r0)))), net.JoinHostPort("fluentd-1.test", strconv.Itoa(int(port(r1))))
	waitStates(t, h.f, 10*time.Second, map[string]string{a0: StateConnected})
	fd := newFeeder(2, 50)

	// keeps waits for n lookups with result, then checks that records
	// still flow to the server found last.
	keeps := func(result string, n float64) {
		t.Helper()
		c := h.f.m.discoveryLookups.WithLabelValues(result)
		waitFor(t, 10*time.Second, "lookups with result "+result, func() bool { return h.metric(c) >= n })
		fd.sendN(t, h.f, 20, 10)
		waitFor(t, 10*time.Second, "records delivered after lookups with result "+result, fd.allAcked)
		if st := serverStates(h.f); st[a0] != StateConnected || len(st) != 1 {
			t.Errorf("servers after lookups with result %s: %v", result, st)
		}
	}

	d.setFail(true)
	keeps("error", 2)
	ds := h.f.Status().Discovery
	if ds == nil || ds.LastError == "" || ds.LastErrorAt.IsZero() || ds.Servers != 1 {
		t.Errorf("discovery status during the outage: %+v", ds)
	}

	d.setFail(false)
	d.setSRV(name) // known, no record: no ready pod
	keeps("empty", 1)

	d.setSRV(name, srvRecord("fluentd-1.test", port(r1), 0, 0))
	waitStates(t, h.f, 10*time.Second, map[string]string{a1: StateConnected})
	before := r0.Records()
	fd.sendN(t, h.f, 20, 10)
	waitFor(t, 10*time.Second, "records delivered to the new server", fd.allAcked)
	if r0.Records() != before || r1.Records() == 0 {
		t.Errorf("after the answer changed: old server %d more records, new one %d", r0.Records()-before, r1.Records())
	}
	if dups := checkTally(t, tally, fd); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if d.queries.Load() < 4 {
		t.Errorf("%d DNS queries: the resolver was not the test's", d.queries.Load())
	}
}

// TestDiscoverySRVPriorityAndWeight: SRV records of a higher priority are
// standbys; the weights of those of the lowest keep their ratios around
// forward.discovery.weight.
func TestDiscoverySRVPriorityAndWeight(t *testing.T) {
	d := &discovery{name: "_f._tcp.x.", records: []discoveredRecord{
		{addr: "a:1", priority: 10, weight: 10},
		{addr: "b:1", priority: 10, weight: 30},
		{addr: "c:1", priority: 20, weight: 20},
	}}
	cfg := testConfig()
	cfg.Discovery.Name = "_f._tcp.x."
	got := map[string]serverSpec{}
	for _, s := range d.specs(cfg) {
		got[s.addr] = s
	}
	if got["a:1"].standby || got["b:1"].standby || !got["c:1"].standby {
		t.Errorf("standby: a %v b %v c %v, want only c (a higher priority)", got["a:1"].standby, got["b:1"].standby, got["c:1"].standby)
	}
	if got["a:1"].weight != 30 || got["b:1"].weight != 90 || got["c:1"].weight != 60 {
		t.Errorf("weights a %d b %d c %d, want 30 90 60 (ratios 1:3:2 around 60)", got["a:1"].weight, got["b:1"].weight, got["c:1"].weight)
	}
	for _, r := range d.records {
		r.weight = 0
	}
	d.records = []discoveredRecord{{addr: "a:1"}, {addr: "b:1"}}
	for _, s := range d.specs(cfg) {
		if s.weight != DefaultWeight || s.standby || s.origin != "_f._tcp.x." {
			t.Errorf("A-like records: %+v, want weight %d, primary, origin the name", s, DefaultWeight)
		}
	}
}

// TestDiscoveryLookup: what each record type resolves to, as the servers'
// addresses, dial addresses and TLS names; which answers are "no record"
// and which are failures.
func TestDiscoveryLookup(t *testing.T) {
	d := startDNS(t)
	d.setA("fluentd.test.", "10.0.0.2", "10.0.0.1", "10.0.0.2")
	d.setAAAA("fluentd.test.", "fd00::1")
	d.setSRV("_forward._tcp.fluentd.test.", srvRecord("fluentd-1.fluentd.test", 24225, 0, 10), srvRecord("fluentd-0.fluentd.test", 24224, 0, 10))
	d.setA("empty.test.")
	f := &Forward{resolver: d.resolver()}
	for _, tc := range []struct {
		typ, name string
		want      []discoveredRecord
		err       string // "notfound", "failure" or ""
	}{
		{DiscoveryA, "fluentd.test.", []discoveredRecord{
			{addr: "10.0.0.1:24224", dial: "10.0.0.1:24224", host: "fluentd.test"},
			{addr: "10.0.0.2:24224", dial: "10.0.0.2:24224", host: "fluentd.test"},
		}, ""},
		{DiscoveryAAAA, "fluentd.test.", []discoveredRecord{{addr: "[fd00::1]:24224", dial: "[fd00::1]:24224", host: "fluentd.test"}}, ""},
		{DiscoverySRV, "_forward._tcp.fluentd.test.", []discoveredRecord{
			{addr: "fluentd-0.fluentd.test:24224", dial: "fluentd-0.fluentd.test.:24224", host: "fluentd-0.fluentd.test", weight: 10},
			{addr: "fluentd-1.fluentd.test:24225", dial: "fluentd-1.fluentd.test.:24225", host: "fluentd-1.fluentd.test", weight: 10},
		}, ""},
		{DiscoveryA, "empty.test.", nil, "notfound"},
		{DiscoveryA, "unknown.test.", nil, "notfound"},
		{DiscoverySRV, "_forward._tcp.unknown.test.", nil, "notfound"},
	} {
		got, err := f.lookup(context.Background(), DiscoveryConfig{Name: tc.name, Type: tc.typ, Port: 24224})
		switch {
		case tc.err == "notfound" && !notFound(err):
			t.Errorf("%s %s: error %v, want not found", tc.typ, tc.name, err)
		case tc.err == "" && err != nil:
			t.Errorf("%s %s: %v", tc.typ, tc.name, err)
		case fmt.Sprint(got) != fmt.Sprint(tc.want):
			t.Errorf("%s %s = %+v, want %+v", tc.typ, tc.name, got, tc.want)
		}
	}
	d.setFail(true)
	if _, err := f.lookup(context.Background(), DiscoveryConfig{Name: "fluentd.test.", Type: DiscoveryA, Port: 1}); err == nil || notFound(err) {
		t.Errorf("SERVFAIL: error %v, want a failure that is not 'not found'", err)
	}
}
