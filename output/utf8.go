package output

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"
)

// Both outputs send valid UTF-8: msgpack's str type is UTF-8 by
// specification (Fluentd's JSON-based outputs fail on anything else) and
// JSON must be. A byte that is not part of a valid UTF-8 sequence becomes
// U+FFFD, one for each such byte, as encoding/json does.

// appendValidUTF8 appends s to dst with each invalid byte replaced by U+FFFD.
func appendValidUTF8(dst, s []byte) []byte {
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, s[:size]...)
		}
		s = s[size:]
	}
	return dst
}

// validUTF8Len is the length of s once its invalid bytes are replaced.
func validUTF8Len(s []byte) int {
	n := len(s)
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		if r == utf8.RuneError && size == 1 {
			n += utf8.RuneLen(utf8.RuneError) - 1
		}
		s = s[size:]
	}
	return n
}

// appendStr appends s as a msgpack str holding valid UTF-8. The common case,
// valid input, costs one validity scan on top of the copy.
func appendStr(b, s []byte) []byte {
	if validUTF8(s) {
		return msgp.AppendStringFromBytes(b, s)
	}
	return appendValidUTF8(appendStrHeader(b, validUTF8Len(s)), s)
}

// validUTF8 is utf8.Valid with a faster start for ASCII, which most log
// lines are: 32 bytes a step, then utf8.Valid from the first block that is
// not all ASCII.
func validUTF8(s []byte) bool {
	const hi = 0x8080808080808080
	for len(s) >= 32 {
		w := binary.LittleEndian.Uint64(s[0:8]) | binary.LittleEndian.Uint64(s[8:16]) |
			binary.LittleEndian.Uint64(s[16:24]) | binary.LittleEndian.Uint64(s[24:32])
		if w&hi != 0 {
			break
		}
		s = s[32:]
	}
	return utf8.Valid(s)
}

// appendStrHeader appends the header of a msgpack str of n bytes.
func appendStrHeader(b []byte, n int) []byte {
	switch {
	case n < 32:
		return append(b, 0xa0|byte(n))
	case n <= 0xff:
		return append(b, 0xd9, byte(n))
	case n <= 0xffff:
		return append(b, 0xda, byte(n>>8), byte(n))
	default:
		return append(b, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// validString returns s, or a copy with its invalid bytes replaced.
func validString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return string(appendValidUTF8(nil, []byte(s)))
}
