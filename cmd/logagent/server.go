package main

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"

	"github.com/logagent/logagent/output"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// handler serves the agent's metrics and probes. /healthz fails when the
// pipeline is stuck (liveness.go): input not delivered, the output able to
// take it, and nothing moved for liveness_timeout; /readyz fails, with the reason,
// while a stage cannot do its job (no Forward server reachable, API server
// unreachable). The /debug/ pages are JSON for `logagent status` and people:
// /debug/servers the Forward servers' state (output.Status; no servers with
// the stdout output), /debug/files every file the collector knows (when it
// provides them), /debug/config the configuration's reloads. /debug/pprof/
// is Go's profiler, only while debug.pprof is on.
func (a *agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := a.alive(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
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
		writeJSON(w, st)
	})
	mux.HandleFunc("/debug/files", func(w http.ResponseWriter, r *http.Request) {
		if a.files == nil {
			http.Error(w, "not available: this collector does not list its files", http.StatusNotFound)
			return
		}
		files := a.files()
		if files == nil {
			files = []fileStatus{}
		}
		slices.SortFunc(files, func(x, y fileStatus) int {
			return strings.Compare(x.Namespace+"\x00"+x.Pod+"\x00"+x.Container+"\x00"+x.Path,
				y.Namespace+"\x00"+y.Pod+"\x00"+y.Container+"\x00"+y.Path)
		})
		writeJSON(w, filesStatus{Files: files})
	})
	mux.HandleFunc("/debug/config", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		st := a.status
		a.mu.Unlock()
		writeJSON(w, st)
	})
	// The profiler is registered always and answers only while debug.pprof
	// is on, so a reload turns it on and off.
	for path, h := range map[string]http.HandlerFunc{
		"/debug/pprof/":        pprof.Index, // and every named profile: heap, goroutine, allocs, ...
		"/debug/pprof/cmdline": pprof.Cmdline,
		"/debug/pprof/profile": pprof.Profile,
		"/debug/pprof/symbol":  pprof.Symbol,
		"/debug/pprof/trace":   pprof.Trace,
	} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if !a.pprof.Load() {
				http.Error(w, "pprof is off: set debug.pprof: true (or --pprof) to turn it on", http.StatusNotFound)
				return
			}
			h(w, r)
		})
	}
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
