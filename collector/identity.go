package collector

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// A file's identity is one rule, used everywhere a file found on disk is
// compared with a file the collector knows (the checkpoint's entries, a
// rename, a compressed rotation, a truncation):
//
//   - the container log directory (pod and container) it lives in: a file
//     under one pod's directory is never taken for one under another's;
//   - its device and inode, for a plain file (a compressed rotation is a new
//     inode holding the same content);
//   - a fingerprint of its first line, up to fingerprintMax bytes: a reused
//     inode with other content is another file (as Vector's file source
//     does), and the first line carries the runtime's timestamp, to the
//     nanosecond, so two files seldom share it.

// fingerprintMax bounds the first line that identifies a file. It covers a
// runtime's longest line (16 KiB of message plus its header), so a Docker
// json-file line, whose timestamp comes last, is fingerprinted whole.
const fingerprintMax = 16<<10 + 1024

// fileID is a file's identity on the node: device and inode.
type fileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

func (id fileID) String() string { return fmt.Sprintf("%d:%d", id.Dev, id.Ino) }

func statID(fi os.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{Dev: uint64(st.Dev), Ino: st.Ino}, true
}

// fingerprint is the hash (FNV-1a, 64 bits) of a file's first Len bytes: its
// first line with the '\n', or fingerprintMax bytes, or all of a file that
// has neither yet (then it grows with the file).
type fingerprint struct {
	Len int
	Sum uint64
}

// complete says whether the fingerprint covers a whole first line (or the
// bound): it will not grow any more.
func (fp fingerprint) complete(head []byte) bool {
	return fp.Len == fingerprintMax || (fp.Len > 0 && len(head) >= fp.Len && head[fp.Len-1] == '\n')
}

// fingerprintOf fingerprints head, the first bytes of a file (all of it if
// shorter than fingerprintMax).
func fingerprintOf(head []byte) fingerprint {
	n := len(head)
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		n = i + 1
	}
	n = min(n, fingerprintMax)
	return fingerprint{Len: n, Sum: hash64(head[:n])}
}

// hash64 is FNV-1a (hash/fnv's New64a, byte for byte), without its
// allocation: a reader hashes a line before every read after a pause.
func hash64(b []byte) uint64 {
	const offset64, prime64 = 14695981039346656037, 1099511628211
	h := uint64(offset64)
	for _, c := range b {
		h ^= uint64(c)
		h *= prime64
	}
	return h
}

// readHead reads up to n bytes from the start of r (ReadAt: a file's read
// position is untouched).
func readHead(r io.ReaderAt, n int) ([]byte, error) {
	buf := make([]byte, n)
	got, err := r.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:got], nil
}

// matchesHead reports whether head (a file's first bytes, at least Len of
// them if the file has them) has this fingerprint.
func (fp fingerprint) matchesHead(head []byte) bool {
	return len(head) >= fp.Len && hash64(head[:fp.Len]) == fp.Sum
}

// matches reads the first Len bytes of r into buf (at least Len bytes
// long) and compares them.
func (fp fingerprint) matches(r io.ReaderAt, buf []byte) bool {
	if fp.Len == 0 {
		return true
	}
	n, err := r.ReadAt(buf[:fp.Len], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	return fp.matchesHead(buf[:n])
}

// candidate is a file found in a container log directory, to be identified.
type candidate struct {
	dir  string
	path string
	real string // resolved path, for a plain file
	id   fileID
	size int64 // of the file on disk (compressed for a .gz)
	gz   bool
	// load reads the first n bytes of the content (decompressed for a
	// .gz); head() calls it only when a rule needs them.
	load    func(n int) ([]byte, error)
	headBuf []byte
	loaded  int // bytes asked of load so far
}

// head returns the candidate's first n bytes (fewer if it has fewer, or
// cannot be read).
func (c *candidate) head(n int) []byte {
	if n > c.loaded {
		c.loaded = n
		c.headBuf, _ = c.load(n)
	}
	return c.headBuf[:min(n, len(c.headBuf))]
}

// identifies is the identity rule: whether the candidate is the file e names.
func (e *file) identifies(c *candidate) bool {
	if e.dir != c.dir {
		return false
	}
	if !c.gz {
		// While a reader holds the file open its inode cannot be reused:
		// the inode says it all (the reader checks the first line itself).
		return !e.gz && e.id == c.id && (e.reader != nil || e.fp.matchesHead(c.head(e.fp.Len)))
	}
	if e.gz && e.id == c.id && e.gzSize == c.size {
		return true // the same compressed file seen before (it never changes)
	}
	// The content of a plain file, compressed: only a fingerprint that says
	// something (an empty one would match every file) identifies it.
	return e.fp.Len > 0 && e.fp.matchesHead(c.head(e.fp.Len))
}
