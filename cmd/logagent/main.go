// Command logagent tails every container's logs on a Kubernetes node,
// attaches the pod's identity, and forwards the records to Fluentd or Fluent
// Bit over the Forward protocol, acknowledged, without losing a line.
//
//	logagent [run] [flags]        run the agent
//	logagent check --config F     validate a configuration and exit
//	logagent demo                 run on generated sample logs, no cluster needed
//	logagent version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch cmd {
	case "run":
		return runCmd(ctx, args, stdout, stderr)
	case "check":
		return checkCmd(args, stdout, stderr)
	case "demo":
		return demoCmd(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "logagent %s\n", version)
		return 0
	default:
		fmt.Fprintf(stderr, "logagent: unknown command %q (want run, check, demo or version)\n", cmd)
		return 2
	}
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig("logagent run", args, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "logagent: %v\n", err)
		return 2
	}
	log := newLogger(cfg.Log, stderr)
	// client-go logs through klog: send it through the agent's structured
	// logger too, so the agent writes one log format.
	klog.SetSlogLogger(log.With("component", "client-go"))
	a, err := newAgent(cfg, log, stdout)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	ln, err := listen(cfg.Listen)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if err := a.run(ctx, ln); err != nil {
		log.Error("run", "err", err)
		return 1
	}
	return 0
}

func checkCmd(args []string, stdout, stderr io.Writer) int {
	if _, err := loadConfig("logagent check", args, os.Getenv); err != nil {
		fmt.Fprintf(stderr, "logagent: invalid configuration:\n%v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "configuration ok")
	return 0
}
