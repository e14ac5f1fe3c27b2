package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/logagent/logagent/output/forwardtest"
)

// The node benchmarks (issue 11): the agent binary as its own process on a
// node's worth of containers writing as runtimes do (one write per line,
// timestamps taken at the write), forwarding with acknowledgement to a local
// receiver that measures each line's age on arrival (arrival time minus the
// CRI timestamp, which the agent sends as the event time). They report the
// agent process's CPU-seconds (user+sys), peak RSS (VmHWM), p50/p99 latency
// and the lines lost. LOGAGENT_BENCH_BIN names a prebuilt agent binary (to
// measure an older build with the same harness); otherwise it is built.
//
//	go test -run '^$' -bench 'Node' -benchtime 1x -timeout 30m ./cmd/logagent/

// BenchmarkNodeManyFiles: N containers write 10,000 lines/s in total for 20 s.
func BenchmarkNodeManyFiles(b *testing.B) {
	for _, n := range []int{300, 2000} {
		b.Run(fmt.Sprintf("files=%d", n), func(b *testing.B) {
			runNodeBench(b, nodeWorkload{files: n, rate: 10000, duration: 20 * time.Second, msgBytes: 250})
		})
	}
}

// BenchmarkNodeFreshness: 10 containers write 20,000 lines/s in total for
// 20 s while the kubelet rotates each file at 5 MB (rename, compress the
// older rotations, keep five files).
func BenchmarkNodeFreshness(b *testing.B) {
	runNodeBench(b, nodeWorkload{files: 10, rate: 20000, duration: 20 * time.Second, msgBytes: 250, rotateBytes: 5 << 20})
}

// BenchmarkNodeIdle: 500 containers write one line each, then nothing: the
// agent's CPU over the next 30 s.
func BenchmarkNodeIdle(b *testing.B) {
	runNodeBench(b, nodeWorkload{files: 500, oneEach: true, msgBytes: 120, idle: 30 * time.Second})
}

// nodeWorkload is one node benchmark's writing pattern.
type nodeWorkload struct {
	files       int
	rate        int // lines per second over all files
	duration    time.Duration
	msgBytes    int   // message length, header excluded
	rotateBytes int64 // rotate a file once it reaches this size; 0: never
	oneEach     bool  // one line per file, then silence
	idle        time.Duration
}

// nodeResult is what one run measured.
type nodeResult struct {
	written, lost, dups int
	cpu                 time.Duration // agent user+sys from its start until the last line arrived
	cpuWriting          time.Duration // ... of which from the first write on
	window              time.Duration // wall time from the first write to the last arrival
	rss                 int64         // VmHWM
	p50, p99, max       time.Duration
	idleCPU             time.Duration // over the idle period
	rotations           int
}

func runNodeBench(b *testing.B, w nodeWorkload) {
	bin := agentBinary(b)
	var last nodeResult
	for i := range b.N {
		r := runNode(b, bin, w)
		b.Logf("run %d: %d lines written, %d lost, %d duplicates, %d rotations; agent %.2f CPU-s (%.2f while writing, %.1f %% of a core over %s), peak RSS %.1f MiB; latency p50 %s p99 %s max %s",
			i, r.written, r.lost, r.dups, r.rotations, r.cpu.Seconds(), r.cpuWriting.Seconds(),
			100*r.cpuWriting.Seconds()/r.window.Seconds(), r.window.Round(time.Millisecond),
			float64(r.rss)/(1<<20), r.p50.Round(100*time.Microsecond), r.p99.Round(100*time.Microsecond), r.max.Round(time.Millisecond))
		if w.idle > 0 {
			b.Logf("run %d: idle %s: %.3f CPU-s, %.2f %% of a core", i, w.idle, r.idleCPU.Seconds(), 100*r.idleCPU.Seconds()/w.idle.Seconds())
		}
		last = r
	}
	b.ReportMetric(last.cpu.Seconds(), "cpu-s")
	if !w.oneEach { // one line per file takes milliseconds: no meaningful share of a core
		b.ReportMetric(100*last.cpuWriting.Seconds()/last.window.Seconds(), "core-%")
	}
	b.ReportMetric(float64(last.rss)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(last.p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(last.p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(last.lost), "lost")
	if w.idle > 0 {
		b.ReportMetric(100*last.idleCPU.Seconds()/w.idle.Seconds(), "idle-core-%")
	}
	b.ReportMetric(0, "ns/op")
}

// agentBinary is LOGAGENT_BENCH_BIN, or the agent built as make build does
// (with -tags benchprofile when LOGAGENT_BENCH_PROFILE_DIR asks for CPU
// profiles of the agent: see profile.go).
func agentBinary(b *testing.B) string {
	b.Helper()
	if bin := os.Getenv("LOGAGENT_BENCH_BIN"); bin != "" {
		b.Logf("agent binary: %s", bin)
		return bin
	}
	if os.Getenv("LOGAGENT_BENCH_PROFILE_DIR") != "" {
		return buildAgent(b, "-tags", "benchprofile")
	}
	return buildAgent(b)
}

// stopProfile ends the agent's CPU profile (SIGUSR1) and waits until it is written.
func stopProfile(b *testing.B, p *os.Process, path string) {
	if err := p.Signal(syscall.SIGUSR1); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	last := int64(-1)
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		fi, err := os.Stat(path)
		if err == nil && fi.Size() > 0 && fi.Size() == last {
			b.Logf("agent CPU profile: %s", path)
			return
		}
		if err == nil {
			last = fi.Size()
		}
	}
	b.Logf("agent CPU profile %s not written", path)
}

func runNode(b *testing.B, bin string, w nodeWorkload) nodeResult {
	root := b.TempDir()
	node, err := newBenchNode(root, w.files, w.msgBytes)
	if err != nil {
		b.Fatal(err)
	}
	defer node.close()

	tr := newLineTracker(w.files)
	tally := &forwardtest.Tally{CountOnly: true, Observe: tr.observe}
	recv, err := forwardtest.Start("127.0.0.1:0", forwardtest.Config{}, tally)
	if err != nil {
		b.Fatal(err)
	}
	defer recv.Close()

	listen := freeAddr(b)
	args := []string{"--output", "forward", "--forward", recv.Addr(), "--log-glob", node.glob(),
		"--state-dir", b.TempDir(), "--listen", listen, "--node-name", "node-a", "--enrich=false", "--log-level", "warn"}
	if f := os.Getenv("BENCH_CONFIG"); f != "" {
		args = append(args, "--config", f) // to compare settings
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	cmd.Env = benchEnv()
	profile := ""
	if dir := os.Getenv("LOGAGENT_BENCH_PROFILE_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		profile = filepath.Join(dir, strings.NewReplacer("/", "_", "=", "").Replace(b.Name())+".pprof")
		cmd.Env = append(cmd.Env, "LOGAGENT_CPUPROFILE="+profile)
	}
	exited, stop := startProcess(b, cmd)
	defer stop()
	pid := cmd.Process.Pid

	// Every file is open before the clock starts.
	waitMetric(b, "http://"+listen+"/metrics", "logagent_collector_files_tailed", float64(w.files), exited)

	var r nodeResult
	cpu0 := procCPU(b, pid)
	start := time.Now()
	if w.oneEach {
		node.writeOneEach(b)
	} else {
		node.writeAt(b, w.rate, w.duration, w.rotateBytes)
	}
	r.written = node.written()
	r.rotations = node.rotationCount()
	tr.expect(r.written)
	select {
	case <-tr.done:
	case <-time.After(2 * time.Minute):
		b.Logf("gave up waiting: %d of %d lines arrived 2 minutes after the last write", tr.distinctCount(), r.written)
	case <-exited:
		b.Fatalf("agent exited: %v", cmd.ProcessState)
	}
	r.window = time.Since(start)
	cpu1 := procCPU(b, pid)
	r.cpu, r.cpuWriting = cpu1, cpu1-cpu0
	if profile != "" && w.idle == 0 {
		stopProfile(b, cmd.Process, profile)
	}
	if w.idle > 0 {
		time.Sleep(w.idle) // the workload: silence
		r.idleCPU = procCPU(b, pid) - cpu1
		if profile != "" {
			stopProfile(b, cmd.Process, profile) // the profile covers the silence too
		}
	}
	r.rss = procHWM(b, pid)
	r.lost = r.written - tr.distinctCount()
	r.dups = tr.duplicates()
	r.p50, r.p99, r.max = tr.percentiles()
	if n, errs := tally.Invalid(); n > 0 {
		b.Errorf("%d invalid entries: %v", n, errs)
	}
	return r
}

// benchNode is a node's container logs in the kubelet layout, written live.
type benchNode struct {
	root    string
	msg     []byte // filler after the line's id
	files   []*benchFile
	rotated chan string // rotations for the compressor
	zdone   chan struct{}
	rots    atomic.Int64
}

type benchFile struct {
	live    string
	fh      *os.File
	size    int64
	written int
}

func newBenchNode(root string, n, msgBytes int) (*benchNode, error) {
	node := &benchNode{root: root, msg: []byte(strings.Repeat("x", max(0, msgBytes-16)))}
	links := filepath.Join(root, "containers")
	if err := os.MkdirAll(links, 0o755); err != nil {
		return nil, err
	}
	for i := range n {
		ns, pod, uid, ctr := fmt.Sprintf("ns%d", i%20), fmt.Sprintf("pod%d", i), fmt.Sprintf("uid-%d", i), "app"
		dir := filepath.Join(root, "pods", ns+"_"+pod+"_"+uid, ctr)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		live := filepath.Join(dir, "0.log")
		fh, err := os.OpenFile(live, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		node.files = append(node.files, &benchFile{live: live, fh: fh})
		if err := os.Symlink(live, filepath.Join(links, fmt.Sprintf("%s_%s_%s-%064x.log", pod, ns, ctr, i+1))); err != nil {
			return nil, err
		}
	}
	node.rotated = make(chan string, 64)
	node.zdone = make(chan struct{})
	go node.compressor()
	return node, nil
}

func (n *benchNode) glob() string { return filepath.Join(n.root, "containers", "*.log") }

func (n *benchNode) close() {
	for _, f := range n.files {
		f.fh.Close()
	}
	close(n.rotated)
	<-n.zdone
}

func (n *benchNode) written() int {
	t := 0
	for _, f := range n.files {
		t += f.written
	}
	return t
}

func (n *benchNode) rotationCount() int { return int(n.rots.Load()) }

// writeLine writes one CRI line to file i with one write(2), as a runtime does.
func (n *benchNode) writeLine(b *testing.B, i int, buf []byte) []byte {
	f := n.files[i]
	buf = time.Now().UTC().AppendFormat(buf[:0], "2006-01-02T15:04:05.000000000Z07:00")
	buf = append(buf, " stdout F "...)
	buf = appendLineID(buf, i, f.written)
	buf = append(buf, n.msg...)
	buf = append(buf, '\n')
	if _, err := f.fh.Write(buf); err != nil {
		b.Fatal(err)
	}
	f.written++
	f.size += int64(len(buf))
	return buf
}

// appendLineID appends "f<file> s<seq> " in fixed width (16 bytes).
func appendLineID(buf []byte, file, seq int) []byte {
	return fmt.Appendf(buf, "f%05d s%08d ", file, seq)
}

// parseLineID reads what appendLineID wrote.
func parseLineID(log string) (file, seq int, ok bool) {
	if len(log) < 16 || log[0] != 'f' || log[7] != 's' {
		return 0, 0, false
	}
	f, err1 := strconv.Atoi(log[1:6])
	s, err2 := strconv.Atoi(log[8:16])
	return f, s, err1 == nil && err2 == nil
}

func (n *benchNode) writeOneEach(b *testing.B) {
	var buf []byte
	for i := range n.files {
		buf = n.writeLine(b, i, buf)
	}
}

// writeAt writes rate lines a second over all files, round-robin, for d.
func (n *benchNode) writeAt(b *testing.B, rate int, d time.Duration, rotateBytes int64) {
	var buf []byte
	start := time.Now()
	total := int(float64(rate) * d.Seconds())
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	next := 0
	for next < total {
		<-tick.C
		due := min(total, int(float64(rate)*time.Since(start).Seconds()))
		for ; next < due; next++ {
			i := next % len(n.files)
			buf = n.writeLine(b, i, buf)
			if rotateBytes > 0 && n.files[i].size >= rotateBytes {
				n.rotate(b, n.files[i])
			}
		}
	}
}

// rotate does what the kubelet does at containerLogMaxSize: rename the live
// file, have the runtime reopen it, then (in the background) compress the
// older rotations and keep containerLogMaxFiles (5) files in all.
func (n *benchNode) rotate(b *testing.B, f *benchFile) {
	rotated := f.live + "." + time.Now().UTC().Format("20060102-150405.000")
	if err := os.Rename(f.live, rotated); err != nil {
		b.Fatal(err)
	}
	f.fh.Close()
	fh, err := os.OpenFile(f.live, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	f.fh, f.size = fh, 0
	n.rots.Add(1)
	n.rotated <- f.live
}

func (n *benchNode) compressor() {
	defer close(n.zdone)
	for live := range n.rotated {
		old, _ := filepath.Glob(live + ".*")
		var plain, gz []string
		for _, o := range old {
			switch {
			case strings.HasSuffix(o, ".gz"):
				gz = append(gz, o)
			case !strings.HasSuffix(o, ".tmp"):
				plain = append(plain, o)
			}
		}
		sort.Strings(plain)
		for _, o := range plain[:max(0, len(plain)-1)] { // all but the newest rotation
			if err := gzipFile(o); err == nil { // as the kubelet: NAME.gz.tmp, renamed, NAME removed
				gz = append(gz, o+".gz")
			}
		}
		sort.Strings(gz)
		for len(gz) > 3 { // live + newest rotation + three compressed = 5 files
			os.Remove(gz[0])
			gz = gz[1:]
		}
	}
}

// lineTracker counts each line's first arrival and its age then.
type lineTracker struct {
	mu       sync.Mutex
	seen     [][]bool // by file, by seq
	distinct int
	dups     int
	ages     []time.Duration
	want     int // 0 until the writing is over
	done     chan struct{}
	closed   bool
}

func newLineTracker(files int) *lineTracker {
	return &lineTracker{seen: make([][]bool, files), done: make(chan struct{})}
}

func (t *lineTracker) observe(arrived time.Time, ev *forwardtest.Event) {
	file, seq, ok := parseLineID(ev.Log)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !ok || file >= len(t.seen) {
		return
	}
	s := t.seen[file]
	if seq >= len(s) {
		s = slices.Grow(s, seq+1-len(s))[:seq+1]
		t.seen[file] = s
	}
	if s[seq] {
		t.dups++
		return
	}
	s[seq] = true
	t.distinct++
	t.ages = append(t.ages, arrived.Sub(ev.Time))
	t.checkLocked()
}

func (t *lineTracker) expect(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.want = n
	t.checkLocked()
}

func (t *lineTracker) checkLocked() {
	if t.want > 0 && t.distinct >= t.want && !t.closed {
		t.closed = true
		close(t.done)
	}
}

func (t *lineTracker) distinctCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.distinct
}

func (t *lineTracker) duplicates() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dups
}

func (t *lineTracker) percentiles() (p50, p99, maxAge time.Duration) {
	t.mu.Lock()
	ages := slices.Clone(t.ages)
	t.mu.Unlock()
	if len(ages) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ages)
	at := func(q float64) time.Duration { return ages[min(len(ages)-1, int(q*float64(len(ages))))] }
	return at(0.50), at(0.99), ages[len(ages)-1]
}

// waitMetric polls the agent's /metrics until the gauge reaches want.
func waitMetric(b *testing.B, url, name string, want float64, exited <-chan struct{}) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	last := -1.0
	for {
		if v, ok := scrapeGauge(url, name); ok {
			last = v
			if v >= want {
				return
			}
		}
		select {
		case <-exited:
			b.Fatalf("agent exited while waiting for %s", name)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s is %v, want %v", name, last, want)
		}
	}
}

func scrapeGauge(url, name string) (float64, bool) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// procCPU is the process's user+sys time so far.
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
	rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
	f := strings.Fields(rest)
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// procHWM is the process's peak resident set size (VmHWM).
func procHWM(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
