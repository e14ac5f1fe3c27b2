package main

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"

	"github.com/logagent/logagent/collector"
)

// The JSON Schema of the configuration file is generated from Config, the
// same struct the file is decoded into and the README's reference is checked
// against: the Helm chart's values.schema.json embeds it under "config" (a
// test in deploy/ keeps them equal), so a misspelt config.* value fails
// `helm install` instead of the pods.

// schemaEnums are the keys whose string values are a fixed set; a test
// checks each against Config.Validate.
var schemaEnums = map[string][]string{
	"output":                 {"stdout", "forward"},
	"log.level":              {"debug", "info", "warn", "error"},
	"log.format":             {"json", "text"},
	"collector.read_from":    {"head", "tail"},
	"forward.discovery.type": {"A", "AAAA", "SRV"},
}

// schemaRequired are the keys a list element must have.
var schemaRequired = map[string][]string{
	"forward.servers[]": {"address"},
}

// durationPattern is what time.ParseDuration accepts.
const durationPattern = `^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`

// configSchema returns the JSON Schema (draft-07) of the configuration file.
func configSchema() map[string]any {
	s := schemaOf(reflect.TypeOf(Config{}), "")
	s["$schema"] = "http://json-schema.org/draft-07/schema#"
	s["title"] = "logagent configuration file"
	s["description"] = "Generated from the agent's Config by `logagent schema`; every key is described in README.md, Configuration reference."
	return s
}

var byteSizeType = reflect.TypeOf(collector.ByteSize(0))

// sizePattern is what collector.ParseByteSize reads (a string's pattern: a
// number is a number of bytes).
const sizePattern = `^\s*[0-9]+(\.[0-9]+)?\s*(B|k|K|kB|KB|M|MB|G|GB|Ki|KiB|Mi|MiB|Gi|GiB)?(/s)?\s*$`

func schemaOf(t reflect.Type, path string) map[string]any {
	switch {
	case t == durationType:
		return map[string]any{"type": "string", "pattern": durationPattern}
	case t.Kind() == reflect.Struct:
		props := map[string]any{}
		for _, f := range yamlFields(t) {
			props[f.name] = schemaOf(f.field.Type, joinPath(path, f.name))
		}
		s := map[string]any{"type": "object", "additionalProperties": false, "properties": props}
		if req, ok := schemaRequired[path]; ok {
			s["required"] = req
		}
		return s
	case t == byteSizeType || isSizeKey(path, t):
		// A number of bytes, or a size with its unit ("2MiB", "500KiB/s").
		return map[string]any{"type": []string{"integer", "string"}, "pattern": sizePattern}
	case t.Kind() == reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), path+"[]")}
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), path+".*")}
	case t.Kind() == reflect.Bool:
		return map[string]any{"type": "boolean"}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return map[string]any{"type": "integer"}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return map[string]any{"type": "number"}
	case t.Kind() == reflect.String:
		if e, ok := schemaEnums[path]; ok {
			return map[string]any{"enum": e}
		}
		return map[string]any{"type": "string"}
	}
	panic(fmt.Sprintf("schema: %s has type %s, which the schema generator does not know", path, t))
}

func schemaCmd(stdout, stderr io.Writer) int {
	out, err := json.MarshalIndent(configSchema(), "", "  ")
	if err != nil {
		fmt.Fprintln(stderr, "logagent schema:", err)
		return 1
	}
	fmt.Fprintln(stdout, string(out))
	return 0
}
