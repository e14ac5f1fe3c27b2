package output

import "time"

// Server states, as ServerStatus reports them.
const (
	StateConnected  = "connected"   // taking traffic
	StateStandby    = "standby"     // connected, a standby while a primary is up: no traffic
	StateConnecting = "connecting"  // dialling, TLS, handshake
	StateBackingOff = "backing_off" // waiting to connect again after a failure
	StateDraining   = "draining"    // removed: delivering what it has, then gone
)

// ServerStatus is one Forward server as the output sees it now. It is what
// /debug/servers serves, one JSON object per server.
type ServerStatus struct {
	Address string `json:"address"`
	// Origin is "config" for a server of forward.servers, else the
	// discovery name that found it.
	Origin  string `json:"origin"`
	State   string `json:"state"`
	Standby bool   `json:"standby"`
	Weight  int    `json:"weight"`
	// In flight: chunks handed to its connections (a draining one's too)
	// and not yet acknowledged, and their uncompressed bytes.
	InFlightChunks int `json:"in_flight_chunks"`
	InFlightBytes  int `json:"in_flight_bytes"`
	// RecordsDelivered counts the records it acknowledged since it was added.
	RecordsDelivered int64     `json:"records_delivered"`
	LastError        string    `json:"last_error,omitempty"`
	LastErrorAt      time.Time `json:"last_error_at,omitzero"`
	// ConnectedSince is when its current connection was made; zero while
	// it has none.
	ConnectedSince time.Time `json:"connected_since,omitzero"`
}

// DiscoveryStatus is how forward.discovery's lookups went.
type DiscoveryStatus struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Refresh string `json:"refresh"`
	// Servers is the number of servers in the last good answer.
	Servers     int       `json:"servers"`
	LastLookup  time.Time `json:"last_lookup,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Status is the output's servers and discovery, as /debug/servers serves it.
type Status struct {
	Servers   []ServerStatus   `json:"servers"`
	Discovery *DiscoveryStatus `json:"discovery,omitempty"`
}

// ServerStatus returns every server, configured and discovered, draining
// ones included, in the order they were added.
func (f *Forward) ServerStatus() []ServerStatus {
	return f.Status().Servers
}

// Status returns the servers and, when discovery is on, how it went.
func (f *Forward) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	primaryUp := f.primaryUpLocked()
	st := Status{Servers: make([]ServerStatus, 0, len(f.servers))}
	for _, s := range f.servers {
		ss := ServerStatus{
			Address:          s.spec.addr,
			Origin:           s.spec.origin,
			Standby:          s.spec.standby,
			Weight:           s.spec.weight,
			RecordsDelivered: s.delivered,
			LastErrorAt:      s.lastErrAt,
		}
		if s.lastErr != nil {
			ss.LastError = s.lastErr.Error()
		}
		for _, cn := range f.conns {
			if cn.srv == s {
				ss.InFlightChunks += cn.loadChunks
				ss.InFlightBytes += cn.loadBytes
			}
		}
		switch {
		case s.removed:
			ss.State = StateDraining
		case s.conn != nil && s.spec.standby && primaryUp:
			ss.State = StateStandby
		case s.conn != nil:
			ss.State = StateConnected
		case s.state == stateBackoff:
			ss.State = StateBackingOff
		default:
			ss.State = StateConnecting
		}
		if s.conn != nil {
			ss.ConnectedSince = s.connectedSince
		}
		st.Servers = append(st.Servers, ss)
	}
	if dc := f.cfg.Discovery; dc.Name != "" {
		d := &f.disco
		ds := &DiscoveryStatus{Name: dc.Name, Type: dc.Type, Refresh: dc.Refresh.String(), Servers: len(d.records),
			LastLookup: d.lastLookup, LastSuccess: d.lastSuccess, LastErrorAt: d.lastErrAt}
		if d.lastErr != nil {
			ds.LastError = d.lastErr.Error()
		}
		st.Discovery = ds
	}
	return st
}
