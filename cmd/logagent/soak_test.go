//go:build soak

package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSoak is `make soak`: a randomized fault soak of the agent binary for
// SOAK_DURATION (default 10m) from SOAK_SEED (default: the clock, printed),
// outside `make test`. Containers write numbered lines at random rates and
// rotate like the kubelet (rename, gzip the older rotations), while the
// agent is SIGKILLed or stopped and restarted, the Forward receiver goes
// away, rotations come in storms, files are copytruncated, and pods come and
// go. It prints the lines written, lost and duplicated, and fails on any loss.
//
// What the soak keeps out of the agent's hands, so that a loss is the
// agent's: the kubelet deletes rotations beyond five, and a pod's folder
// when the pod goes, whether or not they were read; here a rotation beyond
// five, a copytruncated file's content and a deleted pod's logs go only once
// every line in them was received (deletions are deferred until then).
func TestSoak(t *testing.T) {
	dur := 10 * time.Minute
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SOAK_DURATION: %v", err)
		}
		dur = d
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SOAK_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SOAK_SEED: %v", err)
		}
		seed = s
	}
	t.Logf("soak for %s, SOAK_SEED=%d", dur, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	n := newNode(t, `
shutdown_timeout: 5s
collector:
  rotate_wait: 1s
forward:
  batch_age: 200ms
  ack_timeout: 3s
  retry_min: 100ms
  retry_max: 1s
`)
	s := &soak{n: n, rng: rng, copies: t.TempDir()}
	for range 8 {
		s.addPod()
	}
	n.start()
	events := map[string]int{}
	begin := time.Now()
	for time.Since(begin) < dur {
		time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond) // the workload's pace
		s.retirePending()
		var what string
		switch r := rng.IntN(100); {
		case r < 15:
			what = "kill"
			n.kill()
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
			n.start()
		case r < 25:
			what = "stop"
			n.term(true)
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
			n.start()
		case r < 40:
			what = "receiver outage"
			n.receiverDown()
			time.Sleep(time.Duration(500+rng.IntN(5500)) * time.Millisecond)
			n.receiverUp()
		case r < 50:
			what = "kill during an outage"
			n.receiverDown()
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Millisecond)
			n.kill()
			n.start()
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
			n.receiverUp()
		case r < 65:
			what = "rotation storm"
			s.random().cmd("storm")
		case r < 75:
			what = "copytruncate"
			s.random().cmd("copytruncate")
		case r < 90:
			what = "pod churn"
			s.addPod()
			s.retire(s.random())
		default:
			what = "quiet"
		}
		events[what]++
	}
	s.stopAll()
	written := s.written()
	want := 0
	for _, w := range written {
		want += w
	}
	n.waitDistinct(want, 5*time.Minute)
	n.term(true)
	total, lost, dups := n.account(written)
	var names []string
	for e := range events {
		names = append(names, fmt.Sprintf("%s %d", e, events[e]))
	}
	sort.Strings(names)
	t.Logf("events: %s", strings.Join(names, ", "))
	t.Logf("SOAK_SEED=%d, %s: %d containers, %d lines written, %d lost, %d duplicated (%.2f%%); %d deletions deferred until delivered",
		seed, dur, len(written), total, lost, dups, 100*float64(dups)/float64(max(total, 1)), s.deferred)
	fmt.Fprintf(os.Stderr, "soak: seed %d, %s: lines written %d, lost %d, duplicated %d\n", seed, dur, total, lost, dups)
}

type soak struct {
	n      *node
	rng    *rand.Rand
	copies string

	mu       sync.Mutex
	pods     []*soakPod
	retiring []*soakPod
	gone     map[string]int // retired pods: lines written
	next     int
	deferred int
}

// soakPod is a container writing numbered lines.
type soakPod struct {
	s     *soak
	name  string
	live  string
	cmds  chan string
	done  chan struct{}
	mu    sync.Mutex
	n     int        // lines written
	from  int        // first line of the live file
	files []soakFile // rotations, oldest first
	dir   string
}

type soakFile struct {
	path     string
	from, to int
}

func (s *soak) addPod() {
	s.mu.Lock()
	name := fmt.Sprintf("p%d", s.next)
	s.next++
	s.mu.Unlock()
	live := s.n.container("soak", name, "app")
	p := &soakPod{s: s, name: name, live: live, dir: filepath.Dir(filepath.Dir(live)), cmds: make(chan string, 4), done: make(chan struct{})}
	s.mu.Lock()
	s.pods = append(s.pods, p)
	s.mu.Unlock()
	rate := time.Duration(5+s.rng.IntN(20)) * time.Millisecond
	per := 1 + s.rng.IntN(8)
	every := time.Duration(1000+s.rng.IntN(2000)) * time.Millisecond
	go p.run(rate, per, every)
}

func (s *soak) random() *soakPod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pods[s.rng.IntN(len(s.pods))]
}

// delivered reports whether every line in [from, to) of a container arrived.
func (s *soak) delivered(name string, from, to int) bool {
	for i := from; i < to; i++ {
		if s.n.tally.Count(seqLine(name, i)) == 0 {
			return false
		}
	}
	return true
}

func (p *soakPod) cmd(c string) {
	select {
	case p.cmds <- c:
	default:
	}
}

func (p *soakPod) run(rate time.Duration, per int, every time.Duration) {
	defer close(p.done)
	tick := time.NewTicker(rate)
	defer tick.Stop()
	next := time.Now().Add(every)
	for {
		select {
		case c := <-p.cmds:
			switch c {
			case "stop":
				return
			case "storm":
				for range 5 {
					p.write(per)
					p.rotate()
				}
			case "copytruncate":
				p.copytruncate()
			}
		case <-tick.C:
			p.write(per)
			if time.Now().After(next) {
				next = time.Now().Add(every)
				p.rotate()
			}
		}
	}
}

func (p *soakPod) write(k int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	writeLines(p.s.n.t, p.live, p.name, p.n, p.n+k)
	p.n += k
}

// rotate renames the live file, compresses the older rotations, and removes
// rotations beyond five once delivered.
func (p *soakPod) rotate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.s.n.t
	rotated := fmt.Sprintf("%s.%s", p.live, time.Now().UTC().Format("20060102-150405.000000000"))
	if err := os.Rename(p.live, rotated); err != nil {
		t.Error(err)
		return
	}
	appendLines(t, p.live, "")
	for i := range p.files {
		if f := &p.files[i]; !strings.HasSuffix(f.path, ".gz") {
			if err := gzipFile(f.path); err != nil {
				t.Error(err)
			}
			f.path += ".gz"
		}
	}
	p.files = append(p.files, soakFile{path: rotated, from: p.from, to: p.n})
	p.from = p.n
	for len(p.files) > 5 {
		f := p.files[0]
		if !p.s.delivered(p.name, f.from, f.to) {
			p.s.mu.Lock()
			p.s.deferred++
			p.s.mu.Unlock()
			break
		}
		os.Remove(f.path)
		p.files = p.files[1:]
	}
}

// copytruncate copies the live file out of the log folders and truncates it,
// as logrotate's copytruncate does, once its lines were delivered (the
// content of a copy elsewhere is not the agent's to read).
func (p *soakPod) copytruncate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for !p.s.delivered(p.name, p.from, p.n) {
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	in, err := os.Open(p.live)
	if err != nil {
		return
	}
	out, err := os.Create(filepath.Join(p.s.copies, fmt.Sprintf("%s.%d", p.name, p.n)))
	if err == nil {
		io.Copy(out, in)
		out.Close()
	}
	in.Close()
	if err := os.Truncate(p.live, 0); err != nil {
		p.s.n.t.Error(err)
	}
	p.from = p.n
}

// retire stops a pod; its folder goes once its lines were delivered.
func (s *soak) retire(p *soakPod) {
	s.mu.Lock()
	for i, q := range s.pods {
		if q == p {
			s.pods = append(s.pods[:i], s.pods[i+1:]...)
			break
		}
	}
	s.retiring = append(s.retiring, p)
	s.mu.Unlock()
	p.cmd("stop")
	<-p.done
	s.retirePending()
}

func (s *soak) retirePending() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep []*soakPod
	for _, p := range s.retiring {
		if !s.delivered(p.name, 0, p.n) {
			keep = append(keep, p)
			continue
		}
		links, _ := filepath.Glob(filepath.Join(s.n.root, "containers", p.name+"_soak_*"))
		for _, l := range links {
			os.Remove(l)
		}
		os.RemoveAll(p.dir)
		if s.gone == nil {
			s.gone = map[string]int{}
		}
		s.gone[p.name] = p.n
	}
	s.retiring = keep
}

func (s *soak) stopAll() {
	s.mu.Lock()
	pods := append([]*soakPod(nil), s.pods...)
	s.mu.Unlock()
	for _, p := range pods {
		select {
		case p.cmds <- "stop":
		case <-p.done:
		}
		<-p.done
	}
}

func (s *soak) written() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for name, n := range s.gone {
		out[name] = n
	}
	for _, p := range append(append([]*soakPod(nil), s.pods...), s.retiring...) {
		p.mu.Lock()
		out[p.name] = p.n
		p.mu.Unlock()
	}
	return out
}
