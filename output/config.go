package output

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// DefaultForwardPort is Fluentd's in_forward port, used by ParseServers when an
// address has none.
const DefaultForwardPort = "24224"

// Server is one Forward endpoint.
type Server struct {
	// Address is "host:port". A host name is resolved again on every connect.
	Address string `yaml:"address"`
	// Standby servers get traffic only while no primary server is up
	// (Fluentd out_forward's <server> standby semantics).
	Standby bool `yaml:"standby"`
	// Weight is the server's share of the traffic relative to the others'
	// (Fluentd's <server> weight): 0 means DefaultWeight.
	Weight int `yaml:"weight"`
	// Its own shared key and user, instead of forward's.
	ServerAuth `yaml:",inline"`
}

// DefaultWeight is a server's weight when none is given: Fluentd's, so that
// weights copied from an out_forward configuration keep their ratios.
const DefaultWeight = 60

// maxWeight is SRV's largest weight.
const maxWeight = 65535

// ServerAuth is a server's side of the shared-key handshake (Fluentd's
// per-server shared_key, username and password). What it leaves empty comes
// from forward's own keys. A *_file is read again on every connect, so a
// mounted Secret that changes is used by the next connection.
type ServerAuth struct {
	// SharedKey turns on the HELO/PING/PONG handshake with this server.
	SharedKey string `yaml:"shared_key"`
	// SharedKeyFile holds the shared key (surrounding whitespace ignored).
	SharedKeyFile string `yaml:"shared_key_file"`
	// Username answers the server's user authentication, if it asks.
	Username string `yaml:"username"`
	// Password is the user's password.
	Password string `yaml:"password"`
	// PasswordFile holds the password (surrounding whitespace ignored).
	PasswordFile string `yaml:"password_file"`
}

// or fills what a leaves empty from def: the shared key, the user name and
// the password each on its own.
func (a ServerAuth) or(def ServerAuth) ServerAuth {
	if a.SharedKey == "" && a.SharedKeyFile == "" {
		a.SharedKey, a.SharedKeyFile = def.SharedKey, def.SharedKeyFile
	}
	if a.Username == "" {
		a.Username = def.Username
	}
	if a.Password == "" && a.PasswordFile == "" {
		a.Password, a.PasswordFile = def.Password, def.PasswordFile
	}
	return a
}

// enabled reports whether the handshake is on.
func (a ServerAuth) enabled() bool { return a.SharedKey != "" || a.SharedKeyFile != "" }

// check names what is wrong with a at path.
func (a ServerAuth) check(path string, bad func(string, ...any)) {
	if a.SharedKey != "" && a.SharedKeyFile != "" {
		bad("%s.shared_key and %s.shared_key_file: set one, not both", path, path)
	}
	if a.Password != "" && a.PasswordFile != "" {
		bad("%s.password and %s.password_file: set one, not both", path, path)
	}
}

func (a ServerAuth) hasUser() bool {
	return a.Username != "" || a.Password != "" || a.PasswordFile != ""
}

// userWithoutKey reports whether own, completed from forward's keys, has a
// user but no shared key: the user authentication is part of the handshake.
// inherited says whether the user came from forward's keys.
func userWithoutKey(own, global ServerAuth) (bad, inherited bool) {
	eff := own.or(global)
	return !eff.enabled() && eff.hasUser(), !own.hasUser()
}

// Discovery types: which DNS records name the servers.
const (
	DiscoveryA    = "A"    // IPv4 addresses, with Port
	DiscoveryAAAA = "AAAA" // IPv6 addresses, with Port
	DiscoverySRV  = "SRV"  // host names and ports
)

// DiscoveryConfig finds Forward servers in DNS, as a Kubernetes headless
// Service publishes the ready pods of a StatefulSet, and follows them as the
// answer changes.
type DiscoveryConfig struct {
	// Name is the DNS name to resolve; empty turns discovery off. For SRV,
	// the full record name (_forward._tcp.fluentd.logging.svc.cluster.local).
	Name string `yaml:"name"`
	// Type is A, AAAA or SRV.
	Type string `yaml:"type"`
	// Port is the servers' port for A and AAAA answers (SRV gives its own).
	Port int `yaml:"port"`
	// Refresh is how often Name is resolved again.
	Refresh time.Duration `yaml:"refresh"`
	// Standby makes every discovered server a standby. With SRV, the records
	// of other than the lowest priority are standbys too.
	Standby bool `yaml:"standby"`
	// Weight is each discovered server's weight; SRV records' own weights
	// keep their ratios around it.
	Weight int `yaml:"weight"`
	// The discovered servers' shared key and user, instead of forward's.
	ServerAuth `yaml:",inline"`
}

// TLSConfig secures the connections to every server.
type TLSConfig struct {
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that sign the servers' certificates;
	// empty means the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// servers that verify clients. Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name checked against the server's certificate; empty
	// means the host part of each server's address.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify turns certificate verification off. Only for tests.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// ForwardConfig configures the Forward output. Start from DefaultForwardConfig:
// keys missing from the config file keep their defaults.
type ForwardConfig struct {
	Servers []Server `yaml:"servers"`
	// Discovery adds the servers a DNS name resolves to, and follows them.
	Discovery DiscoveryConfig `yaml:"discovery"`
	// Tag is the Fluentd tag template. Placeholders: {namespace}, {pod},
	// {pod_uid}, {container}, {container_id}, {node}. The default follows
	// Fluent Bit's kube.* convention for the /var/log/containers link.
	Tag string `yaml:"tag"`
	// BatchBytes closes a tag's open batch once its encoded entries reach this size.
	BatchBytes int `yaml:"batch_bytes"`
	// BatchAge closes a tag's open batch this long after its first record
	// (Fluentd's flush_interval).
	BatchAge time.Duration `yaml:"batch_age"`
	// Gzip sends CompressedPackedForward frames.
	Gzip bool `yaml:"gzip"`
	// RequireAck asks the server to acknowledge every batch (the "chunk"
	// option); records count as delivered only when acknowledged. With it off,
	// a batch counts as delivered once written to the socket.
	RequireAck bool `yaml:"require_ack"`
	// AckTimeout is how long a batch may wait for its ack before it is sent
	// again (and the connection, presumed broken, is closed). Also the write timeout.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// WindowBytes bounds the batches in flight per connection: written (or
	// waiting to be) and not yet acknowledged, by their encoded size. A
	// connection with less than this in flight takes another batch.
	WindowBytes int `yaml:"window_bytes"`
	// QueueBytes bounds the memory of open, queued and unacknowledged batches;
	// Send blocks while it is exceeded.
	QueueBytes int `yaml:"queue_bytes"`
	// DialTimeout bounds connect, TLS handshake and shared-key handshake.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// RetryMin and RetryMax bound the exponential backoff (with jitter)
	// between connection attempts to a failed server.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	// ReadyTimeout: Ready fails once no server has been connected for this long.
	ReadyTimeout time.Duration `yaml:"ready_timeout"`
	TLS          TLSConfig     `yaml:"tls"`
	// SharedKey turns on the HELO/PING/PONG handshake (Fluentd <security>).
	SharedKey string `yaml:"shared_key"`
	// SharedKeyFile holds the shared key instead (a mounted Secret); read
	// again on every connect.
	SharedKeyFile string `yaml:"shared_key_file"`
	// SelfHostname is sent in PING; empty means os.Hostname().
	SelfHostname string `yaml:"self_hostname"`
	// Username and Password answer the server's user authentication, if it asks.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// PasswordFile holds the password instead; read again on every connect.
	PasswordFile string `yaml:"password_file"`
}

// auth is forward's own shared key and user, which servers inherit.
func (c ForwardConfig) auth() ServerAuth {
	return ServerAuth{SharedKey: c.SharedKey, SharedKeyFile: c.SharedKeyFile,
		Username: c.Username, Password: c.Password, PasswordFile: c.PasswordFile}
}

// DefaultTag is Fluent Bit's tag for a container's /var/log/containers link
// under its "kube.*" convention.
const DefaultTag = "kube.var.log.containers.{pod}_{namespace}_{container}-{container_id}.log"

// DefaultForwardConfig returns the defaults. It names no server.
func DefaultForwardConfig() ForwardConfig {
	return ForwardConfig{
		Tag:          DefaultTag,
		BatchBytes:   1 << 20,
		BatchAge:     time.Second,
		RequireAck:   true,
		AckTimeout:   60 * time.Second,
		WindowBytes:  4 << 20,
		QueueBytes:   4 << 20,
		DialTimeout:  5 * time.Second,
		RetryMin:     500 * time.Millisecond,
		RetryMax:     30 * time.Second,
		ReadyTimeout: 60 * time.Second,
		Discovery: DiscoveryConfig{
			Type:    DiscoveryA,
			Port:    24224,
			Refresh: 10 * time.Second,
			Weight:  DefaultWeight,
		},
	}
}

// Validate names every bad key and why, in a fixed order.
func (c ForwardConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Servers) == 0 && c.Discovery.Name == "" {
		bad("forward.servers: at least one server (or forward.discovery.name) is required")
	}
	// A user without a shared key: at the server that names the user, or
	// once at forward's keys when the servers inherit them.
	inheritedUserNoKey := false
	userNoKey := func(path string, own ServerAuth) {
		switch isBad, inherited := userWithoutKey(own, c.auth()); {
		case isBad && inherited:
			inheritedUserNoKey = true
		case isBad:
			bad("%s: username/password need a shared_key (user authentication is part of the handshake): "+
				"set shared_key or shared_key_file there or in forward", path)
		}
	}
	primaries := 0
	seen := make(map[string]bool, len(c.Servers))
	for i, s := range c.Servers {
		path := fmt.Sprintf("forward.servers[%d]", i)
		if err := checkAddress(s.Address); err != nil {
			bad("%s.address: %w", path, err)
		} else if seen[s.Address] {
			bad("%s.address: %s is listed twice", path, s.Address)
		}
		seen[s.Address] = true
		if !s.Standby {
			primaries++
		}
		if s.Weight < 0 || s.Weight > maxWeight {
			bad("%s.weight: must be 0 (the default, %d) to %d, got %d", path, DefaultWeight, maxWeight, s.Weight)
		}
		s.ServerAuth.check(path, bad)
		userNoKey(path, s.ServerAuth)
	}
	d := c.Discovery
	if len(c.Servers) > 0 && primaries == 0 && (d.Name == "" || d.Standby) {
		bad("forward.servers: every server is a standby; at least one must not be")
	}
	d.check(bad)
	if d.Name != "" {
		userNoKey("forward.discovery", d.ServerAuth)
	}
	c.auth().check("forward", bad)
	if inheritedUserNoKey {
		bad("forward.username/password: user authentication needs forward.shared_key or shared_key_file (it is part of the handshake)")
	}
	if _, err := parseTagTemplate(c.Tag); err != nil {
		bad("forward.tag: %w", err)
	}
	switch {
	case c.BatchBytes <= 0:
		bad("forward.batch_bytes: must be > 0, got %d", c.BatchBytes)
	case c.BatchBytes > 64<<20:
		bad("forward.batch_bytes: at most 64 MiB (receivers reject larger chunks), got %d", c.BatchBytes)
	}
	if c.BatchAge <= 0 {
		bad("forward.batch_age: must be > 0, got %s", c.BatchAge)
	}
	switch {
	case c.RequireAck && c.AckTimeout <= 0:
		bad("forward.ack_timeout: must be > 0 with require_ack, got %s", c.AckTimeout)
	case c.AckTimeout < 0:
		bad("forward.ack_timeout: must not be negative, got %s", c.AckTimeout)
	}
	if c.WindowBytes <= 0 {
		bad("forward.window_bytes: must be > 0, got %d", c.WindowBytes)
	}
	if c.QueueBytes < c.BatchBytes {
		bad("forward.queue_bytes: must be >= batch_bytes (%d), got %d", c.BatchBytes, c.QueueBytes)
	}
	if c.DialTimeout <= 0 {
		bad("forward.dial_timeout: must be > 0, got %s", c.DialTimeout)
	}
	if c.RetryMin <= 0 {
		bad("forward.retry_min: must be > 0, got %s", c.RetryMin)
	} else if c.RetryMax < c.RetryMin {
		bad("forward.retry_max: must be >= retry_min (%s), got %s", c.RetryMin, c.RetryMax)
	}
	if c.ReadyTimeout <= 0 {
		bad("forward.ready_timeout: must be > 0, got %s", c.ReadyTimeout)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("forward.tls.cert_file and forward.tls.key_file: set both or neither")
	}
	if !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.CertFile != "" || c.TLS.ServerName != "" || c.TLS.InsecureSkipVerify) {
		bad("forward.tls.enabled: tls settings are given but tls is not enabled")
	}
	if len(c.Servers) == 0 && c.Discovery.Name != "" && c.Discovery.Standby {
		bad("forward.discovery.standby: the discovered servers are the only ones; they cannot all be standbys")
	}
	return errors.Join(errs...)
}

// check names what is wrong with the discovery keys. Type, port and refresh
// are checked even when Name is empty, as the schema checks them.
func (d DiscoveryConfig) check(bad func(string, ...any)) {
	if d.Name != "" {
		if err := checkDNSName(d.Name); err != nil {
			bad("forward.discovery.name: %w", err)
		}
		if d.Type == DiscoverySRV && !strings.HasPrefix(d.Name, "_") {
			bad("forward.discovery.name: an SRV name starts with _service._proto. (e.g. _forward._tcp.%s), got %q", d.Name, d.Name)
		}
	}
	switch d.Type {
	case DiscoveryA, DiscoveryAAAA, DiscoverySRV:
	default:
		bad("forward.discovery.type: must be A, AAAA or SRV, not %q", d.Type)
	}
	if d.Port <= 0 || d.Port > 65535 {
		bad("forward.discovery.port: must be 1-65535, got %d", d.Port)
	}
	if d.Refresh < time.Second {
		bad("forward.discovery.refresh: must be at least 1s, got %s", d.Refresh)
	}
	if d.Weight < 0 || d.Weight > maxWeight {
		bad("forward.discovery.weight: must be 0 (the default, %d) to %d, got %d", DefaultWeight, maxWeight, d.Weight)
	}
	d.ServerAuth.check("forward.discovery", bad)
}

// checkDNSName accepts a host name as DNS has it (letters, digits, '-', '_'
// and dots, labels of at most 63 bytes), with or without the final dot.
func checkDNSName(name string) error {
	if strings.Contains(name, ":") {
		return fmt.Errorf("%q: a DNS name without a port (the port is forward.discovery.port, or the SRV record's)", name)
	}
	n := strings.TrimSuffix(name, ".")
	if n == "" || len(n) > 253 {
		return fmt.Errorf("%q is not a DNS name", name)
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not a DNS name: empty or too long label", name)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("%q is not a DNS name: %q is not allowed", name, r)
			}
		}
	}
	return nil
}

// ParseServers parses the --forward flag: "host:port,host2:port". A missing
// port means 24224. All servers are primaries.
func ParseServers(s string) ([]Server, error) {
	var out []Server
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("forward servers %q: entry %d is empty", s, i)
		}
		if _, _, err := net.SplitHostPort(part); err != nil {
			// No port: accept a bare host name or IP (IPv6 without brackets too).
			if strings.Contains(strings.Trim(part, "[]"), ":") && !strings.HasPrefix(part, "[") && net.ParseIP(part) == nil {
				return nil, fmt.Errorf("forward servers %q: entry %q: %w", s, part, err)
			}
			part = net.JoinHostPort(strings.Trim(part, "[]"), DefaultForwardPort)
		}
		if err := checkAddress(part); err != nil {
			return nil, fmt.Errorf("forward servers %q: entry %q: %w", s, part, err)
		}
		out = append(out, Server{Address: part})
	}
	return out, nil
}

func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return fmt.Errorf("%q: port must be 1-65535", addr)
	}
	return nil
}
