package deploy

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const installPrometheus = "install Debian's prometheus package (make deps), which provides prometheus and promtool"

// TestPromtoolRules: alerts.yaml passes `promtool check rules`, and its unit
// tests (alerts_test.yaml: each alert fires on its series after its `for`,
// and not on the healthy look-alike) pass `promtool test rules`.
func TestPromtoolRules(t *testing.T) {
	promtool := requireTool(t, "promtool", installPrometheus)
	dir := filepath.Join(repoRoot(t), "deploy", "prometheus")
	out, err := run(dir, nil, nil, promtool, "check", "rules", "alerts.yaml")
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool check rules did not report success:\n%s", out)
	}
	out, err = run(dir, nil, nil, promtool, "test", "rules", "alerts_test.yaml")
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules did not report success:\n%s", out)
	}
}

// TestPrometheusScrapesAgent runs two agents and a real Prometheus (Debian's
// binary) that scrapes them and evaluates deploy/prometheus/alerts.yaml:
//   - agent A reads 16 records in the kubelet layout with the stdout output;
//   - agent B has the Forward output and no server to reach.
//
// It checks the agents' /metrics with `promtool check metrics`, reads the
// counts back through Prometheus' query API, sees the alert rules load and
// evaluate, sees LogagentOutputFailing go pending for B and LogagentDown for A
// once stopped, and runs every query of the Grafana dashboard.
func TestPrometheusScrapesAgent(t *testing.T) {
	promtool := requireTool(t, "promtool", installPrometheus)
	prometheusBin := requireTool(t, "prometheus", installPrometheus)
	root := repoRoot(t)
	dir := t.TempDir()

	containers := []container{
		{namespace: "default", pod: "web-7d4b9c-x2x9k", uid: "6f1c2a4e-0b7a-4c1e-9a53-1d2e3f4a5b6c", name: "nginx", lines: 7},
		{namespace: "payments", pod: "api-0", uid: "0c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f", name: "api", lines: 5},
		{namespace: "payments", pod: "worker-1", uid: "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", name: "worker", lines: 4},
	}
	wantByNamespace := map[string]float64{"default": 7, "payments": 9}
	const wantTotal = 16
	globA := writeKubeletLogs(t, filepath.Join(dir, "logs-a"), containers)
	a := startAgent(t, nil, "run", "--output", "stdout", "--enrich=false", "--log-glob", globA,
		"--state-dir", filepath.Join(dir, "state-a"), "--node-name", "node-a", "--log-format", "text")

	globB := writeKubeletLogs(t, filepath.Join(dir, "logs-b"), []container{
		{namespace: "batch", pod: "job-1", uid: "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7", name: "job", lines: 5},
	})
	closed := freePort(t) // nothing listens here
	// It cannot flush at SIGTERM: a short shutdown_timeout ends the test sooner.
	cfgB := writeFile(t, "agent-b.yaml", []byte("shutdown_timeout: 2s\n"))
	b := startAgent(t, nil, "run", "--config", cfgB, "--output", "forward", "--forward", "127.0.0.1:"+strconv.Itoa(closed),
		"--enrich=false", "--log-glob", globB, "--state-dir", filepath.Join(dir, "state-b"),
		"--node-name", "node-b", "--log-format", "text")

	// Let both agents do their work before linting what they expose: A
	// delivered everything; B tried its server and failed.
	waitFor(t, time.Minute, "agent A's 16 records on stdout", func() (bool, string) {
		v, _, err := a.metric("logagent_output_stdout_records_total", nil)
		return v == wantTotal, fmt.Sprintf("%v records (%v); agent log:\n%s", v, err, tail(a.stderr.String(), 10))
	})
	waitFor(t, time.Minute, "agent B's failed connections", func() (bool, string) {
		v, _, err := b.metric("logagent_output_errors_total", map[string]string{"reason": "dial"})
		return v > 0, fmt.Sprintf("logagent_output_errors_total{reason=dial} = %v (%v)", v, err)
	})
	if n := strings.Count(a.stdout.String(), "\n"); n != wantTotal {
		t.Errorf("agent A wrote %d lines to stdout, want %d", n, wantTotal)
	}

	present := map[string]bool{} // sample names either agent exposes
	t.Run("promtool check metrics", func(t *testing.T) {
		for name, ag := range map[string]*agentProcess{"stdout agent": a, "forward agent": b} {
			status, body, err := httpGet("http://" + ag.addr + "/metrics")
			if err != nil || status != 200 {
				t.Fatalf("%s /metrics: %d %v", name, status, err)
			}
			for _, s := range parseSamples(body) {
				present[s.name] = true
			}
			out, err := run(dir, nil, []byte(body), promtool, "check", "metrics")
			if err != nil || strings.TrimSpace(out) != "" {
				t.Errorf("promtool check metrics on the %s's /metrics: %v\n%s", name, err, out)
			}
		}
		// What promtool checked includes each package's series.
		for _, m := range []string{"logagent_collector_records_total", "logagent_output_stdout_records_total",
			"logagent_output_errors_total", "logagent_output_ack_latency_seconds_bucket", "logagent_output_server_up"} {
			if !present[m] {
				t.Errorf("no agent exposes %s", m)
			}
		}
	})

	prom := startPrometheus(t, prometheusBin, filepath.Join(dir, "prometheus"),
		filepath.Join(root, "deploy", "prometheus", "alerts.yaml"), a.addr, b.addr)

	t.Run("records read, through Prometheus", func(t *testing.T) {
		waitFor(t, time.Minute, "logagent_collector_records_total in Prometheus", func() (bool, string) {
			res, err := prom.query(fmt.Sprintf(`sum by (namespace) (logagent_collector_records_total{instance=%q})`, a.addr))
			if err != nil {
				return false, err.Error()
			}
			got := map[string]float64{}
			for _, s := range res {
				got[s.Metric["namespace"]] = s.value()
			}
			return fmt.Sprint(got) == fmt.Sprint(wantByNamespace), fmt.Sprintf("by namespace %v, want %v", got, wantByNamespace)
		})
		waitFor(t, time.Minute, "logagent_output_stdout_records_total in Prometheus", func() (bool, string) {
			res, err := prom.query(fmt.Sprintf(`logagent_output_stdout_records_total{instance=%q}`, a.addr))
			return err == nil && len(res) == 1 && res[0].value() == wantTotal, fmt.Sprintf("%v (%v), want %d", res, err, wantTotal)
		})
		// Each target is scraped on its own schedule: wait for both.
		waitFor(t, time.Minute, "both agents up in Prometheus", func() (bool, string) {
			res, err := prom.query(`up{job="logagent"} == 1`)
			return err == nil && len(res) == 2, fmt.Sprintf("up == 1: %v (%v)", res, err)
		})
	})

	t.Run("alert rules load and evaluate", func(t *testing.T) {
		waitFor(t, time.Minute, "every rule evaluated without error", func() (bool, string) {
			var rules struct {
				Groups []struct {
					Name  string `json:"name"`
					Rules []struct {
						Name           string    `json:"name"`
						Health         string    `json:"health"`
						LastError      string    `json:"lastError"`
						LastEvaluation time.Time `json:"lastEvaluation"`
					} `json:"rules"`
				} `json:"groups"`
			}
			if err := prom.api("/api/v1/rules", nil, &rules); err != nil {
				return false, err.Error()
			}
			n := 0
			for _, g := range rules.Groups {
				for _, r := range g.Rules {
					if r.Health != "ok" || r.LastEvaluation.IsZero() {
						return false, fmt.Sprintf("rule %s: health %q, last error %q, evaluated %v", r.Name, r.Health, r.LastError, r.LastEvaluation)
					}
					n++
				}
			}
			return n == 8, fmt.Sprintf("%d rules loaded, want 8", n)
		})
	})

	t.Run("LogagentOutputFailing pending for the agent with no server", func(t *testing.T) {
		waitFor(t, 2*time.Minute, "LogagentOutputFailing pending for agent B", func() (bool, string) {
			alerts, err := prom.alerts()
			if err != nil {
				return false, err.Error()
			}
			for _, al := range alerts {
				if al.Labels["alertname"] == "LogagentOutputFailing" && al.Labels["instance"] == a.addr {
					t.Errorf("LogagentOutputFailing for agent A, which has no Forward output: %+v", al)
				}
			}
			return slices.ContainsFunc(alerts, func(al promAlert) bool {
				return al.Labels["alertname"] == "LogagentOutputFailing" && al.Labels["instance"] == b.addr && al.State == "pending"
			}), fmt.Sprintf("alerts: %+v", alerts)
		})
	})

	t.Run("dashboard queries", func(t *testing.T) {
		testDashboardQueries(t, prom, present)
	})

	t.Run("LogagentDown pending once an agent stops", func(t *testing.T) {
		a.stop(t)
		waitFor(t, time.Minute, "LogagentDown pending for agent A", func() (bool, string) {
			alerts, err := prom.alerts()
			if err != nil {
				return false, err.Error()
			}
			return slices.ContainsFunc(alerts, func(al promAlert) bool {
				return al.Labels["alertname"] == "LogagentDown" && al.Labels["instance"] == a.addr && al.State == "pending"
			}), fmt.Sprintf("alerts: %+v", alerts)
		})
	})
}

// testDashboardQueries runs every query of the Grafana dashboard (template
// variables filled in as Grafana would) through Prometheus: each must parse
// and evaluate, and each over metrics the agents expose (present) must return
// data. The variables' label_values queries must find the agents.
func testDashboardQueries(t *testing.T, prom *prometheusServer, present map[string]bool) {
	dash := loadDashboard(t)
	vars := strings.NewReplacer(`$__rate_interval`, "10s", `$__range`, "5m", `$job`, "logagent", `$instance`, ".+")
	var queries, withData int
	defer func() {
		t.Logf("%d dashboard queries evaluated, %d of them required to return data", queries, withData)
	}()
	for _, p := range dash.panels() {
		for _, expr := range p.Exprs {
			q := vars.Replace(expr)
			names := metricNames(expr)
			expectData := len(names) > 0
			for _, n := range names {
				if !present[n] && n != "up" {
					expectData = false
				}
			}
			queries++
			if expectData {
				withData++
			}
			waitFor(t, time.Minute, fmt.Sprintf("panel %q: %s", p.Title, q), func() (bool, string) {
				res, err := prom.query(q)
				if err != nil {
					return false, err.Error()
				}
				return !expectData || len(res) > 0, "no data, though the agents expose " + strings.Join(names, ", ")
			})
		}
	}
	for _, v := range dash.Templating.List {
		q, ok := v.Query.(map[string]any)
		if !ok || v.Type != "query" {
			continue
		}
		m := regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`).FindStringSubmatch(fmt.Sprint(q["query"]))
		if m == nil {
			t.Errorf("variable %s: query %v is not label_values(selector, label)", v.Name, q["query"])
			continue
		}
		sel := vars.Replace(m[1])
		res, err := prom.query(fmt.Sprintf("group by (%s) (%s)", m[2], sel))
		if err != nil || len(res) == 0 {
			t.Errorf("variable %s: label_values(%s, %s) finds nothing (%v)", v.Name, sel, m[2], err)
		}
	}
}

// --- a Prometheus server -------------------------------------------------------

type prometheusServer struct {
	base string
	cmd  *exec.Cmd
	log  *syncBuffer
}

// startPrometheus starts Prometheus on a free loopback port, scraping the
// targets every second as job "logagent" and evaluating rules every second,
// with its data in dir. It is stopped when t ends.
func startPrometheus(t *testing.T, bin, dir, rules string, targets ...string) *prometheusServer {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var quoted []string
	for _, tg := range targets {
		quoted = append(quoted, strconv.Quote(tg))
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: logagent
    static_configs:
      - targets: [%s]
`, rules, strings.Join(quoted, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var last string
	for attempt := 0; attempt < 3; attempt++ {
		p := &prometheusServer{base: "http://127.0.0.1:" + strconv.Itoa(freePort(t)), log: &syncBuffer{}}
		p.cmd = exec.Command(bin, "--config.file="+cfgPath,
			"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data%d", attempt)),
			"--web.listen-address="+strings.TrimPrefix(p.base, "http://"))
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("start prometheus: %v", err)
		}
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		ready := false
		deadline := time.Now().Add(time.Minute)
		for !ready && time.Now().Before(deadline) {
			select {
			case <-done:
				deadline = time.Now() // exited: give up this attempt
				continue
			default:
			}
			status, _, err := httpGet(p.base + "/-/ready")
			ready = err == nil && status == 200
			if !ready {
				time.Sleep(pollInterval)
			}
		}
		if ready {
			t.Cleanup(func() {
				p.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					p.cmd.Process.Kill()
					<-done
				}
				if t.Failed() {
					t.Logf("prometheus log:\n%s", tail(p.log.String(), 30))
				}
			})
			return p
		}
		p.cmd.Process.Kill()
		<-done
		last = tail(p.log.String(), 20)
		if !strings.Contains(last, "address already in use") {
			break
		}
	}
	t.Fatalf("prometheus did not become ready:\n%s", last)
	return nil
}

// api GETs a Prometheus API path and decodes the "data" of a success.
func (p *prometheusServer) api(path string, params url.Values, data any) error {
	u := p.base + path
	if params != nil {
		u += "?" + params.Encode()
	}
	status, body, err := httpGet(u)
	if err != nil {
		return err
	}
	var resp struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		return fmt.Errorf("%s: HTTP %d: %v: %.300s", path, status, err, body)
	}
	if resp.Status != "success" {
		return fmt.Errorf("%s: %s", path, resp.Error)
	}
	return json.Unmarshal(resp.Data, data)
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s promSample) value() float64 {
	v, _ := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
	return v
}

// query runs an instant query and returns its vector, sorted by labels.
func (p *prometheusServer) query(q string) ([]promSample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api("/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	if data.ResultType == "scalar" {
		return []promSample{{}}, nil
	}
	var res []promSample
	if err := json.Unmarshal(data.Result, &res); err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	sort.Slice(res, func(i, j int) bool { return fmt.Sprint(res[i].Metric) < fmt.Sprint(res[j].Metric) })
	return res, nil
}

type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p *prometheusServer) alerts() ([]promAlert, error) {
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	err := p.api("/api/v1/alerts", nil, &data)
	return data.Alerts, err
}
