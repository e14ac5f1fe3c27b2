package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/logagent/logagent/collector"
	"go.yaml.in/yaml/v3"
)

// The configuration file is decoded by walking its YAML tree beside the
// Config struct, rather than by yaml.Decoder with KnownFields: the decoder
// stops naming things at Go types ("field logglob not found in type
// collector.Config") and quotes values verbatim, secrets included. The walk
// names every problem by its YAML path (collector.log_glob), reports all of
// them in one pass, and never repeats the value of a key that may hold a
// secret.

// fileProblem is one thing wrong with the configuration file.
type fileProblem struct {
	path string // YAML path: "forward.servers[0].address"; "" for the file as a whole
	line int
	msg  string
}

func (p fileProblem) Error() string {
	where := p.path
	if p.line > 0 {
		if where != "" {
			where += " "
		}
		where += fmt.Sprintf("(line %d)", p.line)
	}
	if where == "" {
		return p.msg
	}
	return where + ": " + p.msg
}

// readConfigFile reads path into cfg: ${VAR} references are replaced from
// getenv, then every key is decoded onto cfg's defaults. The error joins
// every problem found.
func readConfigFile(path string, cfg *Config, getenv func(string) string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config %s: %s", path, redactYAMLError(err, data))
	}
	if len(doc.Content) == 0 {
		return nil // an empty file: every key keeps its default
	}
	var problems []error
	substituteEnv(doc.Content[0], "", getenv, &problems)
	decodeNode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "", &problems)
	return errors.Join(problems...)
}

// envRef is a ${NAME} or ${NAME:-default} reference; $${ is a literal "${".
var envRef = regexp.MustCompile(`\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// substituteEnv replaces ${NAME} and ${NAME:-default} in every scalar value
// (never in keys), as Fluent Bit and Vector do. It works on parsed values,
// not on the text, so a variable holding ": " or a newline stays one value.
// A variable that is unset (or empty) and has no default is a problem: an
// address or a path that silently became "" fails later, and less clearly.
func substituteEnv(n *yaml.Node, path string, getenv func(string) string, problems *[]error) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			substituteEnv(n.Content[i+1], joinPath(path, n.Content[i].Value), getenv, problems)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			substituteEnv(c, fmt.Sprintf("%s[%d]", path, i), getenv, problems)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			if ref == "$${" {
				return "${"
			}
			m := envRef.FindStringSubmatch(ref)
			if v := getenv(m[1]); v != "" {
				return v
			}
			if strings.Contains(ref, ":-") {
				return m[2]
			}
			*problems = append(*problems, fileProblem{path, n.Line,
				fmt.Sprintf("${%s} is not set (give a default with ${%s:-value})", m[1], m[1])})
			return ""
		})
		// A plain scalar is typed by what it now says (${PORT} -> an int);
		// a quoted one stays a string.
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
			n.Tag = ""
		}
	}
}

var durationType = reflect.TypeOf(time.Duration(0))

// isSizeKey reports whether the key at path counts bytes (its name ends in
// _bytes and it holds a signed integer): such keys take sizes with a unit too.
func isSizeKey(path string, t reflect.Type) bool {
	k := t.Kind()
	return strings.HasSuffix(lastKey(path), "_bytes") && t != durationType && k >= reflect.Int && k <= reflect.Int64
}

// decodeNode decodes n onto v (which holds the defaults), appending a
// problem for every unknown key and every value of the wrong type.
func decodeNode(n *yaml.Node, v reflect.Value, path string, problems *[]error) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // "key:" with no value keeps the default
	}
	switch {
	case v.Kind() == reflect.Struct && v.Type() != durationType:
		if n.Kind != yaml.MappingNode {
			*problems = append(*problems, fileProblem{path, n.Line, "want a mapping of keys (" + keyList(v.Type()) + "), not " + describe(n, path)})
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			field, ok := fieldByKey(v, k.Value)
			if !ok {
				msg := "unknown key"
				if s := closestKey(v.Type(), k.Value); s != "" {
					msg += "; did you mean " + s + "?"
				} else {
					msg += " (known: " + keyList(v.Type()) + ")"
				}
				*problems = append(*problems, fileProblem{joinPath(path, k.Value), k.Line, msg})
				continue
			}
			decodeNode(val, field, joinPath(path, k.Value), problems)
		}
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		if n.Kind != yaml.SequenceNode {
			*problems = append(*problems, fileProblem{path, n.Line, "want a list, not " + describe(n, path)})
			return
		}
		list := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			decodeNode(item, list.Index(i), fmt.Sprintf("%s[%d]", path, i), problems)
		}
		v.Set(list)
	case isSizeKey(path, v.Type()) && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
		// "4MiB" for a key counting bytes, as collector.ByteSize reads it.
		size, err := collector.ParseByteSize(n.Value)
		if err != nil || int64(size) > math.MaxInt32 && v.Kind() == reflect.Int32 {
			*problems = append(*problems, fileProblem{path, n.Line, "want " + typeName(v.Type()) + " of bytes or a size such as 4MiB, not " + describe(n, path)})
			return
		}
		v.SetInt(int64(size))
	default:
		target := reflect.New(v.Type())
		if err := n.Decode(target.Interface()); err != nil {
			*problems = append(*problems, fileProblem{path, n.Line, "want " + typeName(v.Type()) + ", not " + describe(n, path)})
			return
		}
		v.Set(target.Elem())
	}
}

// fieldByKey finds the struct field whose yaml tag is key, looking into
// `yaml:",inline"` fields as the YAML decoder does.
func fieldByKey(v reflect.Value, key string) (reflect.Value, bool) {
	for _, f := range yamlFields(v.Type()) {
		if f.name == key {
			return v.FieldByIndex(f.index), true
		}
	}
	return reflect.Value{}, false
}

// yamlField is one key of a struct in the file and where its field is.
type yamlField struct {
	name  string
	index []int
	field reflect.StructField
}

// yamlFields lists the keys of struct type t in field order, with the keys
// of inline fields in their place.
func yamlFields(t reflect.Type) []yamlField {
	var out []yamlField
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" && opts == "inline" && f.Type.Kind() == reflect.Struct {
			for _, in := range yamlFields(f.Type) {
				in.index = append([]int{i}, in.index...)
				out = append(out, in)
			}
			continue
		}
		if name := yamlName(f); name != "" {
			out = append(out, yamlField{name: name, index: []int{i}, field: f})
		}
	}
	return out
}

// yamlName is a field's key in the file, "" for a field that has none.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

func keys(t reflect.Type) []string {
	var out []string
	for _, f := range yamlFields(t) {
		out = append(out, f.name)
	}
	return out
}

func keyList(t reflect.Type) string { return strings.Join(keys(t), ", ") }

// closestKey suggests the known key nearest to a misspelt one, if any is
// close enough to be what was meant.
func closestKey(t reflect.Type, got string) string {
	best, bestDist := "", len(got)/2+1
	for _, k := range keys(t) {
		if d := editDistance(strings.ToLower(got), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration (500ms, 20s, 2m)"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "a whole number"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return "a list of strings"
	}
	return t.String()
}

// describe names what a node holds, quoting a scalar's value unless the key
// may hold a secret.
func describe(n *yaml.Node, path string) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	if secretKey(lastKey(path)) {
		return "the value given (not shown: the key may hold a secret)"
	}
	return fmt.Sprintf("%q", n.Value)
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func lastKey(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		path = path[i+1:]
	}
	if i := strings.IndexByte(path, '['); i >= 0 {
		path = path[:i]
	}
	return path
}

// secretWord matches key names that may hold a secret: shared_key, password,
// token, api_secret, credentials. File names (key_file) are not secrets.
var secretWord = regexp.MustCompile(`(?i)(^|[_-])(key|pass|passwd|password|secret|token|credentials?|auth)([_-]|$)`)

func secretKey(key string) bool {
	return secretWord.MatchString(key) && !strings.HasSuffix(strings.ToLower(key), "_file")
}

// yamlLineRef finds the line numbers in the YAML parser's syntax errors.
var yamlLineRef = regexp.MustCompile(`line (\d+):`)

// redactYAMLError returns a syntax error with the text of the line it points
// at, so the key is named even where the parser only gives a line number;
// the value is left out when the key may hold a secret or is not one of the
// agent's keys (a misspelt shared_key must not be echoed into a log).
func redactYAMLError(err error, data []byte) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	lines := strings.Split(string(data), "\n")
	known := knownKeyNames()
	return yamlLineRef.ReplaceAllStringFunc(msg, func(m string) string {
		var n int
		fmt.Sscanf(yamlLineRef.FindStringSubmatch(m)[1], "%d", &n)
		if n < 1 || n > len(lines) {
			return m
		}
		line := strings.TrimSpace(lines[n-1])
		if key, _, ok := strings.Cut(line, ":"); ok {
			key = strings.TrimSpace(strings.TrimPrefix(key, "- "))
			if secretKey(key) || !known[key] {
				line = key + ": …"
			}
		} else {
			line = "…"
		}
		return fmt.Sprintf("line %d (%q):", n, line)
	})
}

// knownKeyNames is every key name of the configuration file, at any depth.
func knownKeyNames() map[string]bool {
	out := map[string]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for _, f := range yamlFields(t) {
			out[f.name] = true
			ft := f.field.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != durationType {
				walk(ft)
			}
		}
	}
	walk(reflect.TypeOf(Config{}))
	return out
}
