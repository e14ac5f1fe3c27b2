package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchTraces are stack traces as the runtimes print them, for the
// benchmark's data (one of them, per rule).
var benchTraces = map[string][]string{
	"python": {
		"Traceback (most recent call last):",
		`  File "/app/server.py", line 88, in handle`,
		"    result = self.dispatch(request)",
		`  File "/app/router.py", line 41, in dispatch`,
		"    raise KeyError(route)",
		"KeyError: '/api/v1/orders'",
	},
	"java": {
		"java.lang.IllegalStateException: order not found",
		"\tat com.example.orders.OrderService.find(OrderService.java:31)",
		"\tat com.example.orders.OrderController.get(OrderController.java:22)",
		"\tat java.base/java.lang.reflect.Method.invoke(Method.java:580)",
		"Caused by: java.sql.SQLException: no rows",
		"\tat com.example.orders.OrderRepository.byId(OrderRepository.java:18)",
		"\t... 3 more",
	},
	"go": {
		"panic: runtime error: index out of range [5] with length 3",
		"",
		"goroutine 7 [running]:",
		"main.handle(...)",
		"\t/app/main.go:42",
		"main.main()",
		"\t/app/main.go:17 +0x25",
	},
}

var benchWords = strings.Fields("request served user order payment cache miss hit retry upstream timeout " +
	"connection pool worker queue shard replica leader follower commit rollback token session cookie header status latency bytes")

// benchMultilineData writes n CRI records like genlogs.py's (plain text and
// JSON messages, one in ten on stderr, every 200th 40 KB long and split into
// 16 KiB partial pieces) where one line in ten belongs to a trace of kind.
func benchMultilineData(n int, kind string) ([]byte, int) {
	rng := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	ts := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	trace := benchTraces[kind]
	// A trace starts with probability p per record, so that its lines are
	// one in ten: p*len / (1 - p + p*len) = 0.1.
	p := 0.1 / (float64(len(trace))*0.9 + 0.1)
	records := 0
	write := func(stream, msg string) {
		stamp := ts.Add(time.Duration(records) * time.Microsecond).Format(time.RFC3339Nano)
		for len(msg) > 16384 {
			fmt.Fprintf(&b, "%s %s P %s\n", stamp, stream, msg[:16384])
			msg = msg[16384:]
		}
		fmt.Fprintf(&b, "%s %s F %s\n", stamp, stream, msg)
		records++
	}
	words := func(k int) string {
		w := make([]string, k)
		for i := range w {
			w[i] = benchWords[rng.IntN(len(benchWords))]
		}
		return strings.Join(w, " ")
	}
	for records < n {
		stream := "stdout"
		if rng.IntN(10) == 0 {
			stream = "stderr"
		}
		switch {
		case rng.Float64() < p:
			for _, l := range trace {
				write(stream, l)
			}
		case records%200 == 199:
			write(stream, strings.Repeat(strings.Repeat("x", 64)+" ", 40000/65)+fmt.Sprintf("long seq=%d", records))
		case rng.IntN(2) == 0:
			write(stream, words(rng.IntN(25)+6)+fmt.Sprintf(" seq=%d", records))
		default:
			j, _ := json.Marshal(map[string]any{"level": "info", "msg": words(rng.IntN(10) + 3), "latency_ms": rng.IntN(900),
				"status": 200, "trace_id": fmt.Sprintf("%032x", rng.Uint64()), "seq": records})
			write(stream, string(j))
		}
	}
	return b.Bytes(), records
}

// BenchmarkMultiline decodes a container's log with the collector's decoder
// and joins its records, as the read loop does, against decoding alone on
// the same data ("none"). Reported per record: ns, and records per
// CPU-second of the process. The bound: joining costs at most 20 %
// more CPU per record than the same data without rules.
//
//	go test -run '^$' -bench Multiline -count 6 ./collector/
func BenchmarkMultiline(b *testing.B) {
	p := testPolicies(b, MultilineRuleConfig{Name: "indented", ConditionPattern: `^\s`})
	for _, tc := range []struct{ name, data, rule string }{
		{"python/none", "python", ""},
		{"python/python", "python", "python"},
		{"java/none", "java", ""},
		{"java/java", "java", "java"},
		{"go/none", "go", ""},
		{"go/go", "go", "go"},
		// Every built-in rule at once, on the Java data.
		{"java/all", "java", "go,java,nodejs,python,ruby"},
		// A continuation pattern alone: every line opens a group that
		// the next line closes (the costliest kind of rule).
		{"java/indented", "java", "indented"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			data, n := benchMultilineData(50000, tc.data)
			var rule *MultilineRule
			if tc.rule != "" {
				var err error
				if rule, err = p.Rule(tc.rule); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			recs := make([]Record, 0, 4096)
			add := func(r Record) { recs = append(recs, r) }
			var cpu time.Duration
			got := 0
			for b.Loop() {
				before := cpuTime()
				d := newDecoder(0, nil)
				var j *Joiner
				if rule != nil {
					j = NewJoiner(rule, p.Limits(), nil)
				}
				var lineStart int64
				emit := add
				if j != nil {
					emit = func(r Record) { j.Add(r, lineStart, add) }
				}
				got = 0
				for pos := 0; pos < len(data); {
					i := bytes.IndexByte(data[pos:], '\n')
					lineStart = int64(pos)
					d.decode(data[pos:pos+i], lineStart, emit)
					pos += i + 1
					if len(recs) >= 4000 {
						got += len(recs)
						recs = recs[:0] // a batch went out
					}
				}
				if j != nil {
					j.Flush(add)
				}
				got += len(recs)
				recs = recs[:0]
				cpu += cpuTime() - before
			}
			if rule == nil && got != n {
				b.Fatalf("%d records, want %d", got, n)
			}
			if rule != nil && got >= n {
				b.Fatalf("%d records from %d lines: nothing joined", got, n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
			b.ReportMetric(float64(n*b.N)/cpu.Seconds(), "records/cpu-s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkMultilineStartState is the cost per line of a rule's start state
// on the benchmark's lines (messages without their CRI header), the part of
// joining every line pays: mostly the prefilters.
//
//	go test -run '^$' -bench MultilineStartState ./collector/
func BenchmarkMultilineStartState(b *testing.B) {
	data, _ := benchMultilineData(20000, "java")
	var lines [][]byte
	for pos := 0; pos < len(data); {
		i := bytes.IndexByte(data[pos:], '\n')
		_, _, _, msg, _ := parseCRI(data[pos : pos+i])
		lines = append(lines, msg)
		pos += i + 1
	}
	p := testPolicies(b)
	for _, name := range []string{"python", "java", "go", "nodejs", "ruby"} {
		r, _ := p.Rule(name)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				for _, l := range lines {
					r.step(0, l)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(lines)), "ns/line")
		})
	}
}

// BenchmarkMultilineTail is the cost of joining in the read loop, the
// collector as it runs (discovery, tailing, decoding, joining, batching into
// a sink that acknowledges at once): 20 containers of the benchmark's data
// (one line in ten in a trace), without rules ("none") and with the rule of
// the traces. Reported: CPU-nanoseconds of the process per record read (a
// record the runtime wrote, before joining), so both figures count the same
// work; the bound is +20 %.
//
//	go test -run '^$' -bench MultilineTail -count 6 ./collector/
func BenchmarkMultilineTail(b *testing.B) {
	const files, perFile = 20, 20000
	for _, kind := range []string{"java", "python", "go"} {
		data, n := benchMultilineData(perFile, kind)
		for _, rule := range []string{"none", kind} {
			b.Run(kind+"/"+rule, func(b *testing.B) {
				root := b.TempDir()
				var paths []string
				for i := range files {
					dir := filepath.Join(root, "pods", fmt.Sprintf("ns_pod%d_uid%d", i, i), "app")
					if err := os.MkdirAll(dir, 0o755); err != nil {
						b.Fatal(err)
					}
					live := filepath.Join(dir, "0.log")
					if err := os.WriteFile(live, data, 0o644); err != nil {
						b.Fatal(err)
					}
					if err := os.MkdirAll(filepath.Join(root, "containers"), 0o755); err != nil {
						b.Fatal(err)
					}
					if err := os.Symlink(live, filepath.Join(root, "containers", fmt.Sprintf("pod%d_ns_app-%064x.log", i, i))); err != nil {
						b.Fatal(err)
					}
					paths = append(paths, live)
				}
				b.SetBytes(int64(files * len(data)))
				b.ReportAllocs()
				var cpu time.Duration
				for b.Loop() {
					cfg := DefaultConfig()
					cfg.LogGlob = filepath.Join(root, "containers", "*.log")
					cfg.StateDir = b.TempDir()
					cfg.PollInterval = 10 * time.Millisecond
					cfg.Multiline.FlushTimeout = 10 * time.Millisecond // the last trace of a file
					if rule != "none" {
						cfg.Multiline.Select = []MultilineSelect{{Rule: rule}}
					}
					c, err := New(cfg, SinkFunc(func(_ context.Context, bt *Batch) error {
						bt.Ack()
						return nil
					}), nil, nil)
					if err != nil {
						b.Fatal(err)
					}
					ctx, cancel := context.WithCancel(context.Background())
					done := make(chan struct{})
					before := cpuTime()
					go func() { defer close(done); c.Run(ctx) }()
					for _, p := range paths {
						for {
							if off, ok := fileOffset(c, p); ok && off == int64(len(data)) {
								break
							}
							time.Sleep(time.Millisecond)
						}
					}
					cpu += cpuTime() - before
					cancel()
					<-done
					c.Close()
				}
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*files*n), "cpu-ns/record")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// BenchmarkMultilineJoin is the joiner alone: the benchmark's records,
// decoded beforehand, through Joiner.Add, per record (every record, in a
// trace or not). It is what BenchmarkMultiline's rule adds to its "none",
// without the decoder's noise.
//
//	go test -run '^$' -bench MultilineJoin ./collector/
func BenchmarkMultilineJoin(b *testing.B) {
	p := testPolicies(b)
	for _, kind := range []string{"python", "java", "go"} {
		data, _ := benchMultilineData(50000, kind)
		var recs []Record
		var starts []int64
		d := newDecoder(0, nil)
		for pos := 0; pos < len(data); {
			i := bytes.IndexByte(data[pos:], '\n')
			start := int64(pos)
			d.decode(data[pos:pos+i], start, func(r Record) {
				recs = append(recs, r)
				starts = append(starts, start)
			})
			pos += i + 1
		}
		rule, err := p.Rule(kind)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(kind, func(b *testing.B) {
			b.ReportAllocs()
			out := 0
			emit := func(Record) { out++ }
			for b.Loop() {
				j := NewJoiner(rule, p.Limits(), nil)
				for i, r := range recs {
					j.Add(r, starts[i], emit)
				}
				j.Flush(emit)
			}
			if out >= b.N*len(recs) {
				b.Fatalf("%d records out of %d: nothing joined", out, b.N*len(recs))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
			b.ReportMetric(0, "ns/op")
		})
	}
}
