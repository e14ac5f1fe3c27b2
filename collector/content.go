package collector

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"syscall"
)

// content is what the read loop reads: a plain log file, which may still grow,
// be truncated, renamed or deleted, or the decompressed stream of a
// compressed rotation, which is fixed. Offsets are those of the content as
// the runtime wrote it (decompressed), so a checkpoint means the same in both.
type content interface {
	// readAt reads len(p) bytes from off (fewer, with io.EOF, at the end).
	readAt(p []byte, off int64) (int, error)
	// stat says how far the content goes now.
	stat() (contentState, error)
	// retain tells the content that the next read starts at off, which is
	// not before the start of the last read: a stream keeps those bytes
	// instead of decompressing everything again.
	retain(off int64)
	// held is the memory the content keeps for retain.
	held() int64
	close() error
}

type contentState struct {
	size    int64 // what there is to read: math.MaxInt64 for a stream not read to its end
	final   bool  // it will not grow: a compressed file read to its end
	deleted bool  // the file has no name any more
}

// plainContent is an open log file.
type plainContent struct{ fh *os.File }

func (p plainContent) readAt(b []byte, off int64) (int, error) { return p.fh.ReadAt(b, off) }
func (p plainContent) retain(int64)                            {}
func (p plainContent) held() int64                             { return 0 }
func (p plainContent) close() error                            { return p.fh.Close() }

func (p plainContent) stat() (contentState, error) {
	fi, err := p.fh.Stat()
	if err != nil {
		return contentState{}, err
	}
	st := contentState{size: fi.Size()}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok && s.Nlink == 0 {
		st.deleted = true
	}
	return st, nil
}

// gzContent is a compressed rotation read as a stream. Going back before what
// it retained means decompressing from the start again.
type gzContent struct {
	fh  *os.File
	zr  *gzip.Reader
	pos int64 // offset of the stream's next byte
	eof bool

	last    []byte // the bytes the last read returned (the caller's buffer)
	lastOff int64
	kept    []byte // bytes from keptOff to pos, copied by retain
	keptOff int64
}

func newGzContent(fh *os.File) (*gzContent, error) {
	g := &gzContent{fh: fh}
	if err := g.reopen(); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *gzContent) reopen() error {
	if _, err := g.fh.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if g.zr == nil {
		zr, err := gzip.NewReader(g.fh)
		if err != nil {
			return err
		}
		g.zr = zr
	} else if err := g.zr.Reset(g.fh); err != nil {
		return err
	}
	g.pos, g.eof, g.last, g.kept = 0, false, nil, nil
	return nil
}

func (g *gzContent) readAt(b []byte, off int64) (int, error) {
	n := 0
	if g.kept != nil && off >= g.keptOff && off < g.pos && off-g.keptOff <= int64(len(g.kept)) {
		n = copy(b, g.kept[off-g.keptOff:])
		off += int64(n)
		if n == len(b) {
			g.last = nil // what is kept still covers the rest
			return n, nil
		}
	}
	if off != g.pos {
		if off < g.pos {
			if err := g.reopen(); err != nil {
				return 0, err
			}
		}
		if _, err := io.CopyN(io.Discard, g.zr, off-g.pos); err != nil {
			if errors.Is(err, io.EOF) {
				g.eof = true
				return n, io.EOF
			}
			return n, fmt.Errorf("decompress: %w", err)
		}
		g.pos = off
	}
	m, err := io.ReadFull(g.zr, b[n:])
	g.pos += int64(m)
	n += m
	g.last, g.lastOff, g.kept = b[:n], g.pos-int64(n), nil
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		g.eof = true
		return n, io.EOF
	}
	if err != nil {
		return n, fmt.Errorf("decompress: %w", err)
	}
	return n, nil
}

func (g *gzContent) stat() (contentState, error) {
	if g.eof {
		return contentState{size: g.pos, final: true}, nil
	}
	return contentState{size: math.MaxInt64}, nil
}

func (g *gzContent) retain(off int64) {
	switch {
	case off >= g.pos:
		g.kept = nil
	case g.last != nil && off >= g.lastOff:
		g.kept, g.keptOff = bytes.Clone(g.last[off-g.lastOff:]), off
	case g.kept != nil && off >= g.keptOff:
		// Still within what is kept.
	default:
		g.kept = nil // read again from the start
	}
	g.last = nil
}

func (g *gzContent) held() int64 { return int64(cap(g.kept)) }

func (g *gzContent) close() error { return g.fh.Close() }

// gunzipHead returns the first n bytes of a compressed file's content.
func gunzipHead(fh *os.File, n int) ([]byte, error) {
	zr, err := gzip.NewReader(io.NewSectionReader(fh, 0, math.MaxInt64))
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	got, err := io.ReadFull(zr, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:got], nil
}
