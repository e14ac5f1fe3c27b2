package collector

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// checkpoint is one file's persisted position: the offset up to which every
// record was acknowledged downstream, and what identifies the file.
type checkpoint struct {
	Path   string `json:"path"`
	ID     fileID `json:"id"`
	FPLen  int    `json:"fp_len"`
	FP     uint64 `json:"fp"`
	Offset int64  `json:"offset"`
	// Done: the file was rotated, read to its end and every record of it
	// acknowledged (or it was history from before the first start): nothing
	// is left to read, and a compressed form of it is not decompressed.
	Done bool `json:"done,omitempty"`
}

type stateFile struct {
	Version int          `json:"version"`
	Files   []checkpoint `json:"files"`
}

// checkpointFile is the name of the checkpoint file in the state directory.
const checkpointFile = "checkpoints.json"

// checkpointStore persists checkpoints crash-safely: write a unique
// temporary file, fsync it, rename it over the old one, fsync the directory.
// The state directory is the agent's alone: it holds a lock (see stateLock).
type checkpointStore struct {
	dir  string
	path string
}

func newCheckpointStore(dir string) *checkpointStore {
	return &checkpointStore{dir: dir, path: filepath.Join(dir, checkpointFile)}
}

// errNoCheckpoints: there is no checkpoint file, the agent's first start on
// this node (or with this state directory).
var errNoCheckpoints = errors.New("no checkpoint file")

// load reads the checkpoints. A file that cannot be parsed is moved aside
// (renamed with a timestamp, for a human to look at) and reported as an
// error: the caller then reads everything on disk from the head.
func (s *checkpointStore) load(now time.Time) ([]checkpoint, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoCheckpoints
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", s.path, err)
	}
	files, err := decodeState(data)
	if err == nil {
		return files, nil
	}
	aside := s.path + ".corrupt-" + now.UTC().Format("20060102T150405.000000000Z")
	if rerr := os.Rename(s.path, aside); rerr != nil {
		return nil, fmt.Errorf("checkpoint: %s: %v (and could not keep it aside: %w)", s.path, err, rerr)
	}
	return nil, fmt.Errorf("checkpoint: %s: %v; kept aside as %s", s.path, err, aside)
}

// decodeState parses a checkpoint file's content (of the one version there is).
func decodeState(data []byte) ([]checkpoint, error) {
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, err
	}
	if st.Version != 1 {
		return nil, fmt.Errorf("unknown version %d", st.Version)
	}
	return st.Files, nil
}

func (s *checkpointStore) save(files []checkpoint) error {
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	data, err := encodeState(files)
	if err != nil {
		return fmt.Errorf("checkpoint: encode: %w", err)
	}
	// A unique temporary name (mode 0600): nothing else writes it, and a
	// crash leaves at most a stray temporary file, removed at the next start.
	f, err := os.CreateTemp(s.dir, checkpointFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	tmp := f.Name()
	fail := func(op string, err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: %s %s: %w", op, tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail("write", err)
	}
	if err := f.Sync(); err != nil {
		return fail("fsync", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: %w", err)
	}
	if d, err := os.Open(s.dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// encodeState is json.Marshal(stateFile{Version: 1, Files: files}), byte for
// byte, without reflection: a node's thousands of files are saved every
// checkpoint_interval while they are written.
func encodeState(files []checkpoint) ([]byte, error) {
	b := make([]byte, 0, 32+len(files)*160)
	b = append(b, `{"version":1,"files":`...)
	if files == nil {
		return append(b, "null}"...), nil
	}
	b = append(b, '[')
	for i, cp := range files {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"path":`...)
		if plainJSON(cp.Path) {
			b = append(b, '"')
			b = append(b, cp.Path...)
			b = append(b, '"')
		} else {
			q, err := json.Marshal(cp.Path)
			if err != nil {
				return nil, err
			}
			b = append(b, q...)
		}
		b = append(b, `,"id":{"dev":`...)
		b = strconv.AppendUint(b, cp.ID.Dev, 10)
		b = append(b, `,"ino":`...)
		b = strconv.AppendUint(b, cp.ID.Ino, 10)
		b = append(b, `},"fp_len":`...)
		b = strconv.AppendInt(b, int64(cp.FPLen), 10)
		b = append(b, `,"fp":`...)
		b = strconv.AppendUint(b, cp.FP, 10)
		b = append(b, `,"offset":`...)
		b = strconv.AppendInt(b, cp.Offset, 10)
		if cp.Done {
			b = append(b, `,"done":true`...)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...), nil
}

// plainJSON reports whether s is written as it is in a JSON string by
// encoding/json: printable ASCII that needs no escape (it escapes <, > and &).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// removeStrayTemps removes temporary files a crash left behind.
func (s *checkpointStore) removeStrayTemps() {
	stray, _ := filepath.Glob(filepath.Join(s.dir, checkpointFile+".tmp*"))
	for _, p := range stray {
		os.Remove(p)
	}
}
