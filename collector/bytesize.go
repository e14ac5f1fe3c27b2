package collector

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ByteSize is a number of bytes that configuration and annotations may
// write with a unit: "2MiB", "500KiB", "1.5MB", "800k", or a plain number of
// bytes. Binary units (Ki, Mi, Gi, with or without B) count 1024s; decimal
// ones (k/K, M, G, with or without B) 1000s, as Kubernetes quantities do. A
// trailing "/s" is allowed, for rates ("2MiB/s").
type ByteSize int64

// ParseByteSize reads a ByteSize. It refuses negative, fractional-byte and
// overflowing values with an error naming the text.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(t, "/s")
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult, ok := sizeUnits[unit]
	if !ok || num == "" {
		return 0, fmt.Errorf("size %q: want a number of bytes, or a number with a unit (KiB, MiB, GiB, kB, MB, GB, Ki, Mi, Gi, k, M, G)", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	b := v * float64(mult)
	if b >= math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	if b != math.Trunc(b) {
		return 0, fmt.Errorf("size %q: not a whole number of bytes", s)
	}
	return ByteSize(b), nil
}

var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"k": 1e3, "K": 1e3, "kB": 1e3, "KB": 1e3,
	"M": 1e6, "MB": 1e6,
	"G": 1e9, "GB": 1e9,
	"Ki": 1 << 10, "KiB": 1 << 10,
	"Mi": 1 << 20, "MiB": 1 << 20,
	"Gi": 1 << 30, "GiB": 1 << 30,
}

// UnmarshalYAML takes a number or a string with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a size must be a number or a string such as 2MiB", n.Line)
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// String writes the size with the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}
