package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logagent/logagent/collector/collectortest"
	"github.com/logagent/logagent/output"
	"github.com/logagent/logagent/output/forwardtest"
)

func TestChangedKeysAndRestore(t *testing.T) {
	a, b := defaultConfig(), defaultConfig()
	a.Enrich.Labels, b.Enrich.Labels = nil, []string{} // nil and empty are the same setting
	b.Listen = ":9"
	b.Log.Level = "debug"
	b.Collector.ReadBytes = 8192
	b.Collector.Multiline.Select = nil
	b.Forward.Servers = []output.Server{{Address: "a:1"}}
	b.Forward.TLS.CAFile = "/ca.pem"
	got := changedKeys(&a, &b)
	want := []string{"listen", "log.level", "collector.read_bytes", "forward.servers", "forward.tls.ca_file"}
	if !slices.Equal(got, want) {
		t.Fatalf("changedKeys = %v, want %v", got, want)
	}
	for _, k := range []string{"listen", "collector.read_bytes", "forward.servers"} {
		restoreKey(&b, &a, k)
	}
	if got := changedKeys(&a, &b); !slices.Equal(got, []string{"log.level", "forward.tls.ca_file"}) {
		t.Errorf("after restoring: changed %v, want log.level and forward.tls.ca_file", got)
	}
	ag := &agent{}
	for key, want := range map[string]bool{
		"listen": true, "forward.require_ack": true,
		// The collector's Reconfigure decides its keys (read_bytes waits for
		// a restart: TestReconfigureKeys, TestReloadOnSignal).
		"collector.read_bytes": false, "collector.multiline.select": false, "collector.buffer_bytes": false,
		"enrich.kubeconfig": true, "node_name": true, "log.format": true,
		"log.level": false, "forward.servers": false, "forward.tls.ca_file": false, "enrich.labels": false,
		"memory_limit_ratio": false, "shutdown_timeout": false, "debug.pprof": false, "listener": false,
		"forward.tag": true, // with the stdout output, which has no Reconfigure
	} {
		if got := ag.restartOnly(key); got != want {
			t.Errorf("restartOnly(%s) = %v, want %v", key, got, want)
		}
	}
}

// reloadable is an agent run in the test with reloading on, SIGHUP being a
// channel the test sends on.
type reloadable struct {
	*agent
	base string // http://addr
	hup  chan os.Signal
}

func startReloadable(t *testing.T, args ...string) *reloadable {
	t.Helper()
	src := newConfigSource(args, envMap(nil))
	hash := src.hash()
	cfg, err := src.load()
	if err != nil {
		t.Fatal(err)
	}
	log, level := newLevelLogger(cfg.Log, io.Discard)
	if testing.Verbose() {
		log, level = newLevelLogger(cfg.Log, os.Stderr)
	}
	a, err := newAgent(cfg, log, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	hup := make(chan os.Signal, 1)
	a.enableReload(src, hash, level, hup)
	ln := serveAgent(t, a, cfg.Listen)
	return &reloadable{agent: a, base: "http://" + ln.Addr().String(), hup: hup}
}

// reloads is how many reloads ended with result.
func (r *reloadable) reloads(result string) float64 {
	return metricSum(r.base, `logagent_config_reloads_total{result="`+result+`"}`)
}

// sighup reloads and waits for the reload's result.
func (r *reloadable) sighup(t *testing.T) (ok bool) {
	t.Helper()
	s, f := r.reloads("success"), r.reloads("failure")
	r.hup <- nil
	waitUntil(t, "the reload", func() bool { return r.reloads("success")+r.reloads("failure") > s+f })
	return r.reloads("success") > s
}

func (r *reloadable) configStatus(t *testing.T) configStatus {
	t.Helper()
	var st configStatus
	getJSON(t, r.base+"/debug/config", &st)
	return st
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// TestReloadOnSignal: a reload applies the new Forward servers, log level
// and pprof setting; leaves a setting that needs a restart at its running
// value, named; and refuses an invalid configuration, or one whose files do
// not load, as a whole. The metrics and /debug/config say each time what
// happened.
func TestReloadOnSignal(t *testing.T) {
	node, tally, recvA := nodeAndReceiver(t, 2, 300)
	recvB, err := forwardtest.Start("127.0.0.1:0", forwardtest.Config{}, tally)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(recvB.Close)
	state := filepath.Join(t.TempDir(), "state")
	// top goes at the top level, fwd under forward.
	config := func(server, level, top, fwd string) string {
		return fmt.Sprintf(`listen: 127.0.0.1:0
output: forward
enrich: {enabled: false}
log: {level: %s}
%scollector:
  log_glob: %q
  state_dir: %q
forward:
  servers: [{address: %q}]
  batch_age: 50ms
%s`, level, top, node.Glob(), state, server, fwd)
	}
	file := writeConfig(t, config(recvA.Addr(), "info", "", ""))
	r := startReloadable(t, "--config", file)
	waitRecords(tally, node.Records)
	if recvA.Records() != int(node.Records) {
		t.Fatalf("server A has %d records, want %d", recvA.Records(), node.Records)
	}
	if httpStatus(r.base+"/debug/pprof/") != 404 {
		t.Error("pprof answers while debug.pprof is off")
	}

	// Everything that can change live does; collector.read_bytes waits.
	os.WriteFile(file, []byte(config(recvB.Addr(), "debug", "debug: {pprof: true}\n", "  retry_min: 200ms\n")), 0o644)
	// ... and collector.read_bytes, which waits for a restart.
	body, _ := os.ReadFile(file)
	os.WriteFile(file, []byte(strings.Replace(string(body), "collector:\n", "collector:\n  read_bytes: 8192\n", 1)), 0o644)
	if !r.sighup(t) {
		t.Fatalf("reload failed: %+v", r.configStatus(t).LastReload)
	}
	if r.level.Level() != slog.LevelDebug || !r.log.Enabled(context.Background(), slog.LevelDebug) {
		t.Error("log.level debug not applied")
	}
	if httpStatus(r.base+"/debug/pprof/") != 200 || httpStatus(r.base+"/debug/pprof/heap?debug=1") != 200 {
		t.Error("pprof does not answer with debug.pprof on")
	}
	st := r.configStatus(t)
	if !slices.Equal(st.PendingRestart, []string{"collector.read_bytes"}) || metricSum(r.base, "logagent_config_pending_restart") != 1 {
		t.Errorf("pending restart %v (metric %v), want collector.read_bytes", st.PendingRestart, metricSum(r.base, "logagent_config_pending_restart"))
	}
	for _, k := range []string{"log.level", "debug.pprof", "forward.servers", "forward.retry_min"} {
		if !slices.Contains(st.LastReload.Applied, k) {
			t.Errorf("applied %v, want it to include %s", st.LastReload.Applied, k)
		}
	}
	r.mu.Lock()
	readBytes := r.cfg.Collector.ReadBytes
	r.mu.Unlock()
	if readBytes == 8192 {
		t.Error("collector.read_bytes took the new value: it cannot change while running")
	}
	// New records go to server B only.
	if err := appendRecords(node, 0, 100); err != nil {
		t.Fatal(err)
	}
	waitRecords(tally, node.Records)
	if recvB.Records() != 100 || recvA.Records()+recvB.Records() != int(node.Records) {
		t.Errorf("after the reload: A %d, B %d records; want the 100 new ones on B", recvA.Records(), recvB.Records())
	}
	if metricSum(r.base, "logagent_config_last_reload_successful") != 1 {
		t.Error("logagent_config_last_reload_successful is not 1")
	}
	loadedAt := metricSum(r.base, "logagent_config_last_reload_success_timestamp_seconds")

	// An invalid file: nothing changes, the failure is reported.
	os.WriteFile(file, []byte(config(recvA.Addr(), "loud", "", "")), 0o644)
	if r.sighup(t) {
		t.Fatal("a configuration with log.level loud was applied")
	}
	st = r.configStatus(t)
	if st.LastReload.Successful || !strings.Contains(st.LastReload.Error, "log.level") {
		t.Errorf("last reload %+v, want a failure naming log.level", st.LastReload)
	}
	if metricSum(r.base, "logagent_config_last_reload_successful") != 0 ||
		metricSum(r.base, "logagent_config_last_reload_success_timestamp_seconds") != loadedAt {
		t.Error("after a failed reload: want last_reload_successful 0 and the success timestamp unchanged")
	}
	if !r.log.Enabled(context.Background(), slog.LevelDebug) {
		t.Error("a refused configuration changed the log level")
	}

	// Valid, but a file it names does not load: refused by the output, nothing changes.
	os.WriteFile(file, []byte(config(recvA.Addr(), "info", "", "  tls: {enabled: true, ca_file: /nonexistent/ca.pem}\n")), 0o644)
	if r.sighup(t) {
		t.Fatal("a configuration whose CA file does not exist was applied")
	}
	if st := r.configStatus(t); !strings.Contains(st.LastReload.Error, "ca.pem") {
		t.Errorf("last reload error %q, want the CA file named", st.LastReload.Error)
	}
	if !r.log.Enabled(context.Background(), slog.LevelDebug) {
		t.Error("a refused configuration changed the log level")
	}

	// Back to A, without the change that needs a restart: nothing pending.
	os.WriteFile(file, []byte(config(recvA.Addr(), "info", "", "")), 0o644)
	if !r.sighup(t) {
		t.Fatalf("reload failed: %+v", r.configStatus(t).LastReload)
	}
	if st := r.configStatus(t); len(st.PendingRestart) != 0 || metricSum(r.base, "logagent_config_pending_restart") != 0 ||
		st.Reloads != 4 || st.ReloadFails != 2 {
		t.Errorf("status %+v, want nothing pending, 4 reloads of which 2 failed", st)
	}
	if httpStatus(r.base+"/debug/pprof/") != 404 {
		t.Error("pprof still answers after debug.pprof was turned off")
	}
	if err := appendRecords(node, 1, 50); err != nil {
		t.Fatal(err)
	}
	waitRecords(tally, node.Records)
	if recvB.Records() != 100 || tally.Records() != int(node.Records) {
		t.Errorf("A %d, B %d, received %d, written %d: want the last 50 on A", recvA.Records(), recvB.Records(),
			tally.Records(), node.Records)
	}
}

// appendRecords appends n CRI records to the first container of the node's
// pod i, each with its own text, and counts them in node.Records.
func appendRecords(node *collectortest.Node, i, n int) error {
	pod := node.Pods[i]
	path := filepath.Join(node.Root, "pods", pod.Namespace+"_"+pod.Name+"_"+pod.UID, pod.Containers[0], "0.log")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	var b strings.Builder
	for k := range n {
		fmt.Fprintf(&b, "%s stdout F appended %s seq=%d\n", time.Now().UTC().Format(time.RFC3339Nano), pod.Name, node.Records+int64(k))
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	node.Records += int64(n)
	return f.Close()
}
