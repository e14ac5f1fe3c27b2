package output

import (
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
	if utf8.Valid(s) {
		return msgp.AppendStringFromBytes(b, s)
	}
	return appendValidUTF8(appendStrHeader(b, validUTF8Len(s)), s)
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
