package collector

import (
	"strings"
	"testing"
	"time"
)

// refTime is what time.Parse makes of s, the reference the hand parser must match.
func refTime(t testing.TB, s string) int64 {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("time.Parse(%q): %v", s, err)
	}
	return tm.UnixNano()
}

func TestTimestampFractionDigitsAndOffsets(t *testing.T) {
	base := time.Date(2026, 11, 26, 15, 55, 12, 0, time.UTC).UnixNano()
	fractions := []struct {
		frac string
		ns   int64
	}{
		{"", 0},
		{".1", 100000000},
		{".12", 120000000},
		{".123", 123000000},
		{".1234", 123400000},
		{".12345", 123450000},
		{".123456", 123456000},
		{".1234567", 123456700},
		{".12345678", 123456780},
		{".123456789", 123456789},
		{".000000001", 1},
		{".5", 500000000},
		{".050", 50000000},
	}
	zones := []struct {
		zone string
		east int64 // seconds east of UTC
	}{
		{"Z", 0},
		{"+00:00", 0},
		{"-00:00", 0},
		{"-05:00", -5 * 3600},
		{"+05:30", 5*3600 + 30*60},
		{"+14:00", 14 * 3600},
		{"-09:45", -(9*3600 + 45*60)},
		{"+23:59", 23*3600 + 59*60},
	}
	for _, f := range fractions {
		for _, z := range zones {
			s := "2026-11-26T15:55:12" + f.frac + z.zone
			want := base + f.ns - z.east*1e9
			got, ok := parseTimestampFast([]byte(s))
			if !ok || got != want {
				t.Errorf("parseTimestampFast(%q) = %d, %v; want %d, true", s, got, ok, want)
			}
			if ref := refTime(t, s); ref != want {
				t.Errorf("test table wrong for %q: time.Parse says %d, table %d", s, ref, want)
			}
			if got, ok := parseTimestamp([]byte(s)); !ok || got != want {
				t.Errorf("parseTimestamp(%q) = %d, %v; want %d, true", s, got, ok, want)
			}
		}
	}
}

func TestTimestampDates(t *testing.T) {
	// Calendar edges, each checked against time.Parse.
	for _, s := range []string{
		"1970-01-01T00:00:00Z",
		"1969-12-31T23:59:59.999999999Z",
		"2000-02-29T12:00:00Z", // leap (divisible by 400)
		"2024-02-29T23:59:59.5Z",
		"2026-12-31T23:59:59.999999999Z",
		"2027-01-01T00:00:00-00:01",
		"2100-03-01T00:00:00Z",
		"1900-03-01T00:00:00Z",
		"2262-04-11T23:47:16.854775807Z", // the last int64 nanosecond
		"1677-09-21T00:12:43.145224192Z", // the first
		"0001-01-01T00:00:00Z",
		"9999-12-31T23:59:59Z",
	} {
		want := refTime(t, s)
		got, ok := parseTimestampFast([]byte(s))
		if !ok || got != want {
			t.Errorf("parseTimestampFast(%q) = %d, %v; want %d, true", s, got, ok, want)
		}
	}
}

func TestTimestampNotCanonical(t *testing.T) {
	for _, tc := range []struct {
		in       string
		fastOK   bool // accepted by the hand parser
		parsedOK bool // accepted by parseTimestamp (time.Parse as fallback)
	}{
		{"2026-11-26T15:55:12.1234567891Z", false, true}, // 10 digits: time.Parse truncates
		{"2026-11-26T15:55:12,123Z", false, true},        // comma separator, time.Parse allows it
		{"2026-13-26T15:55:12Z", false, false},           // month 13
		{"2026-00-26T15:55:12Z", false, false},
		{"2026-02-29T15:55:12Z", false, false}, // not a leap year
		{"2100-02-29T15:55:12Z", false, false}, // nor is 2100
		{"2026-04-31T15:55:12Z", false, false},
		{"2026-11-00T15:55:12Z", false, false},
		{"2026-11-26T24:00:00Z", false, false},
		{"2026-11-26T15:60:12Z", false, false},
		{"2026-11-26T15:55:60Z", false, false},     // Go has no leap seconds
		{"2026-11-26T15:55:12+24:00", false, true}, // time.Parse is lenient here
		{"2026-11-26T15:55:12+05:60", false, true},
		{"2026-11-26T15:55:12+0500", false, false},
		{"2026-11-26T15:55:12.Z", false, false},
		{"2026-11-26T15:55:12", false, false}, // no zone
		{"2026-11-26 15:55:12Z", false, false},
		{"2026-11-26T15:55:12ZZ", false, false},
		{"2026-11-26T15:55:12.123+05:00x", false, false},
		{"2026-1x-26T15:55:12Z", false, false},
		{"", false, false},
		{"garbage", false, false},
		{"2026-11-26T15:55:12.12a4Z", false, false},
	} {
		_, fastOK := parseTimestampFast([]byte(tc.in))
		got, ok := parseTimestamp([]byte(tc.in))
		if fastOK != tc.fastOK || ok != tc.parsedOK {
			t.Errorf("%q: fast ok=%v, parsed ok=%v; want %v, %v", tc.in, fastOK, ok, tc.fastOK, tc.parsedOK)
			continue
		}
		if ok {
			if want := refTime(t, tc.in); got != want {
				t.Errorf("parseTimestamp(%q) = %d, want %d", tc.in, got, want)
			}
		}
	}
}

// FuzzTimestamp checks the hand parser against time.Parse: whatever it
// accepts, time.Parse accepts too and reads as the same instant.
func FuzzTimestamp(f *testing.F) {
	for _, s := range []string{
		"2026-11-26T15:55:12.123456789Z", "2026-11-26T15:55:12.1+00:00", "2026-11-26T15:55:12-05:00",
		"2024-02-29T00:00:00.000000001+14:00", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999-23:59",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseTimestampFast([]byte(s))
		tm, err := time.Parse(time.RFC3339Nano, s)
		if ok {
			if err != nil {
				t.Fatalf("hand parser accepts %q, time.Parse does not: %v", s, err)
			}
			if want := tm.UnixNano(); got != want {
				t.Fatalf("%q: hand parser %d, time.Parse %d", s, got, want)
			}
		}
		// A canonical shape time.Parse accepts must not be sent to the slow path.
		if err == nil && !ok && isCanonicalShape(s) {
			t.Fatalf("%q: canonical, but the hand parser declined it", s)
		}
	})
}

// isCanonicalShape: digits where digits belong, 1-9 fraction digits, Z or ±hh:mm
// with hh <= 23 and mm <= 59.
func isCanonicalShape(s string) bool {
	const tmpl = "dddd-dd-ddTdd:dd:dd"
	if len(s) < len(tmpl)+1 {
		return false
	}
	for i := range len(tmpl) {
		if c := s[i]; tmpl[i] == 'd' && (c < '0' || c > '9') || tmpl[i] != 'd' && c != tmpl[i] {
			return false
		}
	}
	rest := s[len(tmpl):]
	if strings.HasPrefix(rest, ".") {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return false
		}
		rest = rest[n:]
	}
	if rest == "Z" {
		return true
	}
	if len(rest) != 6 || rest[0] != '+' && rest[0] != '-' || rest[3] != ':' {
		return false
	}
	// time.Parse takes +24:00 or +00:60 by its lenient path; the hand parser
	// leaves those to it.
	return rest[1:3] <= "23" && rest[4:6] <= "59"
}

func BenchmarkTimestamp(b *testing.B) {
	for _, s := range []string{"2026-11-26T15:55:12.123456789Z", "2026-11-26T15:55:12.1234-05:00"} {
		b.Run(s[len(s)-6:], func(b *testing.B) {
			in := []byte(s)
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := parseTimestamp(in); !ok {
					b.Fatal("no parse")
				}
			}
		})
	}
}
