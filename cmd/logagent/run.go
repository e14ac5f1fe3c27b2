package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logagent/logagent/collector"
	"github.com/logagent/logagent/enrich"
	"github.com/logagent/logagent/output"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// agent is the pipeline: collector -> enrich (optional) -> output.
type agent struct {
	log      *slog.Logger
	reg      *prometheus.Registry
	col      *collector.Collector
	enricher *enrich.Enricher
	forward  *output.Forward
	started  chan struct{} // closed when the collector has started

	mu     sync.Mutex // guards cfg and status
	cfg    *Config    // as applied: a reload replaces it
	status configStatus

	// Reloading (reload.go): where the configuration comes from, the log
	// level a reload may change, SIGHUP. Without a source (tests that build
	// the agent from a Config) nothing reloads.
	src        configSource
	level      *slog.LevelVar
	hup        <-chan os.Signal
	loadedHash string // the file's content when last loaded; the reload loop's own
	cm         *configMetrics
	pprof      atomic.Bool // debug.pprof
	watchFile  atomic.Bool // watch_config

	live liveness // /healthz

	// files is the collector's view of its files for /debug/files; nil
	// until the collector provides one (debugfiles.go).
	files func() []fileStatus
}

func newLogger(cfg LogConfig, w io.Writer) *slog.Logger {
	log, _ := newLevelLogger(cfg, w)
	return log
}

// newLevelLogger returns the agent's logger and its level, which a reload
// may change.
func newLevelLogger(cfg LogConfig, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	l, _ := parseLevel(cfg.Level)
	level.Set(l)
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsText}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), level
	}
	return slog.New(slog.NewJSONHandler(w, opts)), level
}

// durationsAsText writes every time.Duration as Go writes it ("1.5s"):
// slog's JSON handler writes a duration as its int64 nanoseconds, which
// reads as a count (retry_in=1500000000) and differs from the text format
// and from the configuration file's notation.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// newAgent builds every stage; stdout receives the stdout output's records.
func newAgent(cfg *Config, log *slog.Logger, stdout io.Writer) (*agent, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	now := time.Now()
	a := &agent{cfg: cfg, log: log, reg: reg, started: make(chan struct{}), cm: newConfigMetrics(reg, now),
		status: configStatus{LoadedAt: now, WatchFile: cfg.WatchConfig, PendingRestart: []string{}}}
	a.pprof.Store(cfg.Debug.Pprof)
	a.watchFile.Store(cfg.WatchConfig)

	var sink collector.Sink
	switch cfg.Output {
	case "forward":
		f, err := output.NewForward(cfg.Forward, reg, log.With("component", "output"))
		if err != nil {
			return nil, err
		}
		a.forward, sink = f, f
	default:
		s, err := output.NewStdout(stdout, cfg.Forward.Tag, reg)
		if err != nil {
			return nil, err
		}
		sink = s
	}
	if cfg.Enrich.Enabled {
		client, err := enrich.NewClient(cfg.Enrich.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("enrich: %w", err)
		}
		e, err := enrich.New(cfg.Enrich, client, sink, reg, log.With("component", "enrich"))
		if err != nil {
			return nil, err
		}
		a.enricher, sink = e, e
	}
	col, err := collector.New(cfg.Collector, sink, reg, log.With("component", "collector"))
	if err != nil {
		return nil, err
	}
	if a.enricher != nil {
		// Multiline rules and rate limits by pod annotation and label: the
		// collector asks enrich, which knows the pods (collector package doc).
		a.enricher.SetPolicies(col.Policies())
		col.SetPolicySource(a.enricher)
	}
	a.col = col
	a.files = func() []fileStatus { return filesOf(col.Files()) }
	return a, nil
}

// enableReload makes the agent reload its configuration from src on
// SIGHUP (hup) and, with watch_config, when src's file changes. hash is the
// file's content as loaded at start; level is the logger's.
func (a *agent) enableReload(src configSource, hash string, level *slog.LevelVar, hup <-chan os.Signal) {
	a.src, a.loadedHash, a.level, a.hup = src, hash, level, hup
	a.status.File = src.file
}

// reloadLoop reloads the configuration on SIGHUP, and when its file
// changes while watch_config is on, one reload at a time, until ctx is done.
func (a *agent) reloadLoop(ctx context.Context) {
	fileChanged := make(chan struct{}, 1)
	if a.src.file != "" {
		w := configWatch{path: a.src.file, debounce: configDebounce, poll: configPoll, log: a.log}
		go w.run(ctx, func() {
			select {
			case fileChanged <- struct{}{}:
			default:
			}
		})
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.hup:
			a.reload("signal")
		case <-fileChanged:
			if a.watchFile.Load() && a.src.hash() != a.loadedHash {
				a.reload("file")
			}
		}
	}
}

// run serves HTTP and runs the pipeline until ctx is done, then shuts down in
// order: stop reading, release what enrich holds, flush the output and wait
// for its acknowledgements, persist checkpoints. It returns within
// ShutdownTimeout of ctx being done.
func (a *agent) run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)

	// Stages after the collector outlive its context: they still deliver
	// (and acknowledge) what was read after reading stops.
	stages, stopStages := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStages()
	var wg sync.WaitGroup
	if a.forward != nil {
		wg.Go(func() {
			if err := a.forward.Run(stages); err != nil {
				a.log.Error("output stopped", "err", err)
			}
		})
	}
	if a.enricher != nil {
		wg.Go(func() {
			if err := a.enricher.Run(stages); err != nil {
				a.log.Error("enrich stopped", "err", err)
			}
		})
	}
	var reloads sync.WaitGroup
	if a.src.getenv != nil { // enableReload was called
		reloads.Go(func() { a.reloadLoop(ctx) })
	}
	close(a.started)
	a.log.Info("logagent started", "version", version, "output", a.cfg.Output, "glob", a.cfg.Collector.LogGlob, "node", a.cfg.NodeName)
	runErr := a.col.Run(ctx)
	reloads.Wait() // no reload while the stages close

	a.log.Info("shutting down: flushing")
	a.mu.Lock()
	timeout := a.cfg.ShutdownTimeout
	a.mu.Unlock()
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if a.enricher != nil {
		if err := a.enricher.Close(flushCtx); err != nil {
			a.log.Warn("enrich close", "err", err)
		}
	}
	if a.forward != nil {
		if err := a.forward.Close(flushCtx); err != nil {
			a.log.Warn("output flush incomplete; unacknowledged records will be read again", "err", err)
		}
	}
	if err := a.col.Close(); err != nil {
		a.log.Error("final checkpoint", "err", err)
		runErr = errors.Join(runErr, err)
	}
	stopStages()
	wg.Wait()
	shutdownCtx, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	srv.Shutdown(shutdownCtx)
	a.log.Info("stopped")
	return runErr
}

// ready is nil when the agent is doing its whole job.
func (a *agent) ready() error {
	select {
	case <-a.started:
	default:
		return errors.New("starting")
	}
	var errs []error
	if err := a.col.Ready(); err != nil {
		errs = append(errs, fmt.Errorf("collector: %w", err))
	}
	if a.forward != nil {
		if err := a.forward.Ready(); err != nil {
			errs = append(errs, fmt.Errorf("output: %w", err))
		}
	}
	if a.enricher != nil {
		if err := a.enricher.Ready(); err != nil {
			errs = append(errs, fmt.Errorf("enrich (degraded: records carry path metadata only): %w", err))
		}
	}
	return errors.Join(errs...)
}

func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}
