package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logagent/logagent/output/forwardtest"
)

// node is the agent binary, a kubelet log layout, a state directory and a
// Forward receiver whose tally counts every line across the agent's restarts.
// Tests that kill and restart the agent use it.
type node struct {
	t     *testing.T
	bin   string
	root  string
	state string
	cfg   string
	tally *forwardtest.Tally
	// listen is the agent's --listen address (default: any free port);
	// args are more flags (--enrich, --kubeconfig).
	listen string
	args   []string

	mu    sync.Mutex
	recv  *forwardtest.Receiver
	addr  string
	agent *exec.Cmd
	log   *os.File
}

// newNode starts a receiver and writes the agent's configuration file.
func newNode(t *testing.T, config string) *node {
	t.Helper()
	n := &node{t: t, bin: buildAgent(t), root: t.TempDir(), state: t.TempDir(), tally: &forwardtest.Tally{}}
	n.cfg = writeConfig(t, config)
	if err := os.MkdirAll(filepath.Join(n.root, "containers"), 0o755); err != nil {
		t.Fatal(err)
	}
	recv, err := forwardtest.Start("127.0.0.1:0", forwardtest.Config{}, n.tally)
	if err != nil {
		t.Fatal(err)
	}
	n.recv, n.addr = recv, recv.Addr()
	log, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	n.log = log
	t.Cleanup(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.agent != nil && n.agent.ProcessState == nil {
			n.agent.Process.Kill()
			n.agent.Wait()
		}
		if n.recv != nil {
			n.recv.Close()
		}
		log.Close()
		if t.Failed() {
			if data, err := os.ReadFile(log.Name()); err == nil {
				t.Logf("agent log (tail):\n%s", tail(string(data), 40))
			}
		}
	})
	return n
}

// container makes a container's log directory and its link; it returns the
// live file's path.
func (n *node) container(ns, pod, name string) string {
	n.t.Helper()
	dir := filepath.Join(n.root, "pods", ns+"_"+pod+"_uid-"+pod, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		n.t.Fatal(err)
	}
	live := filepath.Join(dir, "0.log")
	appendLines(n.t, live, "")
	link := filepath.Join(n.root, "containers", fmt.Sprintf("%s_%s_%s-%064x.log", pod, ns, name, len(pod)*31+len(name)))
	if err := os.Symlink(live, link); err != nil && !os.IsExist(err) {
		n.t.Fatal(err)
	}
	return live
}

func (n *node) start() {
	n.t.Helper()
	listen := n.listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	args := []string{"--config", n.cfg, "--output", "forward", "--forward", n.addr,
		"--log-glob", filepath.Join(n.root, "containers", "*.log"), "--state-dir", n.state,
		"--listen", listen, "--node-name", "node-a", "--enrich=false", "--log-level", "info"}
	cmd := exec.Command(n.bin, append(args, n.args...)...)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.mu.Lock()
	n.agent = cmd
	n.mu.Unlock()
}

// kill stops the agent with SIGKILL.
func (n *node) kill() {
	n.mu.Lock()
	a := n.agent
	n.mu.Unlock()
	a.Process.Signal(syscall.SIGKILL)
	a.Wait()
}

// term sends SIGTERM and, if wait, waits for the agent to exit cleanly.
func (n *node) term(wait bool) {
	n.t.Helper()
	n.mu.Lock()
	a := n.agent
	n.mu.Unlock()
	a.Process.Signal(syscall.SIGTERM)
	if wait {
		if err := a.Wait(); err != nil {
			n.t.Errorf("agent exit after SIGTERM: %v", err)
		}
	}
}

func (n *node) receiverDown() {
	n.mu.Lock()
	n.recv.Close()
	n.recv = nil
	n.mu.Unlock()
}

func (n *node) receiverUp() {
	n.t.Helper()
	r, err := forwardtest.Start(n.addr, forwardtest.Config{}, n.tally)
	if err != nil {
		n.t.Fatalf("restart receiver: %v", err)
	}
	n.mu.Lock()
	n.recv = r
	n.mu.Unlock()
}

// waitDistinct waits until the receiver has seen want distinct lines.
func (n *node) waitDistinct(want int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for n.tally.Distinct() < want && time.Now().Before(deadline) {
		select {
		case <-n.tally.Changed():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return n.tally.Distinct() >= want
}

// checkpoints reads the agent's checkpoint file: path -> acknowledged offset.
func (n *node) checkpoints() map[string]int64 {
	data, err := os.ReadFile(filepath.Join(n.state, "checkpoints.json"))
	if err != nil {
		return nil
	}
	var st struct {
		Files []struct {
			Path   string `json:"path"`
			Offset int64  `json:"offset"`
		} `json:"files"`
	}
	if json.Unmarshal(data, &st) != nil {
		return nil
	}
	out := map[string]int64{}
	for _, f := range st.Files {
		out[f.Path] = f.Offset
	}
	return out
}

// freeAddr is a loopback address nothing listens on, for the agent's --listen
// when the test scrapes it.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// seqLine is line i of a container: sequence numbers per container.
func seqLine(name string, i int) string { return fmt.Sprintf("%s seq=%d", name, i) }

// writeLines appends lines [from, to) of a container in CRI format.
func writeLines(t *testing.T, live, name string, from, to int) {
	var b strings.Builder
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%s stdout F %s\n", ts, seqLine(name, i))
	}
	appendLines(t, live, b.String())
}

// account counts, per container, the lines written that never arrived and the
// extra copies that did; it fails the test on any loss.
func (n *node) account(written map[string]int) (total, lost, dups int) {
	n.t.Helper()
	for name, w := range written {
		lo, hi, missing := -1, -1, 0
		for i := range w {
			c := n.tally.Count(seqLine(name, i))
			if c == 0 {
				missing++
				if lo < 0 {
					lo = i
				}
				hi = i
			}
			if c > 1 {
				dups += c - 1
			}
		}
		total += w
		lost += missing
		if missing > 0 {
			n.t.Errorf("%s: %d of %d lines lost, between seq %d and %d", name, missing, w, lo, hi)
		}
	}
	if invalid, errs := n.tally.Invalid(); invalid > 0 {
		n.t.Errorf("%d invalid entries: %v", invalid, errs)
	}
	return total, lost, dups
}
