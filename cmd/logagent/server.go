package main

import (
	"encoding/json"
	"net/http"

	"github.com/logagent/logagent/output"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// handler serves the agent's metrics and probes. /healthz answers while the
// process is alive and holding its place; /readyz fails, with the reason,
// while a stage cannot do its job (no Forward server reachable, API server
// unreachable). /debug/servers is the Forward servers' state as JSON
// (output.Status; no servers with the stdout output).
func (a *agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := a.ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/debug/servers", func(w http.ResponseWriter, r *http.Request) {
		st := output.Status{Servers: []output.ServerStatus{}}
		if a.forward != nil {
			st = a.forward.Status()
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	})
	return mux
}
