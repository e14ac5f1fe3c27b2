package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/logagent/logagent/output"
)

// statusCmd prints what a running agent serves at /debug/files and
// /debug/servers as tables: `kubectl exec ds/logagent -- logagent status`
// (the image has no shell, no curl). It exits 1 if the agent cannot be
// reached.
func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs, ns, pod := newFilesFlagSet("status")
	addr := fs.String("addr", "", "the agent's listen address (default: the listen setting of the agent in this container, else as $LOGAGENT_LISTEN or $LOGAGENT_CONFIG say; on 127.0.0.1)")
	if code, done := parseSubcommand(fs, "status", args, stdout, stderr); done {
		return code
	}
	if *addr == "" {
		*addr = defaultStatusAddr(getenv)
	}
	base := "http://" + *addr
	client := &http.Client{Timeout: 10 * time.Second}

	var files filesStatus
	filesErr := fetchJSON(ctx, client, base+"/debug/files", &files)
	var servers output.Status
	serversErr := fetchJSON(ctx, client, base+"/debug/servers", &servers)
	if filesErr != nil && serversErr != nil {
		fmt.Fprintf(stderr, "logagent status: cannot reach the agent at %s: %v\n", *addr, filesErr)
		return 1
	}
	now := time.Now()
	if filesErr != nil {
		fmt.Fprintf(stdout, "Files: not available (%v)\n", filesErr)
	} else {
		printFiles(stdout, files.Files, *ns, *pod, now)
	}
	fmt.Fprintln(stdout)
	if serversErr != nil {
		fmt.Fprintf(stdout, "Servers: not available (%v)\n", serversErr)
	} else {
		printServers(stdout, servers, now)
	}
	return 0
}

// defaultStatusAddr is where run listens, as its settings say, on the
// loopback address when it listens on every address.
func defaultStatusAddr(getenv func(string) string) string {
	listen := defaultConfig().Listen
	if cfg := agentConfig(getenv); cfg != nil && cfg.Listen != "" {
		listen = cfg.Listen
	}
	return dialAddr(listen)
}

// agentConfig is the configuration of the agent this command runs beside,
// as far as it can be read: in the agent's container (`kubectl exec`), PID 1
// is the agent, and its command line (--config=...) and the container's
// environment are what it loaded; elsewhere, the environment
// ($LOGAGENT_CONFIG, ...) alone. Problems elsewhere in the configuration do
// not matter here: nil only if nothing could be read.
func agentConfig(getenv func(string) string) *Config {
	data, _ := os.ReadFile("/proc/1/cmdline")
	cfg, _ := loadConfig("logagent", agentArgs(data), getenv)
	return cfg
}

// agentArgs returns the flags of a `logagent [run] flags...` command line
// (NUL-separated, as /proc/<pid>/cmdline), or nil if it is not one.
func agentArgs(cmdline []byte) []string {
	parts := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(parts) == 0 || filepath.Base(parts[0]) != "logagent" {
		return nil
	}
	args := parts[1:]
	if len(args) > 0 && args[0] == "run" {
		args = args[1:]
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return nil // another command
	}
	return args
}

// dialAddr turns a listen address into one to connect to: no host, or an
// unspecified one (0.0.0.0, ::), is 127.0.0.1.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func fetchJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	return nil
}

// printFiles prints one line per file and a summary: how many files in each
// state, and the bytes written but not yet acknowledged.
func printFiles(w io.Writer, all []fileStatus, ns, pod string, now time.Time) {
	var files []fileStatus
	for _, f := range all {
		if (ns == "" || f.Namespace == ns) && strings.HasPrefix(f.Pod, pod) {
			files = append(files, f)
		}
	}
	count := map[string]int{}
	var behind int64
	for _, f := range files {
		count[f.State]++
		behind += f.BytesBehind
	}
	var parts []string
	for _, s := range fileStates {
		if count[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[s], s))
		}
	}
	summary := ""
	if len(parts) > 0 {
		summary = ": " + strings.Join(parts, ", ")
	}
	fmt.Fprintf(w, "Files: %d%s; %s behind (written, not yet acknowledged)\n", len(files), summary, humanBytes(behind))
	if len(files) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tPOD\tCONTAINER\tSTATE\tSIZE\tREAD\tACKED\tBEHIND\tLAST READ\tPATH")
	for _, f := range files {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", f.Namespace, f.Pod, f.Container, f.State,
			f.Size, f.ReadOffset, f.AckedOffset, humanBytes(f.BytesBehind), ago(f.LastRead, now), f.Path)
	}
	tw.Flush()
}

func printServers(w io.Writer, st output.Status, now time.Time) {
	fmt.Fprintf(w, "Servers: %d\n", len(st.Servers))
	if d := st.Discovery; d != nil {
		fmt.Fprintf(w, "Discovery: %s (%s, every %s)\n", d.Name, d.Type, d.Refresh)
	}
	if len(st.Servers) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tORIGIN\tSTATE\tWEIGHT\tIN FLIGHT\tDELIVERED\tCONNECTED\tLAST ERROR")
	for _, s := range st.Servers {
		state := s.State
		if s.Standby {
			state += " (standby)"
		}
		lastErr := "-"
		if s.LastError != "" {
			lastErr = s.LastError + " (" + ago(s.LastErrorAt, now) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d chunks, %s\t%d\t%s\t%s\n", s.Address, s.Origin, state, s.Weight,
			s.InFlightChunks, humanBytes(int64(s.InFlightBytes)), s.RecordsDelivered, since(s.ConnectedSince, now), lastErr)
	}
	tw.Flush()
}

// humanBytes writes n in B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

// ago says how long before now t was: "12s ago", "never" for a zero t.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

// since says how long a connection has lasted: "for 3m0s", "-" if none.
func since(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return "for " + now.Sub(t).Round(time.Second).String()
}

// newFilesFlagSet is a subcommand's flag set with the filters of the files
// it lists: --namespace and --pod.
func newFilesFlagSet(name string) (fs *flag.FlagSet, ns, pod *string) {
	fs = flag.NewFlagSet("logagent "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ns = fs.String("namespace", "", "only the files of this namespace")
	pod = fs.String("pod", "", "only the files of pods whose name starts with this")
	return fs, ns, pod
}

// parseSubcommand parses a subcommand's arguments; done says to exit with
// code (help was printed, or the arguments are wrong).
func parseSubcommand(fs *flag.FlagSet, name string, args []string, stdout, stderr io.Writer) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printSubUsage(stdout, name, fs)
			return 0, true
		}
		fmt.Fprintf(stderr, "logagent %s: %v (see logagent %s --help)\n", name, err, name)
		return 2, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "logagent %s: unexpected argument %q\n", name, fs.Arg(0))
		return 2, true
	}
	return 0, false
}

// printSubUsage prints a subcommand's line of help and its flags.
func printSubUsage(w io.Writer, name string, fs *flag.FlagSet) {
	for _, c := range commands {
		if c.name == name {
			fmt.Fprintf(w, "logagent %s %s\n  %s\n\nFlags:\n", c.name, c.args, c.what)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(tw, "  --%s VALUE\t%s\n", f.Name, f.Usage)
	})
	tw.Flush()
}
