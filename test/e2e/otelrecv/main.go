// Command otelrecv runs the OpenTelemetry Collector's fluentforwardreceiver
// on one address with a pipeline that writes every log record to stdout, one
// line each: "L\t<timestamp ns>\t<fluent.tag>\t<stream>\t<kubernetes.pod_name>\t<body>".
// It prints "READY" once listening and shuts down when stdin closes or says "stop".
//
// It is a separate process because the receiver and fluent-logger-golang
// (used by logagent's output) both register msgpack extension type 0 for
// EventTime, and msgp panics when one binary registers a type twice.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/fluentforwardreceiver"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.yaml.in/yaml/v3"
)

var outMu sync.Mutex

// consume writes the records before returning: the receiver acks a chunk only
// after this returns, so every acked record is in the pipe even if we are killed.
func consume(_ context.Context, ld plog.Logs) error {
	var b strings.Builder
	rls := ld.ResourceLogs()
	for i := range rls.Len() {
		sls := rls.At(i).ScopeLogs()
		for j := range sls.Len() {
			lrs := sls.At(j).LogRecords()
			for k := range lrs.Len() {
				lr := lrs.At(k)
				attrs := lr.Attributes()
				tag, _ := attrs.Get("fluent.tag")
				stream, _ := attrs.Get("stream")
				pod := "-"
				if kube, ok := attrs.Get("kubernetes"); ok && kube.Type() == pcommon.ValueTypeMap {
					if p, ok := kube.Map().Get("pod_name"); ok {
						pod = p.Str()
					}
				}
				b.WriteString("L\t")
				b.WriteString(strconv.FormatInt(int64(lr.Timestamp()), 10))
				b.WriteString("\t" + tag.Str() + "\t" + stream.Str() + "\t" + pod + "\t" + lr.Body().Str() + "\n")
			}
		}
	}
	outMu.Lock()
	defer outMu.Unlock()
	_, err := os.Stdout.WriteString(b.String())
	return err
}

// loadReceiverConfig decodes the receivers.fluentforward section of a
// Collector configuration file as the Collector does (confmap, strict: an
// unknown key is an error).
func loadReceiverConfig(path string, cfg *fluentforwardreceiver.Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var file struct {
		Receivers map[string]map[string]any `yaml:"receivers"`
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		return err
	}
	section, ok := file.Receivers["fluentforward"]
	if !ok {
		return fmt.Errorf("%s: no receivers.fluentforward", path)
	}
	return confmap.NewFromStringMap(section).Unmarshal(cfg)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:24224", "address to listen on (overrides the config file's endpoint)")
	configFile := flag.String("config", "", "an OpenTelemetry Collector configuration file whose receivers.fluentforward configures the receiver (the README's, in a test)")
	flag.Parse()
	f := fluentforwardreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*fluentforwardreceiver.Config)
	if *configFile != "" {
		if err := loadReceiverConfig(*configFile, cfg); err != nil {
			fmt.Fprintln(os.Stderr, "config:", err)
			os.Exit(1)
		}
	}
	cfg.ListenAddress = *listen
	next, err := consumer.NewLogs(consume)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	r, err := f.CreateLogs(context.Background(), receivertest.NewNopSettings(f.Type()), cfg, next)
	if err != nil {
		fmt.Fprintln(os.Stderr, "create:", err)
		os.Exit(1)
	}
	if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		os.Exit(2)
	}
	outMu.Lock()
	fmt.Println("READY")
	outMu.Unlock()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() == "stop" {
			break
		}
	}
	r.Shutdown(context.Background())
}
