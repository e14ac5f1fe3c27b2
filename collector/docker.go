package collector

import (
	"bytes"
	"encoding/json"
	"unicode/utf16"
	"unicode/utf8"
)

// Docker's json-file log driver writes one JSON object per line:
//
//	{"log":"hello\n","stream":"stdout","time":"2026-11-26T15:55:12.123456789Z"}
//
// A line the container wrote longer than 16 KiB is split into pieces; every
// piece but the last lacks the trailing "\n" of its "log". Docker always writes
// the keys in this order, so a fixed-shape scanner reads them without
// allocating, "attrs" (log-opts labels, env, tag) included; anything else
// (other key order, other keys, whitespace) goes through encoding/json.

const (
	// arenaBlock is the allocation unit for decoded Docker messages: small
	// enough that an idle file's decoder holds little, large enough to serve
	// dozens of typical records per allocation.
	arenaBlock = 8 << 10
	// arenaMaxOne is the largest message taken from the arena; longer ones get
	// an allocation of their own so a block is not wasted.
	arenaMaxOne = 1 << 10
)

// decodeDocker decodes one line of a Docker json-file log.
func (d *decoder) decodeDocker(line []byte, start int64, emit func(Record)) {
	raw, s, ts, shaped := scanDockerFast(line)
	ok := shaped
	if !shaped {
		raw, s, ts, ok = parseDockerSlow(line)
	}
	var t int64
	if ok {
		t, ok = parseTimestamp(ts)
	}
	if !ok || !d.dockerLog(raw, s, t, start, emit) {
		d.malformed(line, emit)
	}
}

// dockerLog handles the "log" value of a good line: raw is the JSON string
// between its quotes, escapes intact. It returns false, having changed
// nothing, if raw holds an invalid escape.
func (d *decoder) dockerLog(raw []byte, s Stream, t, start int64, emit func(Record)) bool {
	p := &d.pend[s]
	if !p.active {
		bs := bytes.IndexByte(raw, '\\')
		switch {
		case bs < 0:
			// No escape, so no "\n": a piece of a split line. Join below.
		case bs == len(raw)-2 && raw[bs+1] == 'n':
			// The only escape is the final newline: zero-copy.
			d.good(t)
			d.emitFull(s, t, raw[:bs], emit)
			return true
		case rawEndsWithNewline(raw):
			// A whole line with escapes: decode it into the arena.
			n := len(raw)
			var dst []byte
			inArena := n <= arenaMaxOne
			if inArena {
				if cap(d.arena)-len(d.arena) < n {
					d.arena = make([]byte, 0, arenaBlock)
					d.alloc += arenaBlock
				}
				dst = d.arena[len(d.arena):len(d.arena)]
			} else {
				dst = make([]byte, 0, n)
				d.alloc += int64(n)
			}
			out, ok := appendUnescaped(dst, raw)
			if !ok {
				return false
			}
			if len(out) > 0 && out[len(out)-1] == '\n' { // always, as raw ends in an escaped newline
				if inArena {
					d.arena = d.arena[:len(d.arena)+len(out)]
				}
				d.good(t)
				d.emitFull(s, t, out[:len(out)-1], emit)
				return true
			}
		}
	}

	wasActive := p.active
	prev := d.beginPiece(p, t, start, len(raw))
	var ok bool
	p.buf, ok = appendUnescaped(p.buf, raw)
	if !ok {
		if wasActive {
			p.buf = p.buf[:prev]
		} else {
			*p = pending{}
		}
		return false
	}
	d.good(t)
	final := len(p.buf) > prev && p.buf[len(p.buf)-1] == '\n'
	if final {
		p.buf = p.buf[:len(p.buf)-1]
	}
	d.endPiece(p, s, prev, t, start, final, emit)
	return true
}

// scanDockerFast reads a line of exactly Docker's shape. raw is the "log"
// string between its quotes (escapes intact), ts the "time" string; both point
// into line. shaped=false: not that shape, ask encoding/json.
func scanDockerFast(line []byte) (raw []byte, s Stream, ts []byte, shaped bool) {
	const (
		open   = `{"log":"`
		stream = `","stream":"std`
		attrs  = `","attrs":`
		tm     = `","time":"`
		end    = `"}`
	)
	if !bytes.HasPrefix(line, []byte(open)) {
		return nil, 0, nil, false
	}
	rest := line[len(open):]
	e := stringEnd(rest)
	if e < 0 {
		return nil, 0, nil, false
	}
	raw, rest = rest[:e], rest[e:]
	if !bytes.HasPrefix(rest, []byte(stream)) || len(rest) < len(stream)+3 {
		return nil, 0, nil, false
	}
	rest = rest[len(stream):]
	switch string(rest[:3]) {
	case "out":
		s = Stdout
	case "err":
		s = Stderr
	default:
		return nil, 0, nil, false
	}
	rest = rest[3:]
	if bytes.HasPrefix(rest, []byte(attrs)) {
		// Docker's log-opts labels, env and tag: a flat object of strings,
		// ignored here as by the slow path.
		obj := rest[len(attrs):]
		n := skipStringObject(obj)
		if n < 0 || !bytes.HasPrefix(obj[n:], []byte(tm[1:])) {
			return nil, 0, nil, false
		}
		rest = obj[n+len(tm)-1:]
	} else {
		if !bytes.HasPrefix(rest, []byte(tm)) {
			return nil, 0, nil, false
		}
		rest = rest[len(tm):]
	}
	q := bytes.IndexByte(rest, '"')
	if q < 0 || string(rest[q:]) != end {
		return nil, 0, nil, false
	}
	return raw, s, rest[:q], true
}

// parseDockerSlow reads a Docker line of any JSON shape. raw is the "log"
// string between its quotes, escapes intact (decoded by the same code as the
// fast path, which keeps invalid UTF-8 as it is; encoding/json would not).
func parseDockerSlow(line []byte) (raw []byte, s Stream, ts []byte, ok bool) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return nil, 0, nil, false
	}
	lg := obj["log"]
	if len(lg) < 2 || lg[0] != '"' {
		return nil, 0, nil, false
	}
	var st, tm string
	if json.Unmarshal(obj["stream"], &st) != nil || json.Unmarshal(obj["time"], &tm) != nil {
		return nil, 0, nil, false
	}
	switch st {
	case "stdout":
		s = Stdout
	case "stderr":
		s = Stderr
	default:
		return nil, 0, nil, false
	}
	return lg[1 : len(lg)-1], s, []byte(tm), true
}

// skipStringObject returns the length of the JSON object at the start of b
// whose values are all strings ({"k":"v",...}), or -1 if there is none.
func skipStringObject(b []byte) int {
	if len(b) < 2 || b[0] != '{' {
		return -1
	}
	if b[1] == '}' {
		return 2
	}
	i := 1
	for {
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		e := stringEnd(b[i+1:])
		if e < 0 {
			return -1
		}
		i += 1 + e + 1 // the key and its quotes
		if i+1 >= len(b) || b[i] != ':' || b[i+1] != '"' {
			return -1
		}
		e = stringEnd(b[i+2:])
		if e < 0 {
			return -1
		}
		i += 2 + e + 1 // ':', the value and its quotes
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return i + 1
		default:
			return -1
		}
	}
}

// stringEnd returns the index of the '"' that closes the JSON string starting
// at b[0] (just after its opening quote), or -1. A quote closes the string
// when an even number of backslashes precedes it.
func stringEnd(b []byte) int {
	off := 0
	for {
		q := bytes.IndexByte(b[off:], '"')
		if q < 0 {
			return -1
		}
		q += off
		k := q - 1
		for k >= 0 && b[k] == '\\' {
			k--
		}
		if (q-1-k)%2 == 0 {
			return q
		}
		off = q + 1
	}
}

// rawEndsWithNewline reports whether the JSON string content raw ends with an
// escaped newline (\n or \u000a).
func rawEndsWithNewline(raw []byte) bool {
	n := len(raw)
	var esc int // index of the backslash that would start the escape
	switch {
	case n >= 2 && raw[n-1] == 'n':
		esc = n - 2
	case n >= 6 && (raw[n-1] == 'a' || raw[n-1] == 'A') && string(raw[n-5:n-1]) == "u000":
		esc = n - 6
	default:
		return false
	}
	k := esc
	for k >= 0 && raw[k] == '\\' {
		k--
	}
	return (esc-k)%2 == 1
}

// appendUnescaped appends the JSON string content s, unescaped, to dst. It
// never appends more than len(s) bytes. Bytes that are not escapes are copied
// as they are (invalid UTF-8 and control characters included: bytes in, bytes
// out). A lone surrogate becomes U+FFFD, as with encoding/json. ok=false on an
// invalid escape.
func appendUnescaped(dst, s []byte) ([]byte, bool) {
	for {
		i := bytes.IndexByte(s, '\\')
		if i < 0 {
			return append(dst, s...), true
		}
		dst = append(dst, s[:i]...)
		if i+1 >= len(s) {
			return dst, false
		}
		c := s[i+1]
		s = s[i+2:]
		switch c {
		case '"', '\\', '/':
			dst = append(dst, c)
		case 'n':
			dst = append(dst, '\n')
		case 't':
			dst = append(dst, '\t')
		case 'r':
			dst = append(dst, '\r')
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'u':
			r, ok := hex4(s)
			if !ok {
				return dst, false
			}
			s = s[4:]
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if len(s) >= 6 && s[0] == '\\' && s[1] == 'u' {
					r2, _ = hex4(s[2:])
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					s = s[6:]
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
}

// hex4 reads the four hex digits of a \u escape.
func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
