package collector

import (
	"fmt"
	"testing"
	"time"
)

// A quiet live file's reader parks (no goroutine) and a write starts it
// again: every line of files written, parked, written again arrives once,
// and a stop ends every reader, parked or not, with nothing left held.
func TestParkedReadersResumeAndEnd(t *testing.T) {
	n := newNode(t)
	cfg := n.config()
	sink := newCapture()
	r := start(t, cfg, sink)
	const files, rounds, per = 40, 5, 20
	paths := make([]string, files)
	for i := range paths {
		paths[i] = n.container("default", fmt.Sprintf("pod%d", i), "app")
	}
	parked := func() int {
		r.c.mu.Lock()
		defer r.c.mu.Unlock()
		k := 0
		r.c.forEachFile(func(f *file) {
			if f.reader != nil && f.parked.Load() != nil {
				k++
			}
		})
		return k
	}
	for round := range rounds {
		for i, p := range paths {
			appendFile(t, p, numberedLines(fmt.Sprintf("f%d-", i), round*per, (round+1)*per))
		}
		waitFor(t, "every line so far", func() bool { return sink.distinct() == files*per*(round+1) })
		waitFor(t, "every reader parked", func() bool { return parked() == files })
	}
	for i := range paths {
		if dups := sink.expectLines(t, fmt.Sprintf("f%d-", i), 0, rounds*per); dups != 0 {
			t.Errorf("file %d: %d duplicates", i, dups)
		}
	}
	r.stop()
	r.c.mu.Lock()
	r.c.forEachFile(func(f *file) {
		if f.reader != nil || f.parked.Load() != nil {
			t.Errorf("%s: a reader is left after the stop", f.path)
		}
	})
	r.c.mu.Unlock()
	if u := r.c.budget.inUse.Load(); u != 0 {
		t.Errorf("%d bytes of the budget still in use after the stop", u)
	}
}

// read_wait grows with the number of files read in the last second, so that
// the collector reads about readsPerSecond times a second, within
// [read_wait, read_wait_max].
func TestAdaptReadWait(t *testing.T) {
	for _, tc := range []struct {
		readWait, readWaitMax time.Duration
		active                int
		want                  time.Duration
	}{
		{150 * time.Millisecond, 500 * time.Millisecond, 0, 150 * time.Millisecond},
		{150 * time.Millisecond, 500 * time.Millisecond, 300, 150 * time.Millisecond},
		{150 * time.Millisecond, 500 * time.Millisecond, 1000, 250 * time.Millisecond},
		{150 * time.Millisecond, 500 * time.Millisecond, 2000, 500 * time.Millisecond},
		{150 * time.Millisecond, 500 * time.Millisecond, 20000, 500 * time.Millisecond},
		{time.Second, 500 * time.Millisecond, 2000, time.Second}, // never below read_wait
		{0, 0, 2000, 0},
	} {
		n := newNode(t)
		cfg := n.config()
		cfg.ReadWait, cfg.ReadWaitMax = tc.readWait, tc.readWaitMax
		c, err := New(cfg, newCapture(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.adaptReadWait(tc.active)
		if got := c.currentReadWait(); got != tc.want {
			t.Errorf("read_wait %s, max %s, %d files: %s, want %s", tc.readWait, tc.readWaitMax, tc.active, got, tc.want)
		}
		c.Close()
	}
}
