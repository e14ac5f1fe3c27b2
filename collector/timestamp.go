package collector

import "time"

// parseTimestamp returns the Unix nanoseconds of an RFC 3339 timestamp as the
// container runtimes write it. The shapes they use are parsed by hand, without
// allocating:
//
//	2026-11-26T15:55:12.123456789Z       containerd, Docker json-file
//	2026-11-26T15:55:12.1234+00:00       CRI-O (numeric offset, fraction trimmed)
//	2026-11-26T15:55:12-05:00            no fraction at all
//
// Anything else (more than nine fraction digits, a comma separator, ...) is left
// to time.Parse(time.RFC3339Nano), which decides.
func parseTimestamp(b []byte) (int64, bool) {
	if ns, ok := parseTimestampFast(b); ok {
		return ns, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return 0, false
	}
	return t.UnixNano(), true
}

// parseTimestampFast parses the canonical shapes only. ok=false means "not one
// of them", not necessarily "invalid": the caller then asks time.Parse. It never
// accepts a string that time.Parse rejects, nor returns a different instant
// (FuzzTimestamp checks both).
func parseTimestampFast(b []byte) (int64, bool) {
	// YYYY-MM-DDTHH:MM:SS is 19 bytes; the shortest valid form adds "Z".
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	year, ok1 := digits4(b[0:4])
	month, ok2 := digits2(b[5:7])
	day, ok3 := digits2(b[8:10])
	hour, ok4 := digits2(b[11:13])
	minute, ok5 := digits2(b[14:16])
	sec, ok6 := digits2(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		month < 1 || month > 12 || day < 1 || day > daysInMonth(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return 0, false
	}
	rest := b[19:]

	var nsec int64
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			nsec = nsec*10 + int64(rest[n]-'0')
			n++
		}
		digits := n - 1
		if digits == 0 || digits > 9 {
			return 0, false
		}
		nsec *= pow10[9-digits]
		rest = rest[n:]
	}

	var offset int64 // seconds east of UTC
	switch {
	case len(rest) == 1 && rest[0] == 'Z':
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, okh := digits2(rest[1:3])
		om, okm := digits2(rest[4:6])
		if !okh || !okm || oh > 23 || om > 59 {
			return 0, false
		}
		offset = int64(oh*3600 + om*60)
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false
	}

	secs := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec) - offset
	return secs*1e9 + nsec, true
}

var pow10 = [10]int64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000}

func digits2(b []byte) (int, bool) {
	d0, d1 := b[0]-'0', b[1]-'0'
	return int(d0)*10 + int(d1), d0 <= 9 && d1 <= 9
}

func digits4(b []byte) (int, bool) {
	hi, ok1 := digits2(b[0:2])
	lo, ok2 := digits2(b[2:4])
	return hi*100 + lo, ok1 && ok2
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysInMonth(m, y int) int {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian date
// (Howard Hinnant's algorithm; valid for every year 0..9999 we accept).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400 // [0, 399]
	mp := (m + 9) % 12 // March = 0
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy // [0, 146096]
	return int64(era)*146097 + int64(doe) - 719468
}
