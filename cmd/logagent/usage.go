package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// commands are the subcommands, in the order help lists them.
var commands = []struct{ name, args, what string }{
	{"run", "[flags]", "run the agent (the default: `logagent [flags]` is `logagent run [flags]`)"},
	{"check", "[flags]", "check the configuration as run would (every key, address, TLS file, the kubeconfig), print every problem, exit non-zero on any"},
	{"status", "[--addr host:port] [--namespace NS] [--pod PREFIX]", "print a running agent's files (read and acknowledged offsets, bytes behind, state) and Forward servers as tables (default address: the listen setting, on 127.0.0.1)"},
	{"checkpoints", "[--state-dir DIR] [--namespace NS] [--pod PREFIX]", "print the checkpoint file (acknowledged offset of every file, against its size on disk); read-only, safe while the agent runs"},
	{"demo", "", "write sample logs in the kubelet's layout, run the agent on them, print its counts (no cluster needed)"},
	{"schema", "", "print the JSON Schema of the configuration file (for editors and CI)"},
	{"version", "", "print the version (also --version)"},
	{"help", "", "print this text (also --help, -h)"},
}

func commandNames() []string {
	var out []string
	for _, c := range commands {
		out = append(out, c.name)
	}
	return out
}

// printUsage explains the commands, where settings come from, the flags with
// their variables, and the variables that have no flag.
func printUsage(w io.Writer) {
	fmt.Fprintf(w, "logagent %s: tails the container logs of a Kubernetes node, attaches each pod's identity,\n", version)
	fmt.Fprintln(w, "and forwards the records to Fluentd or Fluent Bit (Forward protocol, acknowledged), or prints them.")
	fmt.Fprintln(w, "\nUsage:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  logagent %s %s\t%s\n", c.name, c.args, c.what)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nSettings come from the YAML file, then environment variables, then flags (flags win).")
	fmt.Fprintln(w, "The file may use ${VAR} and ${VAR:-default}. Flags of run and check:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  --config FILE\t$LOGAGENT_CONFIG\tthe YAML configuration file (none: defaults, environment and flags only)\n")
	for _, s := range settings() {
		switch {
		case s.flag == "":
		case boolFlags[s.flag]:
			fmt.Fprintf(tw, "  --%s[=false]\t$%s\t%s\n", s.flag, s.env, s.usage)
		default:
			fmt.Fprintf(tw, "  --%s VALUE\t$%s\t%s\n", s.flag, s.env, s.usage)
		}
	}
	tw.Flush()

	fmt.Fprintln(w, "\nFrom the environment only (secrets: a command line is visible to every process on the node):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range settings() {
		if s.flag == "" {
			fmt.Fprintf(tw, "  $%s\t%s\n", s.env, s.usage)
		}
	}
	fmt.Fprintf(tw, "  $GOMEMLIMIT\tthe Go runtime's soft memory limit; unset, memory_limit_ratio of the container's limit\n")
	tw.Flush()

	fmt.Fprintln(w, "\nOn a laptop, on any folder in the kubelet's layout (<dir>/containers/*.log linking into <dir>/pods/...):")
	fmt.Fprintln(w, "  logagent --enrich=false --log-glob '<dir>/containers/*.log' --state-dir /tmp/logagent-state --listen 127.0.0.1:2020")
	fmt.Fprintln(w, "  (--enrich=false: no API server, no node name needed; records carry what the file path says.)")
	fmt.Fprintln(w, "\nEvery key of the file: README.md, \"Configuration reference\", or `logagent schema`.")
}
