package collector

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// fingerprintBytes is how much of a file's head identifies it beside its inode:
// a reused inode with other content is a new file (as Vector's file-source does).
const fingerprintBytes = 256

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

// fingerprint hashes the first n bytes of f (n <= fingerprintBytes). It reads
// with ReadAt, so the file's read position is untouched.
func fingerprint(f io.ReaderAt, n int) (uint64, int, error) {
	buf := make([]byte, n)
	got, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, err
	}
	h := fnv.New64a()
	h.Write(buf[:got])
	return h.Sum64(), got, nil
}

// checkpoint is one file's persisted position: the offset up to which every
// record was acknowledged downstream.
type checkpoint struct {
	Path   string `json:"path"`
	ID     fileID `json:"id"`
	FPLen  int    `json:"fp_len"`
	FP     uint64 `json:"fp"`
	Offset int64  `json:"offset"`
}

// matches reports whether the open file f is the file this checkpoint names:
// same inode and the same first bytes.
func (c checkpoint) matches(f io.ReaderAt) bool {
	if c.FPLen == 0 {
		return true
	}
	fp, n, err := fingerprint(f, c.FPLen)
	return err == nil && n == c.FPLen && fp == c.FP
}

type stateFile struct {
	Version int          `json:"version"`
	Files   []checkpoint `json:"files"`
}

// checkpointStore persists checkpoints crash-safely: write a temporary file,
// fsync it, rename it over the old one, fsync the directory.
type checkpointStore struct {
	path string
}

func newCheckpointStore(dir string) (*checkpointStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint: state dir: %w", err)
	}
	return &checkpointStore{path: filepath.Join(dir, "checkpoints.json")}, nil
}

func (s *checkpointStore) load() ([]checkpoint, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", s.path, err)
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("checkpoint: parse %s: %w", s.path, err)
	}
	if st.Version != 1 {
		return nil, fmt.Errorf("checkpoint: %s: unknown version %d", s.path, st.Version)
	}
	return st.Files, nil
}

func (s *checkpointStore) save(files []checkpoint) error {
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	data, err := json.Marshal(stateFile{Version: 1, Files: files})
	if err != nil {
		return fmt.Errorf("checkpoint: encode: %w", err)
	}
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("checkpoint: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("checkpoint: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("checkpoint: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
