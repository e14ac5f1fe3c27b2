package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// handler serves the agent's metrics and probes. /healthz answers while the
// process is alive and holding its place; /readyz fails, with the reason,
// while a stage cannot do its job (no Forward server reachable, API server
// unreachable).
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
	return mux
}
