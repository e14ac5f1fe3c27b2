package output

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// testDNS is a real DNS server on 127.0.0.1 (miekg/dns), authoritative for
// whatever the test puts in it, answering as CoreDNS does for a headless
// Service: A and SRV records of the ready pods, a TTL of 5 s, NOERROR with
// no answer for a known name and another type, NXDOMAIN for an unknown name.
type testDNS struct {
	addr string

	mu      sync.Mutex
	a       map[string][]string // FQDN -> IPv4 addresses
	aaaa    map[string][]string // FQDN -> IPv6 addresses
	srv     map[string][]*dns.SRV
	fail    bool // answer SERVFAIL
	queries atomic.Int64
}

func startDNS(t testing.TB) *testDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &testDNS{addr: pc.LocalAddr().String(), a: map[string][]string{}, aaaa: map[string][]string{}, srv: map[string][]*dns.SRV{}}
	started := make(chan struct{})
	server := &dns.Server{PacketConn: pc, Handler: d, NotifyStartedFunc: func() { close(started) }}
	go server.ActivateAndServe()
	<-started
	t.Cleanup(func() { server.Shutdown() })
	return d
}

// resolver sends every query to d.
func (d *testDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "udp", d.addr)
	}}
}

// setA sets name's A records.
func (d *testDNS) setA(name string, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.a[dns.Fqdn(name)] = ips
}

// setSRV sets name's SRV records: each target's A record is 127.0.0.1.
func (d *testDNS) setSRV(name string, records ...*dns.SRV) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.srv[dns.Fqdn(name)] = records
	for _, r := range records {
		d.a[r.Target] = []string{"127.0.0.1"}
	}
}

// setAAAA sets name's AAAA records.
func (d *testDNS) setAAAA(name string, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.aaaa[dns.Fqdn(name)] = ips
}

func (d *testDNS) setFail(fail bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fail = fail
}

func srvRecord(target string, port, priority, weight uint16) *dns.SRV {
	return &dns.SRV{Target: dns.Fqdn(target), Port: port, Priority: priority, Weight: weight}
}

func (d *testDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	d.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail || len(r.Question) != 1 {
		m.Rcode = dns.RcodeServerFailure
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 5}
	}
	ips, hasA := d.a[name]
	ip6s, hasAAAA := d.aaaa[name]
	srvs, hasSRV := d.srv[name]
	switch {
	case !hasA && !hasAAAA && !hasSRV:
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeA:
		for _, ip := range ips {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: net.ParseIP(ip)})
		}
	case q.Qtype == dns.TypeAAAA:
		for _, ip := range ip6s {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: net.ParseIP(ip)})
		}
	case q.Qtype == dns.TypeSRV:
		for _, s := range srvs {
			rr := *s
			rr.Hdr = hdr(dns.TypeSRV)
			m.Answer = append(m.Answer, &rr)
		}
	}
	w.WriteMsg(m)
}
