package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Panels     []dashPanel
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type dashPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // a collapsed row's
	Exprs  []string    `json:"-"`
}

func loadDashboard(t testing.TB) dashboard {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "grafana", "logagent.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("deploy/grafana/logagent.json: %v", err)
	}
	return d
}

// panels returns every panel, rows' children included, with its queries.
func (d dashboard) panels() []dashPanel {
	var out []dashPanel
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				p.Exprs = append(p.Exprs, tg.Expr)
			}
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

var metricNameRE = regexp.MustCompile(`\b(logagent_[a-z0-9_]+|process_[a-z0-9_]+|go_[a-z0-9_]+|up)\b`)

// metricNames lists the metric names a PromQL expression reads.
func metricNames(expr string) []string {
	var out []string
	for _, m := range metricNameRE.FindAllString(expr, -1) {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// TestDashboard checks the dashboard's shape without a server: unique panel
// ids, panels on the 24-column grid without overlaps, every query on the
// datasource variable, and the topics the issue asks for covered. Its queries
// are run against a real Prometheus in TestPrometheusScrapesAgent, and their
// metric names checked against the code in TestMetricNamesExist.
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q: both must be set (provisioning and links use the uid)", d.UID, d.Title)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		Query any    `json:"query"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource"
	}) {
		t.Error("no datasource variable: the dashboard would be tied to one data source uid")
	}
	ids := map[int]string{}
	var all []string
	type cell struct{ x, y int }
	used := map[cell]string{}
	for _, p := range d.panels() {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", p.Title, other, p.ID)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v is off the 24-column grid", p.Title, g)
		}
		overlap := ""
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, taken := used[cell{x, y}]; taken && overlap == "" {
					overlap = fmt.Sprintf("panels %q and %q overlap at %d,%d", p.Title, other, x, y)
				}
				used[cell{x, y}] = p.Title
			}
		}
		if overlap != "" {
			t.Error(overlap)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Exprs) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, e := range p.Exprs {
			if strings.Contains(e, "logagent_") && !strings.Contains(e, `instance=~"$instance"`) {
				t.Errorf("panel %q: query %s ignores the $instance variable", p.Title, e)
			}
		}
		all = append(all, p.Exprs...)
	}
	joined := strings.Join(all, "\n")
	for topic, metric := range map[string]string{
		"throughput in":        "logagent_collector_records_total",
		"throughput out":       "logagent_output_records_acked_total",
		"lag":                  "logagent_collector_lag_bytes",
		"errors":               "logagent_output_errors_total",
		"retries":              "logagent_output_retries_total",
		"drops":                "logagent_collector_dropped_bytes_total",
		"pods cached":          "logagent_enrich_pods_cached",
		"freshness":            "logagent_output_record_age_seconds_bucket",
		"per-namespace volume": "sum by (namespace)",
	} {
		if !strings.Contains(joined, metric) {
			t.Errorf("the dashboard has no %s panel (no query with %s)", topic, metric)
		}
	}
}
