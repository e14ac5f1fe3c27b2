package output

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDefaultForwardConfig(t *testing.T) {
	cfg := DefaultForwardConfig()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "forward.servers") {
		t.Errorf("defaults without a server: Validate = %v, want a forward.servers error", err)
	}
	cfg.Servers = []Server{{Address: "fluentd:24224"}}
	if err := cfg.Validate(); err != nil {
		t.Errorf("defaults with a server: %v", err)
	}
	if !cfg.RequireAck || cfg.Tag != DefaultTag {
		t.Errorf("defaults: require_ack %v, tag %q", cfg.RequireAck, cfg.Tag)
	}
}

func TestForwardConfigYAML(t *testing.T) {
	cfg := DefaultForwardConfig()
	doc := `
servers:
  - address: fluentd-0.logging:24224
  - address: fluentd-standby.logging:24224
    standby: true
    weight: 20
    shared_key_file: /etc/logagent/standby/shared_key
discovery:
  name: _forward._tcp.fluentd.logging.svc.cluster.local
  type: SRV
  refresh: 30s
  password_file: /etc/logagent/fluentd/password
batch_bytes: 524288
batch_age: 2s
gzip: true
ack_timeout: 1m
tls:
  enabled: true
  ca_file: /etc/ca.pem
shared_key: s3cret
`
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Servers) != 2 || !cfg.Servers[1].Standby || cfg.BatchAge != 2*time.Second ||
		cfg.AckTimeout != time.Minute || !cfg.Gzip || !cfg.TLS.Enabled || cfg.SharedKey != "s3cret" {
		t.Errorf("decoded %+v", cfg)
	}
	if s := cfg.Servers[1]; s.Weight != 20 || s.SharedKeyFile != "/etc/logagent/standby/shared_key" {
		t.Errorf("server: %+v", s)
	}
	if d := cfg.Discovery; d.Name != "_forward._tcp.fluentd.logging.svc.cluster.local" || d.Type != "SRV" ||
		d.Refresh != 30*time.Second || d.PasswordFile != "/etc/logagent/fluentd/password" || d.Port != 24224 || d.Weight != DefaultWeight {
		t.Errorf("discovery: %+v", d)
	}
	if !cfg.RequireAck || cfg.WindowBytes != 4<<20 {
		t.Errorf("keys absent from the file lost their defaults: require_ack %v window_bytes %d", cfg.RequireAck, cfg.WindowBytes)
	}
}

func TestForwardConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*ForwardConfig)
		want   string // substring of the error; "" for valid
	}{
		{"valid", func(c *ForwardConfig) {}, ""},
		{"no port", func(c *ForwardConfig) { c.Servers[0].Address = "fluentd" }, "forward.servers[0].address"},
		{"bad port", func(c *ForwardConfig) { c.Servers[0].Address = "fluentd:99999" }, "port must be"},
		{"no host", func(c *ForwardConfig) { c.Servers[0].Address = ":24224" }, "no host"},
		{"only standby", func(c *ForwardConfig) { c.Servers[0].Standby = true }, "every server is a standby"},
		{"bad tag", func(c *ForwardConfig) { c.Tag = "kube.{podname}" }, "forward.tag"},
		{"zero batch", func(c *ForwardConfig) { c.BatchBytes = 0 }, "forward.batch_bytes"},
		{"huge batch", func(c *ForwardConfig) { c.BatchBytes = 100 << 20 }, "forward.batch_bytes"},
		{"zero age", func(c *ForwardConfig) { c.BatchAge = 0 }, "forward.batch_age"},
		{"zero ack timeout", func(c *ForwardConfig) { c.AckTimeout = 0 }, "forward.ack_timeout"},
		{"no ack, no timeout", func(c *ForwardConfig) { c.RequireAck, c.AckTimeout = false, 0 }, ""},
		{"zero window", func(c *ForwardConfig) { c.WindowBytes = 0 }, "forward.window_bytes"},
		{"queue below batch", func(c *ForwardConfig) { c.QueueBytes = c.BatchBytes - 1 }, "forward.queue_bytes"},
		{"zero dial timeout", func(c *ForwardConfig) { c.DialTimeout = 0 }, "forward.dial_timeout"},
		{"zero retry", func(c *ForwardConfig) { c.RetryMin = 0 }, "forward.retry_min"},
		{"retry max below min", func(c *ForwardConfig) { c.RetryMax = c.RetryMin / 2 }, "forward.retry_max"},
		{"zero ready", func(c *ForwardConfig) { c.ReadyTimeout = 0 }, "forward.ready_timeout"},
		{"cert without key", func(c *ForwardConfig) { c.TLS.Enabled, c.TLS.CertFile = true, "c.pem" }, "key_file"},
		{"tls settings while off", func(c *ForwardConfig) { c.TLS.CAFile = "ca.pem" }, "forward.tls.enabled"},
		{"user without key", func(c *ForwardConfig) { c.Username = "u" }, "forward.username/password"},
		{"duplicate address", func(c *ForwardConfig) { c.Servers = append(c.Servers, c.Servers[0]) }, "listed twice"},
		{"negative weight", func(c *ForwardConfig) { c.Servers[0].Weight = -1 }, "forward.servers[0].weight"},
		{"weight beyond SRV's", func(c *ForwardConfig) { c.Servers[0].Weight = 65536 }, "forward.servers[0].weight"},
		{"key and key file", func(c *ForwardConfig) { c.Servers[0].SharedKey, c.Servers[0].SharedKeyFile = "k", "f" }, "set one, not both"},
		{"password and password file", func(c *ForwardConfig) {
			c.SharedKey, c.Password, c.PasswordFile = "k", "p", "f"
		}, "forward.password and forward.password_file"},
		{"server's user without key", func(c *ForwardConfig) { c.Servers[0].Username = "u" }, "forward.servers[0]: username/password need a shared_key"},
		{"server's own key, forward's user", func(c *ForwardConfig) { c.Servers[0].SharedKey, c.Username = "k", "u" }, ""},
		{"forward's key file, server's user", func(c *ForwardConfig) { c.SharedKeyFile, c.Servers[0].Username = "/k", "u" }, ""},
		{"discovery alone", func(c *ForwardConfig) { c.Servers, c.Discovery.Name = nil, "fluentd.logging.svc.cluster.local" }, ""},
		{"neither servers nor discovery", func(c *ForwardConfig) { c.Servers = nil }, "or forward.discovery.name"},
		{"discovery name with a port", func(c *ForwardConfig) { c.Discovery.Name = "fluentd:24224" }, "forward.discovery.name"},
		{"discovery name not DNS", func(c *ForwardConfig) { c.Discovery.Name = "fluentd..svc" }, "not a DNS name"},
		{"discovery type", func(c *ForwardConfig) { c.Discovery.Type = "MX" }, "forward.discovery.type"},
		{"SRV name without _service._proto", func(c *ForwardConfig) {
			c.Discovery.Name, c.Discovery.Type = "fluentd.logging", DiscoverySRV
		}, "_forward._tcp.fluentd.logging"},
		{"discovery port", func(c *ForwardConfig) { c.Discovery.Port = 0 }, "forward.discovery.port"},
		{"discovery refresh", func(c *ForwardConfig) { c.Discovery.Refresh = 100 * time.Millisecond }, "forward.discovery.refresh"},
		{"discovery weight", func(c *ForwardConfig) { c.Discovery.Weight = -5 }, "forward.discovery.weight"},
		{"discovered user without key", func(c *ForwardConfig) {
			c.Discovery.Name, c.Discovery.Username = "fluentd", "u"
		}, "forward.discovery: username/password"},
		{"static standbys, discovered primaries", func(c *ForwardConfig) {
			c.Servers[0].Standby, c.Discovery.Name = true, "fluentd"
		}, ""},
		{"only discovered standbys", func(c *ForwardConfig) {
			c.Servers, c.Discovery.Name, c.Discovery.Standby = nil, "fluentd", true
		}, "cannot all be standbys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultForwardConfig()
			cfg.Servers = []Server{{Address: "fluentd:24224"}}
			tc.mutate(&cfg)
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseServers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"fluentd:24224", []string{"fluentd:24224"}, false},
		{"a:1, b:2", []string{"a:1", "b:2"}, false},
		{"fluentd", []string{"fluentd:24224"}, false},
		{"10.0.0.1", []string{"10.0.0.1:24224"}, false},
		{"[::1]:24225", []string{"[::1]:24225"}, false},
		{"::1", []string{"[::1]:24224"}, false},
		{"a:1,,b:2", nil, true},
		{"", nil, true},
		{"a:0", nil, true},
		{"a:b:c", nil, true},
	} {
		got, err := ParseServers(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseServers(%q) error = %v, want error %v", tc.in, err, tc.err)
			continue
		}
		var addrs []string
		for _, s := range got {
			if s.Standby {
				t.Errorf("ParseServers(%q): standby server", tc.in)
			}
			addrs = append(addrs, s.Address)
		}
		if strings.Join(addrs, ",") != strings.Join(tc.want, ",") {
			t.Errorf("ParseServers(%q) = %v, want %v", tc.in, addrs, tc.want)
		}
	}
}
