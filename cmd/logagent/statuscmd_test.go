package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDialAddr(t *testing.T) {
	for _, tc := range []struct{ listen, want string }{
		{":2020", "127.0.0.1:2020"},
		{"0.0.0.0:2020", "127.0.0.1:2020"},
		{"[::]:2020", "127.0.0.1:2020"},
		{"10.0.0.5:9000", "10.0.0.5:9000"},
		{"[::1]:2020", "[::1]:2020"},
		{"localhost:2020", "localhost:2020"},
	} {
		if got := dialAddr(tc.listen); got != tc.want {
			t.Errorf("dialAddr(%q) = %q, want %q", tc.listen, got, tc.want)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// rowOf returns the fields of the first line of out that contains every one
// of parts.
func rowOf(out string, parts ...string) []string {
	for _, l := range strings.Split(out, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return strings.Fields(l)
		}
	}
	return nil
}

// The agent binary answers "is this pod's log shipped, and how far behind":
// `logagent status` (default address from LOGAGENT_LISTEN, as in the pod)
// shows a delivered file with nothing behind and the connected server, then,
// with the receiver down, the bytes written since as behind; `logagent
// checkpoints` reads the state directory while the agent holds it, and the
// agent goes on checkpointing.
func TestStatusAndCheckpointsCommands(t *testing.T) {
	n := newNode(t, "")
	listen := freeAddr(t)
	_, port, _ := strings.Cut(listen, ":")
	cmd := exec.Command(n.bin, "--config", n.cfg, "--output", "forward", "--forward", n.addr,
		"--log-glob", filepath.Join(n.root, "containers", "*.log"), "--state-dir", n.state,
		"--node-name", "node-a", "--enrich=false", "--log-level", "info")
	cmd.Env = append(os.Environ(), "LOGAGENT_LISTEN=:"+port)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	n.agent = cmd
	n.mu.Unlock()

	shipped := n.container("shop", "cart-7d9f", "app")
	writeLines(t, shipped, "cart", 0, 500)
	if !n.waitDistinct(500, 20*time.Second) {
		t.Fatalf("%d of 500 lines arrived", n.tally.Distinct())
	}
	run := func(args ...string) string {
		t.Helper()
		c := exec.Command(n.bin, args...)
		c.Env = append(os.Environ(), "LOGAGENT_LISTEN=:"+port)
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("logagent %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	fi, err := os.Stat(shipped)
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size()
	var out string
	waitUntil(t, "status to show the file acknowledged", func() bool {
		out = run("status")
		row := rowOf(out, "cart-7d9f", "live")
		// NAMESPACE POD CONTAINER STATE SIZE READ ACKED BEHIND(2 fields) ...
		return len(row) > 8 && row[0] == "shop" && row[2] == "app" && row[4] == itoa(size) && row[6] == itoa(size) && row[7] == "0" && row[8] == "B"
	})
	if row := rowOf(out, n.addr); len(row) < 3 || row[2] != "connected" {
		t.Errorf("server row: %q\n%s", row, out)
	}
	if !strings.Contains(out, "Files: 1: 1 live; 0 B behind") {
		t.Errorf("summary:\n%s", out)
	}

	// Saved every checkpoint_interval: wait for the save of the ack.
	waitUntil(t, "the checkpoint of the first lines", func() bool { return n.checkpoints()[shipped] == size })
	n.receiverDown()
	writeLines(t, shipped, "cart", 500, 1000)
	fi, err = os.Stat(shipped)
	if err != nil {
		t.Fatal(err)
	}
	behind := fi.Size() - size
	waitUntil(t, "status to show the file behind", func() bool {
		out = run("status", "--addr", listen, "--namespace", "shop", "--pod", "cart")
		row := rowOf(out, "cart-7d9f", "live")
		return len(row) > 8 && row[5] == itoa(fi.Size()) && row[6] == itoa(size)
	})
	if !strings.Contains(out, humanBytes(behind)+" behind") {
		t.Errorf("want %s behind:\n%s", humanBytes(behind), out)
	}
	if out := run("status", "--namespace", "other"); !strings.Contains(out, "Files: 0;") {
		t.Errorf("namespace filter:\n%s", out)
	}

	out = run("checkpoints", "--state-dir", n.state)
	row := rowOf(out, "cart-7d9f")
	if len(row) < 6 || row[0] != "shop" || row[3] != itoa(size) || row[4] != itoa(fi.Size()) {
		t.Errorf("checkpoints row %q, want acked %d of %d on disk:\n%s", row, size, fi.Size(), out)
	}
	if !regexp.MustCompile(`checkpoints\.json: 1 files, saved \S+ ago`).MatchString(out) {
		t.Errorf("checkpoints heading:\n%s", out)
	}

	// The agent still saves its checkpoints: checkpoints took no lock.
	n.receiverUp()
	if !n.waitDistinct(1000, 30*time.Second) {
		t.Fatalf("%d of 1000 lines arrived after the receiver came back", n.tally.Distinct())
	}
	waitUntil(t, "the checkpoint at the end of the file", func() bool { return n.checkpoints()[shipped] == fi.Size() })
	n.term(true)
	if total, lost, dups := n.account(map[string]int{"cart": 1000}); lost != 0 || dups != 0 {
		t.Errorf("%d lines: %d lost, %d duplicated", total, lost, dups)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestSubcommandArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"status", "--help"}, 0, "--addr VALUE"},
		{[]string{"checkpoints", "-h"}, 0, "--state-dir VALUE"},
		{[]string{"status", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"status", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"status", "--addr", freeAddr(t)}, 1, "cannot reach the agent"},
		{[]string{"checkpoints", "--state-dir", t.TempDir()}, 1, "no checkpoint file"},
	} {
		var stdout, stderr strings.Builder
		code := realMain(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.out) {
			t.Errorf("logagent %v: exit %d, want %d, output %q, want it to contain %q", tc.args, code, tc.code, stdout.String()+stderr.String(), tc.out)
		}
	}
}

// checkpoints compares each entry with the disk: the same file and what is
// beyond the offset, a file gone, compressed since, or another file at the
// path (its inode differs).
func TestCheckpointsCommandOnDisk(t *testing.T) {
	root, state := t.TempDir(), t.TempDir()
	dir := filepath.Join(root, "pods", "shop_cart_uid-1", "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	same, gone, gz, other := filepath.Join(dir, "0.log"), filepath.Join(dir, "0.log.20261127-070000"),
		filepath.Join(dir, "0.log.20261127-060000"), filepath.Join(dir, "1.log")
	appendLines(t, same, strings.Repeat("x", 3000))
	appendLines(t, gz+".gz", "compressed")
	appendLines(t, other, "new")
	fi, err := os.Stat(same)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := fileIdentity(fi)
	entry := func(path string, dev, ino uint64, off int64, done bool) string {
		return fmt.Sprintf(`{"path":%q,"id":{"dev":%d,"ino":%d},"fp_len":10,"fp":1,"offset":%d,"done":%v}`, path, dev, ino, off, done)
	}
	body := `{"version":1,"files":[` + strings.Join([]string{
		entry(same, id[0], id[1], 1000, false), entry(gone, 1, 2, 500, true),
		entry(gz, 1, 3, 700, false), entry(other, id[0], id[1]+12345, 50, false),
	}, ",") + `]}`
	if err := os.WriteFile(filepath.Join(state, "checkpoints.json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	if code := realMain([]string{"checkpoints", "--state-dir", state}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for path, want := range map[string][]string{
		same:  {"1000", "3000", "2.0", "KiB", "no"},
		gone:  {"500", "gone", "-", "yes"},
		gz:    {"700", "compressed", "-", "no"},
		other: {"50", "3", "(another", "file)", "-"},
	} {
		var got string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasSuffix(l, " "+path) {
				got = strings.Join(strings.Fields(l), " ")
			}
		}
		if !strings.HasPrefix(got, "shop cart app "+strings.Join(want, " ")) {
			t.Errorf("%s: row %q, want it to start with %q", filepath.Base(path), got, "shop cart app "+strings.Join(want, " "))
		}
	}
}

func TestAgentArgs(t *testing.T) {
	for cmdline, want := range map[string][]string{
		"/logagent\x00run\x00--config=/etc/logagent/config.yaml\x00": {"--config=/etc/logagent/config.yaml"},
		"logagent\x00--listen\x00:9000\x00":                          {"--listen", ":9000"},
		"/logagent\x00":                                              {},
		"/logagent\x00status\x00":                                    nil,
		"/bin/sh\x00-c\x00sleep 1\x00":                               nil,
		"":                                                           nil,
	} {
		got := agentArgs([]byte(cmdline))
		if !slices.Equal(got, want) || (got == nil) != (want == nil) {
			t.Errorf("agentArgs(%q) = %q, want %q", cmdline, got, want)
		}
	}
	// The configuration file its --config names is read for the listen
	// setting; the environment still wins, as for run.
	file := writeConfig(t, "listen: 0.0.0.0:9123\ncollector:\n  state_dir: /data/state\n")
	cfg, _ := loadConfig("logagent", agentArgs([]byte("/logagent\x00run\x00--config="+file+"\x00")), envMap(nil))
	if cfg == nil || dialAddr(cfg.Listen) != "127.0.0.1:9123" || cfg.Collector.StateDir != "/data/state" {
		t.Errorf("from the agent's command line: %+v", cfg)
	}
}
