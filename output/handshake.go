package output

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/tinylib/msgp/msgp"
)

// authError is a handshake the server refused (or whose answer did not prove
// it knows the shared key): a configuration problem, not a network one.
type authError struct{ reason string }

func (e *authError) Error() string { return "authentication failed: " + e.reason }

// handshakeError is a malformed or unexpected handshake message.
type handshakeError struct{ msg string }

func (e *handshakeError) Error() string { return "handshake: " + e.msg }

// sharedKeyHandshake runs the client side of the Forward protocol v1 handshake
// (Fluentd's <security>, Fluent Bit's Shared_Key):
//
//	server: ["HELO", {"nonce": n, "auth": salt or "", "keepalive": bool}]
//	client: ["PING", self_hostname, shared_key_salt,
//	         sha512_hex(shared_key_salt + self_hostname + nonce + shared_key),
//	         username or "", sha512_hex(auth_salt + username + password) or ""]
//	server: ["PONG", auth_result, reason, server_hostname,
//	         sha512_hex(shared_key_salt + server_hostname + nonce + shared_key)]
//
// r must be the reader the connection keeps using afterwards, so that nothing
// it buffered is lost.
func sharedKeyHandshake(r *msgp.Reader, w io.Writer, selfHost, sharedKey, username, password string) error {
	nonce, auth, err := readHelo(r)
	if err != nil {
		return err
	}
	var saltBytes [16]byte
	if _, err := rand.Read(saltBytes[:]); err != nil {
		return fmt.Errorf("handshake: salt: %w", err)
	}
	salt := hex.EncodeToString(saltBytes[:])

	ping := msgp.AppendArrayHeader(nil, 6)
	ping = msgp.AppendString(ping, "PING")
	ping = msgp.AppendString(ping, selfHost)
	ping = msgp.AppendString(ping, salt)
	ping = msgp.AppendString(ping, sha512Hex(salt, selfHost, string(nonce), sharedKey))
	if len(auth) > 0 {
		ping = msgp.AppendString(ping, username)
		ping = msgp.AppendString(ping, sha512Hex(string(auth), username, password))
	} else {
		ping = msgp.AppendString(ping, "")
		ping = msgp.AppendString(ping, "")
	}
	if _, err := w.Write(ping); err != nil {
		return fmt.Errorf("handshake: send PING: %w", err)
	}

	n, err := r.ReadArrayHeader()
	if err != nil {
		return fmt.Errorf("handshake: read PONG: %w", err)
	}
	if n != 5 {
		return &handshakeError{fmt.Sprintf("PONG has %d elements, want 5", n)}
	}
	kind, err := r.ReadString()
	if err != nil || kind != "PONG" {
		return &handshakeError{fmt.Sprintf("expected PONG, got %q (%v)", kind, err)}
	}
	ok, err := r.ReadBool()
	if err != nil {
		return &handshakeError{fmt.Sprintf("PONG auth_result: %v", err)}
	}
	reason, err := readStrOrBin(r)
	if err != nil {
		return &handshakeError{fmt.Sprintf("PONG reason: %v", err)}
	}
	serverHost, err := readStrOrBin(r)
	if err != nil {
		return &handshakeError{fmt.Sprintf("PONG hostname: %v", err)}
	}
	digest, err := readStrOrBin(r)
	if err != nil {
		return &handshakeError{fmt.Sprintf("PONG digest: %v", err)}
	}
	if !ok {
		return &authError{fmt.Sprintf("server refused: %s", reason)}
	}
	if string(serverHost) == selfHost {
		// As Fluentd's out_forward: the same name on both ends means a loop
		// or a copy-pasted config.
		return &authError{fmt.Sprintf("server hostname %q equals self_hostname: invalid configuration", serverHost)}
	}
	if want := sha512Hex(salt, string(serverHost), string(nonce), sharedKey); string(digest) != want {
		return &authError{"server's PONG digest does not match our shared_key (shared key mismatch)"}
	}
	return nil
}

func readHelo(r *msgp.Reader) (nonce, auth []byte, err error) {
	n, err := r.ReadArrayHeader()
	if err != nil {
		return nil, nil, fmt.Errorf("handshake: no HELO from the server (shared_key is set: does the server have <security>?): %w", err)
	}
	if n != 2 {
		return nil, nil, &handshakeError{fmt.Sprintf("HELO has %d elements, want 2 (is shared_key set on a server without one?)", n)}
	}
	kind, err := r.ReadString()
	if err != nil || kind != "HELO" {
		return nil, nil, &handshakeError{fmt.Sprintf("expected HELO, got %q (%v)", kind, err)}
	}
	if t, _ := r.NextType(); t == msgp.NilType {
		return nil, nil, r.ReadNil()
	}
	sz, err := r.ReadMapHeader()
	if err != nil {
		return nil, nil, &handshakeError{fmt.Sprintf("HELO options: %v", err)}
	}
	if sz > maxServerElements {
		return nil, nil, &handshakeError{fmt.Sprintf("HELO options: %d entries: %v", sz, errServerLimit)}
	}
	for range sz {
		key, err := r.ReadString()
		if err != nil {
			return nil, nil, &handshakeError{fmt.Sprintf("HELO option key: %v", err)}
		}
		switch key {
		case "nonce":
			nonce, err = readStrOrBin(r)
		case "auth":
			auth, err = readStrOrBin(r)
		default:
			err = skipValue(r, 1)
		}
		if err != nil {
			return nil, nil, &handshakeError{fmt.Sprintf("HELO option %s: %v", key, err)}
		}
	}
	return nonce, auth, nil
}

// readStrOrBin reads a str or bin: Fluentd (Ruby) sends its random nonce and
// salt as binary strings, which msgpack-ruby may pack as either.
func readStrOrBin(r *msgp.Reader) ([]byte, error) {
	t, err := r.NextType()
	if err != nil {
		return nil, err
	}
	var b []byte
	switch t {
	case msgp.BinType:
		b, err = r.ReadBytes(nil)
	case msgp.NilType:
		err = r.ReadNil()
	default:
		b, err = r.ReadStringAsBytes(nil)
	}
	return b, limitErr(err)
}

func sha512Hex(parts ...string) string {
	h := sha512.New()
	for _, p := range parts {
		io.WriteString(h, p)
	}
	return hex.EncodeToString(h.Sum(nil))
}
