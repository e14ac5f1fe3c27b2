package output

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// NotLiveError names the settings Reconfigure left at their running values
// because they cannot change while the output runs; it applied the others.
type NotLiveError struct {
	Keys []string // "forward.require_ack"
}

func (e *NotLiveError) Error() string {
	return "forward: cannot change while running, restart to apply (the running value stays): " + strings.Join(e.Keys, ", ")
}

// Reconfigure applies cfg to the running output without losing or
// repeating a record:
//
//   - servers added start connecting; servers removed are drained (no new
//     chunks; those not yet written go elsewhere at once; those written are
//     acknowledged where they are, or sent elsewhere after ack_timeout);
//     a server whose address, TLS name or shared key or user changed gets a
//     new connection while the old one drains; a new weight or standby flag
//     applies to the next chunk;
//   - discovery: a new name is looked up at once, its servers replace the old
//     name's when it answers; none drains the discovered servers;
//   - tls: files and settings are loaded now (they must load); a change of
//     settings or of the files named replaces every connection, in good
//     order (changed file content alone only reaches new connections, as
//     with certificate rotation);
//   - tag, batch_bytes, batch_age, gzip: the open chunks are sealed under
//     the old tag; the rest applies to chunks sealed from now;
//   - window_bytes, queue_bytes, timeouts, retries: at once.
//
// An invalid cfg, or one whose files do not load, changes nothing and is
// returned as an error. Settings that cannot change live (require_ack:
// chunks in flight were sent asking for an ack, or not) keep their running
// value and are named in a *NotLiveError, the others are applied.
func (f *Forward) Reconfigure(cfg ForwardConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("forward: configuration refused, the running one stays: %w", err)
	}
	tmpl, err := parseTagTemplate(cfg.Tag)
	if err != nil {
		return fmt.Errorf("forward: configuration refused, the running one stays: forward.tag: %w", err)
	}
	f.mu.Lock()
	keepTLS, closing := f.tls, f.closing
	f.mu.Unlock()
	if closing {
		return ErrClosed
	}
	st, err := f.prepareSettings(cfg, keepTLS) // reads files: outside the lock
	if err != nil {
		return fmt.Errorf("forward: configuration refused, the running one stays: %w", err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return ErrClosed
	}
	old := f.cfg
	var notLive []string
	if cfg.RequireAck != old.RequireAck {
		notLive = append(notLive, "forward.require_ack")
		cfg.RequireAck = old.RequireAck
	}
	recycleAll := st.tls != f.tls || st.selfHost != f.selfHost
	f.cfg = cfg
	f.tls, f.selfHost, f.writeTimeout = st.tls, st.selfHost, st.writeTimeout
	if cfg.Tag != old.Tag {
		// Open chunks carry their tag: seal them under the old one, and
		// render each source's tag again.
		f.sealAllLocked()
		f.tmpl = tmpl
		clear(f.bySource)
		clear(f.byTag)
	}
	if cfg.BatchBytes != old.BatchBytes {
		f.bufs = newBufPool(cfg.BatchBytes)
	}
	od, nd := old.Discovery, cfg.Discovery
	if nd.Name != od.Name || nd.Type != od.Type || nd.Port != od.Port {
		if nd.Name == "" {
			f.disco.name, f.disco.records = "", nil
			f.m.discoveryServers.Set(0)
		}
		select {
		case f.disco.wake <- struct{}{}:
		default:
		}
	}
	f.reconcileLocked()
	if recycleAll {
		for _, s := range f.servers {
			if !s.removed {
				f.recycleLocked(s)
			}
		}
	}
	f.armLocked(time.Now()) // batch_age and ack_timeout may be shorter
	f.wakeLocked()          // queue_bytes may be larger
	f.log.Info("forward: configuration applied", "servers", len(f.byAddr), "discovery", nd.Name,
		"tls_reconnect", recycleAll)
	if len(notLive) > 0 {
		return &NotLiveError{Keys: notLive}
	}
	return nil
}

// IsNotLive reports whether err is a *NotLiveError: the configuration was
// applied but for the settings it names.
func IsNotLive(err error) bool {
	var nl *NotLiveError
	return errors.As(err, &nl)
}

// settings are what Reconfigure loads from a configuration before it
// changes anything: files that must load, and derived values.
type settings struct {
	tls          *tlsFiles
	selfHost     string
	writeTimeout time.Duration
}

// prepareSettings loads what cfg names: TLS files (unless keep's TLS
// configuration is the same), and the shared keys' files, so that a
// configuration whose files do not load is refused as a whole.
func (f *Forward) prepareSettings(cfg ForwardConfig, keep *tlsFiles) (settings, error) {
	st := settings{selfHost: cfg.SelfHostname, writeTimeout: cfg.AckTimeout}
	if st.writeTimeout <= 0 {
		st.writeTimeout = 30 * time.Second
	}
	if cfg.TLS.Enabled {
		if keep != nil && keep.cfg == cfg.TLS {
			st.tls = keep
		} else {
			var err error
			if st.tls, err = newTLSFiles(cfg.TLS, f.m, f.log); err != nil {
				return st, err
			}
		}
	}
	if err := checkSecretFiles(cfg); err != nil {
		return st, err
	}
	if st.selfHost == "" && needsHandshake(cfg) {
		var err error
		if st.selfHost, err = os.Hostname(); err != nil {
			return st, fmt.Errorf("forward.self_hostname: not set and os.Hostname failed: %w", err)
		}
	}
	return st, nil
}

// loadSettings prepares cfg's settings and makes them the output's.
func (f *Forward) loadSettings(cfg ForwardConfig) error {
	st, err := f.prepareSettings(cfg, nil)
	if err != nil {
		return err
	}
	f.tls, f.selfHost, f.writeTimeout = st.tls, st.selfHost, st.writeTimeout
	return nil
}
