package output

import (
	"errors"
	"fmt"
	"io"

	"github.com/tinylib/msgp/msgp"
)

// Limits on everything read from a server (acks and the handshake). A Forward
// server sends small messages: a chunk id of 24 characters, a nonce and salt
// of 16 bytes, a host name, a short reason. Without limits, a str32 or bin32
// header claiming 4 GiB would make the reader allocate it.
const (
	maxServerString   = 4096 // bytes of a str or bin
	maxServerElements = 64   // entries of a map or array
	maxServerDepth    = 8    // nesting of maps and arrays
	serverReadBuffer  = 2 * maxServerString
)

// errServerLimit is a server message beyond the limits above.
var errServerLimit = errors.New("server message exceeds the agent's limits")

// newServerReader reads what a server sends, within the limits above.
func newServerReader(r io.Reader) *msgp.Reader {
	mr := msgp.NewReaderSize(r, serverReadBuffer)
	mr.SetMaxStringLength(maxServerString)
	mr.SetMaxElements(maxServerString) // also bounds bin and ext payloads
	mr.SetMaxRecursionDepth(maxServerDepth)
	return mr
}

// readAck reads one ack, {"ack": chunk id}, and returns the id (in scratch
// when it fits). A map without "ack" returns a nil id.
func readAck(r *msgp.Reader, scratch []byte) ([]byte, error) {
	n, err := r.ReadMapHeader()
	if err != nil {
		return nil, err
	}
	if n > maxServerElements {
		return nil, fmt.Errorf("ack: map of %d entries: %w", n, errServerLimit)
	}
	var id []byte
	for range n {
		key, err := r.ReadMapKeyPtr()
		if err != nil {
			return nil, fmt.Errorf("ack key: %w", limitErr(err))
		}
		if string(key) == "ack" {
			if id, err = r.ReadStringAsBytes(scratch); err != nil {
				return nil, fmt.Errorf("ack id: %w", limitErr(err))
			}
			continue
		}
		if err := skipValue(r, 0); err != nil {
			return nil, fmt.Errorf("ack: %w", err)
		}
	}
	return id, nil
}

// skipValue skips one value of any type within the limits: lengths are
// checked before anything is read past them.
func skipValue(r *msgp.Reader, depth int) error {
	if depth >= maxServerDepth {
		return fmt.Errorf("nested deeper than %d: %w", maxServerDepth, errServerLimit)
	}
	t, err := r.NextType()
	if err != nil {
		return err
	}
	switch t {
	case msgp.StrType:
		_, err = r.ReadStringAsBytes(nil)
	case msgp.BinType:
		_, err = r.ReadBytes(nil)
	case msgp.ExtensionType:
		_, _, err = r.ReadExtensionRaw()
	case msgp.MapType, msgp.ArrayType:
		var n uint32
		if t == msgp.MapType {
			n, err = r.ReadMapHeader()
			n *= 2
		} else {
			n, err = r.ReadArrayHeader()
		}
		if err != nil {
			return err
		}
		if n > 2*maxServerElements {
			return fmt.Errorf("%s of %d elements: %w", t, n, errServerLimit)
		}
		for range n {
			if err := skipValue(r, depth+1); err != nil {
				return err
			}
		}
		return nil
	default: // nil, bool, numbers, time: a few bytes each
		err = r.Skip()
	}
	return limitErr(err)
}

// limitErr turns msgp's limit errors into errServerLimit, so that they are
// classified as protocol errors.
func limitErr(err error) error {
	if errors.Is(err, msgp.ErrLimitExceeded) || errors.Is(err, msgp.ErrRecursion) {
		return fmt.Errorf("%w (%w)", errServerLimit, err)
	}
	return err
}
