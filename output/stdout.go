package output

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/logagent/logagent/collector"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tinylib/msgp/msgp"
)

// Stdout writes each record as one JSON object per line:
// {"tag": ..., "time": "<RFC 3339 with nanoseconds>", "record": {...}}.
// A batch counts as delivered once written.
type Stdout struct {
	mu      sync.Mutex
	w       *bufio.Writer
	tags    *tagCache
	records prometheus.Counter
	errors  prometheus.Counter
	age     *ageHistogram
	buf     []byte
	times   []int64
}

// NewStdout writes to w; tag is the tag template (as the Forward output's).
// reg may be nil.
func NewStdout(w io.Writer, tag string, reg prometheus.Registerer) (*Stdout, error) {
	tmpl, err := parseTagTemplate(tag)
	if err != nil {
		return nil, fmt.Errorf("stdout: %w", err)
	}
	s := &Stdout{
		w:    bufio.NewWriterSize(w, 64<<10),
		tags: newTagCache(tmpl),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_output_stdout_records_total",
			Help: "Records written to standard output.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logagent_output_stdout_errors_total",
			Help: "Failed writes to standard output.",
		}),
	}
	s.age = newAgeHistogram("stdout")
	if reg != nil {
		reg.MustRegister(s.records, s.errors, s.age)
	}
	return s, nil
}

// Send writes the batch and acknowledges it. A write error is returned with
// the batch unacknowledged, so its checkpoint does not advance.
func (s *Stdout) Send(ctx context.Context, b *collector.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tag, err := json.Marshal(s.tags.get(b.Source))
	if err != nil {
		return fmt.Errorf("stdout: tag: %w", err)
	}
	var kube []byte
	if len(b.Kubernetes) > 0 {
		var jb jsonBuffer
		if _, err := msgp.UnmarshalAsJSON(&jb, b.Kubernetes); err != nil {
			return fmt.Errorf("stdout: kubernetes metadata: %w", err)
		}
		kube = jb.b
	}
	for _, r := range b.Records {
		buf := append(s.buf[:0], `{"tag":`...)
		buf = append(buf, tag...)
		buf = append(buf, `,"time":"`...)
		buf = time.Unix(0, r.Time).UTC().AppendFormat(buf, time.RFC3339Nano)
		buf = append(buf, `","record":{"log":`...)
		buf = appendJSONString(buf, r.Log)
		buf = append(buf, `,"stream":"`...)
		buf = append(buf, r.Stream.String()...)
		buf = append(buf, '"')
		if kube != nil {
			buf = append(buf, `,"kubernetes":`...)
			buf = append(buf, kube...)
		}
		buf = append(buf, "}}\n"...)
		s.buf = buf
		if _, err := s.w.Write(buf); err != nil {
			s.errors.Inc()
			return fmt.Errorf("stdout: %w", err)
		}
	}
	if err := s.w.Flush(); err != nil {
		s.errors.Inc()
		return fmt.Errorf("stdout: %w", err)
	}
	s.records.Add(float64(len(b.Records)))
	s.times = s.times[:0]
	for _, r := range b.Records {
		s.times = append(s.times, r.Time)
	}
	s.age.observe(time.Now(), s.times)
	b.Ack()
	return nil
}

type jsonBuffer struct{ b []byte }

func (j *jsonBuffer) Write(p []byte) (int, error) { j.b = append(j.b, p...); return len(p), nil }

// appendJSONString quotes s as a JSON string. Each invalid UTF-8 byte becomes
// U+FFFD (encoding/json's rule), as in the Forward output (appendStr).
func appendJSONString(buf, s []byte) []byte {
	q, _ := json.Marshal(string(s))
	return append(buf, q...)
}
