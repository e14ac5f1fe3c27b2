package collector

import "bytes"

// The CRI log format, written by containerd and CRI-O:
//
//	<RFC 3339 time> <stdout|stderr> <tags> <message>
//
// tags is a ':'-separated list whose first element is P (partial: the runtime
// split a long line, more of it follows on a later line of the same stream) or
// F (full: this piece ends the line). A message may be empty, and the space
// before it may then be missing.

// decodeCRI decodes one line of a CRI file.
func (d *decoder) decodeCRI(line []byte, start int64, emit func(Record)) {
	t, s, partial, msg, ok := parseCRI(line)
	if !ok {
		d.malformed(line, emit)
		return
	}
	d.good(t)
	p := &d.pend[s]
	if !partial && !p.active {
		d.emitFull(s, t, msg, emit)
		return
	}
	prev := d.beginPiece(p, t, start, len(msg))
	p.buf = append(p.buf, msg...)
	d.endPiece(p, s, prev, t, start, !partial, emit)
}

// parseCRI splits a CRI line into its fields; msg points into line.
func parseCRI(line []byte) (t int64, s Stream, partial bool, msg []byte, ok bool) {
	i := bytes.IndexByte(line, ' ')
	if i < 0 {
		return 0, 0, false, nil, false
	}
	t, ok = parseTimestamp(line[:i])
	if !ok {
		return 0, 0, false, nil, false
	}
	rest := line[i+1:]
	// "stdout " or "stderr ": the stream and the space after it.
	if len(rest) < 7 || rest[6] != ' ' || string(rest[:3]) != "std" {
		return 0, 0, false, nil, false
	}
	switch string(rest[3:6]) {
	case "out":
		s = Stdout
	case "err":
		s = Stderr
	default:
		return 0, 0, false, nil, false
	}
	rest = rest[7:]
	// The tags run to the next space or the end of the line.
	tags := rest
	msg = rest[len(rest):]
	if j := bytes.IndexByte(rest, ' '); j >= 0 {
		tags, msg = rest[:j], rest[j+1:]
	}
	if len(tags) == 0 {
		return 0, 0, false, nil, false
	}
	partial = tags[0] == 'P' && (len(tags) == 1 || tags[1] == ':')
	return t, s, partial, msg, true
}
