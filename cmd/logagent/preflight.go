package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/logagent/logagent/enrich"
	"github.com/logagent/logagent/output"
)

// preflight checks, for `logagent check`, what newAgent and run would
// reject beyond the configuration's keys: the TLS files load, the kubeconfig
// (or the in-cluster ServiceAccount) yields a client, and the state
// directory can be written. It binds nothing and connects nowhere, so it can
// run beside the agent it checks (kubectl exec ... check).
//
// It runs on a configuration that may have failed validation, so that one
// check names every problem: each file is opened whatever else is wrong.
//
// notes are what it could not check here.
func preflight(cfg *Config, getenv func(string) string) (notes []string, _ error) {
	var errs []error
	if cfg.Output == "forward" {
		for _, f := range []struct{ key, path string }{
			{"forward.tls.ca_file", cfg.Forward.TLS.CAFile},
			{"forward.tls.cert_file", cfg.Forward.TLS.CertFile},
			{"forward.tls.key_file", cfg.Forward.TLS.KeyFile},
		} {
			if f.path == "" || !cfg.Forward.TLS.Enabled {
				continue
			}
			if err := readable(f.path); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
			}
		}
		// With valid keys and readable files, load them as run does: a file
		// that holds no certificate, a key that does not match, a shared
		// key file that is missing or empty, fails here.
		if len(errs) == 0 && cfg.Forward.Validate() == nil {
			if _, err := output.NewForward(cfg.Forward, nil, slog.New(slog.DiscardHandler)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	switch {
	case !cfg.Enrich.Enabled:
	case cfg.Enrich.Kubeconfig == "" && getenv("KUBERNETES_SERVICE_HOST") == "":
		// Checking a DaemonSet's file before deploying it: its client is the
		// pod's ServiceAccount, which exists only in the pod.
		notes = append(notes, "enrich: not checked here: without enrich.kubeconfig the agent uses the pod's ServiceAccount, found only in a cluster")
	default:
		if _, err := enrich.NewClient(cfg.Enrich.Kubeconfig); err != nil {
			errs = append(errs, err)
		}
	}
	if err := writableDir(cfg.Collector.StateDir); err != nil {
		errs = append(errs, fmt.Errorf("collector.state_dir: %w (set --state-dir or $LOGAGENT_STATE_DIR to a folder you may write)", err))
	}
	return notes, joinOnce(errs...)
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// writableDir reports whether dir is, or can be created as, a folder this
// process may write.
func writableDir(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if (errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) && d != filepath.Dir(d) {
			continue // created by the agent, if the nearest existing parent allows
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a folder", d)
		}
		if err := syscall.Access(d, 2 /* W_OK */ |1 /* X_OK */); err != nil {
			if d == dir {
				return fmt.Errorf("%s is not writable: %w", d, err)
			}
			return fmt.Errorf("%s does not exist and cannot be created in %s: %w", dir, d, err)
		}
		return nil
	}
}
