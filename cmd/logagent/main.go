// Command logagent tails every container's logs on a Kubernetes node,
// attaches the pod's identity, and forwards the records to Fluentd or Fluent
// Bit over the Forward protocol, acknowledged, without losing a line.
//
//	logagent [run] [flags]        run the agent
//	logagent check [flags]        check a configuration as run would, and exit
//	logagent status [--addr host:port]   print a running agent's files and servers
//	logagent checkpoints [--state-dir DIR] print the checkpoint file
//	logagent demo                 run on generated sample logs, no cluster needed
//	logagent schema               print the configuration file's JSON Schema
//	logagent version              print the version
//	logagent help                 explain the commands, flags and variables
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
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
	if len(args) > 0 {
		switch a := args[0]; {
		case a == "-h" || a == "-help" || a == "--help":
			cmd, args = "help", args[1:]
		case a == "-version" || a == "--version":
			cmd, args = "version", args[1:]
		case a != "" && a[0] != '-':
			cmd, args = a, args[1:]
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch cmd {
	case "run":
		return runCmd(ctx, args, stdout, stderr)
	case "check":
		return checkCmd(args, stdout, stderr)
	case "status":
		return statusCmd(ctx, args, stdout, stderr, os.Getenv)
	case "checkpoints":
		return checkpointsCmd(args, stdout, stderr, os.Getenv)
	case "demo":
		return demoCmd(ctx, args, stdout, stderr)
	case "schema":
		return schemaCmd(stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "logagent %s\n", version)
		return 0
	case "help":
		printUsage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "logagent: unknown command %q (want %s; see logagent --help)\n", cmd, strings.Join(commandNames(), ", "))
		return 2
	}
}

// printProblems prints a heading and each problem of err on a line of its own.
func printProblems(w io.Writer, heading string, err error) {
	problems := strings.Split(err.Error(), "\n")
	plural := "s"
	if len(problems) == 1 {
		plural = ""
	}
	fmt.Fprintf(w, "%s (%d problem%s):\n", heading, len(problems), plural)
	for _, p := range problems {
		fmt.Fprintf(w, "  %s\n", p)
	}
	fmt.Fprintln(w, "(logagent --help explains the flags and variables; README.md, \"Configuration reference\", every key)")
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// At once: SIGHUP's default action ends the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	src := newConfigSource(args, os.Getenv)
	hash := src.hash() // before reading it: a change meanwhile is seen
	cfg, err := src.load()
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout)
		return 0
	case err != nil:
		printProblems(stderr, "logagent run: invalid configuration", err)
		return 2
	}
	log, level := newLevelLogger(cfg.Log, stderr)
	// client-go logs through klog: send it through the agent's structured
	// logger too, so the agent writes one log format.
	klog.SetSlogLogger(log.With("component", "client-go"))
	setMemoryLimit(cfg.MemoryLimitRatio, os.Getenv, log)
	a, err := newAgent(cfg, log, stdout)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	a.enableReload(src, hash, level, hup)
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

// checkCmd checks what run would reject: every key of the file, the
// environment and the flags, and then the files the configuration names
// (TLS files, kubeconfig, the state directory) and its addresses.
func checkCmd(args []string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig("logagent check", args, os.Getenv)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout)
		return 0
	case cfg == nil:
		printProblems(stderr, "logagent check: invalid command line", err)
		return 2
	}
	notes, ferr := preflight(cfg, os.Getenv)
	if err := joinOnce(err, ferr); err != nil {
		printProblems(stderr, "logagent check: the agent would not start", err)
		return 1
	}
	for _, n := range notes {
		fmt.Fprintln(stdout, "note:", n)
	}
	fmt.Fprintln(stdout, "configuration ok")
	return 0
}
