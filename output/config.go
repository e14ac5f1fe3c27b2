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
	// SelfHostname is sent in PING; empty means os.Hostname().
	SelfHostname string `yaml:"self_hostname"`
	// Username and Password answer the server's user authentication, if it asks.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
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
		QueueBytes:   8 << 20,
		DialTimeout:  5 * time.Second,
		RetryMin:     500 * time.Millisecond,
		RetryMax:     30 * time.Second,
		ReadyTimeout: 60 * time.Second,
	}
}

// Validate names every bad key and why, in a fixed order.
func (c ForwardConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Servers) == 0 {
		bad("forward.servers: at least one server is required")
	}
	primaries := 0
	for i, s := range c.Servers {
		if err := checkAddress(s.Address); err != nil {
			bad("forward.servers[%d].address: %w", i, err)
		}
		if !s.Standby {
			primaries++
		}
	}
	if len(c.Servers) > 0 && primaries == 0 {
		bad("forward.servers: every server is a standby; at least one must not be")
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
	if c.SharedKey == "" && (c.Username != "" || c.Password != "") {
		bad("forward.username/password: user authentication needs forward.shared_key (it is part of the handshake)")
	}
	return errors.Join(errs...)
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
