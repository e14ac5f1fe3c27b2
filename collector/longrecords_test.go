package collector

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Many files each joining records longer than what the budget has free: each
// waits its turn, every record arrives once and whole, nothing is split.
func TestLongRecordsWithinBudget(t *testing.T) {
	const files, records, size, piece = 12, 3, 400 << 10, 16 << 10
	n := newNode(t)
	want := map[string]bool{}
	for f := range files {
		live := n.container("default", fmt.Sprintf("big%d", f), "app")
		var b strings.Builder
		for r := range records {
			msg := fmt.Sprintf("f%02d r%d ", f, r) + strings.Repeat(string(rune('a'+r)), size-7)
			want[msg] = true
			for k := 0; k < len(msg); k += piece {
				tag := "P"
				if k+piece >= len(msg) {
					tag = "F"
				}
				fmt.Fprintf(&b, "2026-11-26T12:00:00.%09dZ stdout %s %s\n", f*records+r, tag, msg[k:min(k+piece, len(msg))])
			}
		}
		appendFile(t, live, b.String())
	}
	cfg := n.config()
	cfg.MaxRecordBytes = 512 << 10
	cfg.ReadBytes = 64 << 10
	cfg.BufferBytes = 2*cfg.MaxRecordBytes + cfg.ReadBytes
	sink := newCapture()
	r := start(t, cfg, sink)
	deadline := time.Now().Add(60 * time.Second)
	for sink.distinct() < files*records && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d of %d records; stalls %v, used %v", sink.distinct(), files*records,
		metricValue(t, r.reg, "logagent_collector_memory_stalls_total", nil), metricValue(t, r.reg, "logagent_collector_buffer_used_bytes", nil))
	for msg := range want {
		if c := sink.count(msg); c != 1 {
			t.Fatalf("record %q arrived %d times", msg[:8], c)
		}
	}
	if got := metricValue(t, r.reg, "logagent_collector_records_split_total", nil); got != 0 {
		t.Errorf("%v records split", got)
	}
}
