package deploy

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logagent/logagent/collector"
	"github.com/logagent/logagent/enrich"
	"github.com/logagent/logagent/output"
	"github.com/logagent/logagent/test/kubetest"
	"go.yaml.in/yaml/v3"
)

// The README's reference sections are checked against the code, so they
// cannot drift: every configuration key (from the Config structs' yaml tags),
// its default (from the Default…() constructors), its environment variable
// and flag (from cmd/logagent's settings), and every metric the code defines.

// configKey is one leaf of the configuration file.
type configKey struct {
	path string // dotted yaml path: "forward.tls.ca_file", "forward.servers[].address"
	doc  string // the field's doc comment
	// def is the default as the code sets it, and typ its Go type; typ is nil
	// when the test cannot know it (keys of list elements, node_name).
	def any
	typ reflect.Type
}

// structFields maps "pkg.Type" to its fields, parsed from the source.
type structFields map[string][]*ast.Field

// parseConfigStructs parses the structs of cmd/logagent, collector, enrich
// and output (their non-test files), where the Config structs and the types
// of their fields are.
func parseConfigStructs(t testing.TB, root string) structFields {
	t.Helper()
	out := structFields{}
	var files []struct{ pkg, file string }
	for _, d := range []struct{ pkg, dir string }{
		{"main", "cmd/logagent"}, {"collector", "collector"}, {"enrich", "enrich"}, {"output", "output"},
	} {
		names, _ := filepath.Glob(filepath.Join(root, d.dir, "*.go"))
		for _, n := range names {
			if !strings.HasSuffix(n, "_test.go") {
				files = append(files, struct{ pkg, file string }{d.pkg, n})
			}
		}
	}
	for _, f := range files {
		file, err := parser.ParseFile(token.NewFileSet(), f.file, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			if st, ok := ts.Type.(*ast.StructType); ok {
				out[f.pkg+"."+ts.Name.Name] = st.Fields.List
			}
			return true
		})
	}
	return out
}

// configKeys walks the configuration from cmd/logagent's Config and returns
// every leaf key, with its doc comment.
func configKeys(t testing.TB, root string) []configKey {
	t.Helper()
	structs := parseConfigStructs(t, root)
	var keys []configKey
	var walk func(pkg, typ, prefix string)
	walk = func(pkg, typ, prefix string) {
		fields, ok := structs[pkg+"."+typ]
		if !ok {
			t.Fatalf("struct %s.%s not found", pkg, typ)
		}
		for _, f := range fields {
			if f.Tag == nil {
				continue
			}
			tag, _ := strconv.Unquote(f.Tag.Value)
			name, opts, _ := strings.Cut(reflect.StructTag(tag).Get("yaml"), ",")
			if name == "" && opts == "inline" {
				// An embedded struct whose keys are the parent's.
				if p, typ, ok := structType(pkg, f.Type, structs); ok {
					walk(p, typ, prefix)
					continue
				}
			}
			if name == "" || name == "-" {
				continue
			}
			path := prefix + name
			doc := strings.TrimSpace(strings.ReplaceAll(f.Doc.Text(), "\n", " "))
			if doc == "" {
				doc = strings.TrimSpace(f.Comment.Text())
			}
			expr := f.Type
			if arr, ok := expr.(*ast.ArrayType); ok {
				if p, typ, ok := structType(pkg, arr.Elt, structs); ok {
					// The list itself (a flag may set it whole), then its elements' keys.
					keys = append(keys, configKey{path: path, doc: doc})
					walk(p, typ, path+"[].")
					continue
				}
			}
			if p, typ, ok := structType(pkg, expr, structs); ok {
				walk(p, typ, path+".")
				continue
			}
			keys = append(keys, configKey{path: path, doc: doc})
		}
	}
	walk("main", "Config", "")
	return keys
}

// structType resolves a field type to one of the parsed structs.
func structType(pkg string, e ast.Expr, structs structFields) (string, string, bool) {
	switch e := e.(type) {
	case *ast.Ident:
		_, ok := structs[pkg+"."+e.Name]
		return pkg, e.Name, ok
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok {
			_, found := structs[x.Name+"."+e.Sel.Name]
			return x.Name, e.Sel.Name, found
		}
	}
	return "", "", false
}

// codeDefaults returns the defaults of every key the code sets: the
// packages' Default…() values by reflection, and cmd/logagent's
// defaultConfig literals read from its source.
func codeDefaults(t testing.TB, root string) map[string]configKey {
	t.Helper()
	out := map[string]configKey{}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			fv := v.Field(i)
			if name == "" && opts == "inline" && fv.Kind() == reflect.Struct {
				walk(prefix, fv)
				continue
			}
			if name == "" || name == "-" {
				continue
			}
			if fv.Kind() == reflect.Struct {
				walk(prefix+name+".", fv)
				continue
			}
			if fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct {
				continue // forward.servers: no default elements
			}
			out[prefix+name] = configKey{path: prefix + name, def: fv.Interface(), typ: fv.Type()}
		}
	}
	walk("collector.", reflect.ValueOf(collector.DefaultConfig()))
	walk("enrich.", reflect.ValueOf(enrich.DefaultConfig()))
	walk("forward.", reflect.ValueOf(output.DefaultForwardConfig()))
	// enrich.node_name is overwritten by node_name at load time.
	delete(out, "enrich.node_name")

	for k, v := range mainDefaults(t, root) {
		out[k] = configKey{path: k, def: v, typ: reflect.TypeOf(v)}
	}
	return out
}

// mainDefaults evaluates the literal fields of cmd/logagent's defaultConfig
// (strings, numbers, N * time.Unit, nested struct literals); calls such as
// os.Getenv or collector.DefaultConfig() are left out.
func mainDefaults(t testing.TB, root string) map[string]any {
	t.Helper()
	structs := parseConfigStructs(t, root)
	file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "cmd/logagent/config.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	yamlName := func(typ, field string) string {
		for _, f := range structs["main."+typ] {
			for _, n := range f.Names {
				if n.Name == field && f.Tag != nil {
					tag, _ := strconv.Unquote(f.Tag.Value)
					name, _, _ := strings.Cut(reflect.StructTag(tag).Get("yaml"), ",")
					return name
				}
			}
		}
		return ""
	}
	out := map[string]any{}
	var lit func(prefix, typ string, cl *ast.CompositeLit)
	lit = func(prefix, typ string, cl *ast.CompositeLit) {
		for _, e := range cl.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			field := kv.Key.(*ast.Ident).Name
			name := yamlName(typ, field)
			if name == "" {
				continue
			}
			if inner, ok := kv.Value.(*ast.CompositeLit); ok {
				if id, ok := inner.Type.(*ast.Ident); ok {
					lit(prefix+name+".", id.Name, inner)
				}
				continue
			}
			if v, ok := evalConst(kv.Value); ok {
				out[prefix+name] = v
			}
		}
	}
	found := false
	ast.Inspect(file, func(n ast.Node) bool {
		fn, ok := n.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "defaultConfig" {
			return true
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if cl, ok := n.(*ast.CompositeLit); ok {
				if id, ok := cl.Type.(*ast.Ident); ok && id.Name == "Config" {
					lit("", "Config", cl)
					found = true
					return false
				}
			}
			return true
		})
		return false
	})
	if !found {
		t.Fatal("cmd/logagent/config.go: no Config literal in defaultConfig()")
	}
	return out
}

var timeUnits = map[string]time.Duration{
	"Nanosecond": time.Nanosecond, "Microsecond": time.Microsecond, "Millisecond": time.Millisecond,
	"Second": time.Second, "Minute": time.Minute, "Hour": time.Hour,
}

// evalConst evaluates a small constant expression.
func evalConst(e ast.Expr) (any, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		switch e.Kind {
		case token.STRING:
			s, err := strconv.Unquote(e.Value)
			return s, err == nil
		case token.INT:
			n, err := strconv.Atoi(e.Value)
			return n, err == nil
		}
	case *ast.Ident:
		switch e.Name {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok && x.Name == "time" {
			d, ok := timeUnits[e.Sel.Name]
			return d, ok
		}
	case *ast.BinaryExpr:
		x, ok1 := evalConst(e.X)
		y, ok2 := evalConst(e.Y)
		if !ok1 || !ok2 {
			return nil, false
		}
		xi, xInt := x.(int)
		switch y := y.(type) {
		case time.Duration:
			if xInt && e.Op == token.MUL {
				return time.Duration(xi) * y, true
			}
		case int:
			if xInt && e.Op == token.SHL {
				return xi << y, true
			}
			if xInt && e.Op == token.MUL {
				return xi * y, true
			}
		}
	}
	return nil, false
}

// setting is one entry of cmd/logagent's settings(): a flag and an
// environment variable that set one key.
type setting struct{ flag, env, key string }

// agentSettings reads settings() from cmd/logagent/config.go and maps each
// entry's Config field (the first c.X.Y it mentions) to its yaml key.
func agentSettings(t testing.TB, root string) []setting {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, "cmd/logagent/config.go"))
	if err != nil {
		t.Fatal(err)
	}
	body := string(src)
	start := strings.Index(body, "return []setting{")
	if start < 0 {
		t.Fatal("cmd/logagent/config.go: settings() not found")
	}
	body = body[start:]
	entries := regexp.MustCompile(`(?m)^\t\t\{"`).Split(body, -1)[1:]
	structs := parseConfigStructs(t, root)
	fieldToKey := func(path []string) string {
		pkg, typ := "main", "Config"
		var key []string
		for _, name := range path {
			var next ast.Expr
			for _, f := range structs[pkg+"."+typ] {
				for _, n := range f.Names {
					if n.Name == name && f.Tag != nil {
						tag, _ := strconv.Unquote(f.Tag.Value)
						y, _, _ := strings.Cut(reflect.StructTag(tag).Get("yaml"), ",")
						key = append(key, y)
						next = f.Type
					}
				}
			}
			if next == nil {
				return ""
			}
			if p, tp, ok := structType(pkg, next, structs); ok {
				pkg, typ = p, tp
			}
		}
		return strings.Join(key, ".")
	}
	var out []setting
	for _, e := range entries {
		// An empty flag is an environment-only setting (secrets).
		m := regexp.MustCompile(`^([a-z-]*)", "([A-Z_]+)"`).FindStringSubmatch(e)
		f := regexp.MustCompile(`\bc\.([A-Z]\w*(?:\.[A-Z]\w*)*)`).FindStringSubmatch(e)
		if m == nil || f == nil {
			t.Fatalf("cmd/logagent/config.go: cannot read the settings entry %q", e)
		}
		key := fieldToKey(strings.Split(f[1], "."))
		if key == "" {
			t.Fatalf("settings entry --%s: Config field %s has no yaml key", m[1], f[1])
		}
		out = append(out, setting{flag: m[1], env: m[2], key: key})
	}
	return out
}

// readmeSection returns the text of the README's "## <title>" section.
func readmeSection(t testing.TB, root, title string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "\n## "+title+"\n")
	if i < 0 {
		t.Fatalf("README.md has no %q section", "## "+title)
	}
	rest := text[i+len(title)+5:]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// readmeRow is one row of a reference table: | `key` | default | env | flag | meaning |
type readmeRow struct{ key, def, env, flag string }

func readmeConfigRows(t testing.TB, section string) map[string]readmeRow {
	t.Helper()
	rows := map[string]readmeRow{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) < 5 {
			t.Errorf("README configuration row has %d cells, want 5: %s", len(cells), line)
			continue
		}
		r := readmeRow{key: strings.Trim(strings.TrimSpace(cells[0]), "`"), def: strings.TrimSpace(cells[1]),
			env: strings.TrimSpace(cells[2]), flag: strings.TrimSpace(cells[3])}
		if _, dup := rows[r.key]; dup {
			t.Errorf("README configuration reference lists %s twice", r.key)
		}
		rows[r.key] = r
	}
	return rows
}

// TestREADMEConfigurationReference: the README's "Configuration reference"
// lists every key of the configuration file and no other, each default as the
// code sets it, and each key's environment variable and flag as
// cmd/logagent's settings() maps them.
func TestREADMEConfigurationReference(t *testing.T) {
	root := repoRoot(t)
	section := readmeSection(t, root, "Configuration reference")
	rows := readmeConfigRows(t, section)
	keys := configKeys(t, root)
	defaults := codeDefaults(t, root)
	settings := agentSettings(t, root)

	inCode := map[string]bool{}
	for _, k := range keys {
		inCode[k.path] = true
		if _, ok := rows[k.path]; !ok {
			t.Errorf("README configuration reference lacks %s (%s)", k.path, k.doc)
		}
	}
	for k := range rows {
		if !inCode[k] {
			t.Errorf("README configuration reference lists %s, which the configuration has no key for", k)
		}
	}
	for path, d := range defaults {
		row, ok := rows[path]
		if !ok {
			continue
		}
		m := regexp.MustCompile("^`([^`]*)`").FindStringSubmatch(row.def)
		if m == nil {
			t.Errorf("README %s: default cell %q does not start with a `value`", path, row.def)
			continue
		}
		got := reflect.New(d.typ)
		if err := yaml.Unmarshal([]byte(m[1]), got.Interface()); err != nil {
			t.Errorf("README %s: default `%s` does not decode as %v: %v", path, m[1], d.typ, err)
			continue
		}
		want := reflect.ValueOf(d.def)
		gotV := got.Elem()
		if want.Kind() == reflect.Slice && want.Len() == 0 && gotV.Len() == 0 {
			continue // nil and [] are the same setting
		}
		if !reflect.DeepEqual(gotV.Interface(), d.def) {
			t.Errorf("README %s: default `%s`, the code's is %v", path, m[1], d.def)
		}
	}
	for _, s := range settings {
		row, ok := rows[s.key]
		if !ok {
			t.Errorf("--%s / $%s set %s, which the README does not list", s.flag, s.env, s.key)
			continue
		}
		if !strings.Contains(row.env, "`"+s.env+"`") {
			t.Errorf("README %s: environment cell %q, want `%s`", s.key, row.env, s.env)
		}
		if s.flag == "" {
			if strings.Contains(row.flag, "`--") {
				t.Errorf("README %s: flag cell %q, but it is set from the environment only", s.key, row.flag)
			}
		} else if !strings.Contains(row.flag, "`--"+s.flag+"`") {
			t.Errorf("README %s: flag cell %q, want `--%s`", s.key, row.flag, s.flag)
		}
	}
	// No row claims a flag or variable the agent does not have.
	known := map[string]bool{}
	for _, s := range settings {
		known["`"+s.env+"`"] = true
		if s.flag != "" {
			known["`--"+s.flag+"`"] = true
		}
	}
	for _, r := range rows {
		for _, cell := range []string{r.env, r.flag} {
			for _, tok := range regexp.MustCompile("`[^`]+`").FindAllString(cell, -1) {
				if !known[tok] {
					t.Errorf("README %s names %s, which cmd/logagent's settings() does not define", r.key, tok)
				}
			}
		}
	}
	if testing.Verbose() && t.Failed() {
		t.Logf("the configuration as the code has it:\n%s", draftConfigTable(keys, defaults, settings))
	}
}

// draftConfigTable prints rows as the code has them, to help fix the README.
func draftConfigTable(keys []configKey, defaults map[string]configKey, settings []setting) string {
	var b strings.Builder
	for _, k := range keys {
		def := "—"
		if d, ok := defaults[k.path]; ok {
			out, _ := yaml.Marshal(map[string]any{"v": d.def})
			def = "`" + strings.TrimSpace(strings.TrimPrefix(string(out), "v:")) + "`"
		}
		env, flag := "—", "—"
		for _, s := range settings {
			if s.key == k.path {
				env, flag = "`"+s.env+"`", "`--"+s.flag+"`"
			}
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", k.path, def, env, flag, k.doc)
	}
	return b.String()
}

// codeMetrics returns the metric names the code defines (Name: "logagent_…"
// in the non-test Go files of collector, enrich, output and cmd/logagent),
// with their kind when it can tell.
func codeMetrics(t testing.TB, root string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	re := regexp.MustCompile(`Name:\s*"(logagent_[a-z0-9_]+)"`)
	for _, dir := range []string{"collector", "enrich", "output", "cmd/logagent"} {
		files, _ := filepath.Glob(filepath.Join(root, dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range re.FindAllStringSubmatch(string(data), -1) {
				out[m[1]] = true
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("found only %d metric definitions in the code: the pattern is out of date", len(out))
	}
	return out
}

// TestREADMEMetricsReference: the README's "Metrics reference" documents
// every metric the code defines, and no other logagent_ metric.
func TestREADMEMetricsReference(t *testing.T) {
	root := repoRoot(t)
	defined := codeMetrics(t, root)
	section := readmeSection(t, root, "Metrics reference")
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(logagent_[a-z0-9_]+)`").FindAllStringSubmatch(section, -1) {
		documented[m[1]] = true
	}
	var missing, extra []string
	for m := range defined {
		if !documented[m] {
			missing = append(missing, m)
		}
	}
	for m := range documented {
		if !defined[m] {
			extra = append(extra, m)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("README Metrics reference lacks %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("README Metrics reference documents %v, which the code does not define", extra)
	}
}

// TestMetricNamesExist: every metric the dashboard and the alerts read is one
// the code defines (a histogram's _bucket, _sum and _count included), or one
// Prometheus or client_golang's Go and process collectors provide.
func TestMetricNamesExist(t *testing.T) {
	root := repoRoot(t)
	defined := codeMetrics(t, root)
	exists := func(name string) bool {
		if name == "up" || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "go_") {
			return true
		}
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			if defined[strings.TrimSuffix(name, suffix)] && strings.HasSuffix(name, suffix) {
				return true
			}
		}
		return false
	}
	d := loadDashboard(t)
	for _, p := range d.panels() {
		for _, e := range p.Exprs {
			for _, n := range metricNames(e) {
				if !exists(n) {
					t.Errorf("dashboard panel %q reads %s, which the code does not define", p.Title, n)
				}
			}
		}
	}
	alerts, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(alerts, &rules); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
			for _, n := range metricNames(r.Expr) {
				if !exists(n) {
					t.Errorf("alert %s reads %s, which the code does not define", r.Alert, n)
				}
			}
		}
	}
	for _, want := range []string{"LogagentDown", "LogagentOutputFailing", "LogagentLagGrowing", "LogagentBytesDropped"} {
		if !slices.Contains(names, want) {
			t.Errorf("alerts.yaml has no %s", want)
		}
	}
}

// TestREADMEKustomizeOverlay: the overlay the README's Install section shows
// builds on deploy/kubernetes and does what it says: another image and other
// Forward servers through LOGAGENT_FORWARD.
func TestREADMEKustomizeOverlay(t *testing.T) {
	root := repoRoot(t)
	section := readmeSection(t, root, "Install")
	m := regexp.MustCompile("(?s)```yaml\n(# kustomization.yaml\n.*?)```").FindStringSubmatch(section)
	if m == nil {
		t.Fatal("README Install: no ```yaml block starting with # kustomization.yaml")
	}
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, filepath.Join(root, "deploy", "kubernetes"))
	if err != nil {
		t.Fatal(err)
	}
	overlay := strings.Replace(m[1], "../logagent/deploy/kubernetes", filepath.ToSlash(rel), 1)
	if overlay == m[1] {
		t.Fatal("README overlay: no resource ../logagent/deploy/kubernetes to point at the checkout")
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl := kubetest.RequireBin(t, "kubectl")
	out, err := run(dir, toolEnv(t), nil, kubectl, "kustomize", ".")
	if err != nil {
		t.Fatalf("kubectl kustomize of the README's overlay: %v", err)
	}
	objs := decodeObjects(t, []byte(out))
	for _, o := range objs {
		if o["kind"] == "PodMonitor" {
			t.Error("the overlay still has the PodMonitor")
		}
	}
	if len(objs) != 7 {
		t.Errorf("the overlay renders %d objects, want deploy/kubernetes' 7", len(objs))
	}
	c := agentContainer(t, find(t, objs, "DaemonSet"))
	if c["image"] != "registry.example.com/logagent:0.1.0" {
		t.Errorf("image %v, want the overlay's registry.example.com/logagent:0.1.0", c["image"])
	}
	var forward string
	for _, e := range c["env"].([]any) {
		if e := e.(map[string]any); e["name"] == "LOGAGENT_FORWARD" {
			forward, _ = e["value"].(string)
		}
	}
	if forward == "" {
		t.Fatal("the overlay's LOGAGENT_FORWARD is not in the container's env")
	}
	// The agent takes the variable with the shipped configuration.
	raw, _ := configOf(t, objs)
	out, err = run(dir, []string{"NODE_NAME=node-a", "LOGAGENT_FORWARD=" + forward}, nil, agentBinary(t),
		"check", "--config", writeFile(t, "config.yaml", []byte(raw)), "--state-dir", t.TempDir())
	if err != nil || !strings.Contains(out, "configuration ok") {
		t.Errorf("logagent check with LOGAGENT_FORWARD=%s: %v\n%s", forward, err, out)
	}
}
