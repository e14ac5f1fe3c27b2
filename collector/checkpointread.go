package collector

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// SavedCheckpoint is one entry of the checkpoint file, as `logagent
// checkpoints` prints it.
type SavedCheckpoint struct {
	Path                      string
	Namespace, Pod, Container string // from the path, "" if it says none
	Dev, Inode                uint64
	// Offset is how far every record of the file was acknowledged.
	Offset int64
	// FingerprintLen is how many of the file's first bytes identify it.
	FingerprintLen int
	// Done: read to its end and acknowledged, nothing left to read.
	Done bool
}

// SavedCheckpoints is the checkpoint file of a state directory.
type SavedCheckpoints struct {
	File    string
	Version int
	// SavedAt is the file's modification time: when the agent last saved
	// a change.
	SavedAt time.Time
	Files   []SavedCheckpoint
}

// ReadCheckpoints reads the checkpoint file of stateDir, read-only: it takes
// no lock and changes nothing, so it is safe while an agent runs on the
// directory (which replaces the file whole, by rename: a reader sees one
// save or the next). An unreadable file is an error here; the agent
// itself would set it aside and read everything again.
func ReadCheckpoints(stateDir string) (SavedCheckpoints, error) {
	path := filepath.Join(stateDir, checkpointFile)
	out := SavedCheckpoints{File: path}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return out, fmt.Errorf("%s: no checkpoint file (no agent has run with this state directory, or it is another one)", path)
	}
	if err != nil {
		return out, fmt.Errorf("checkpoints: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil { // the save this content is
		out.SavedAt = fi.ModTime()
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return out, fmt.Errorf("checkpoints: %w", err)
	}
	files, err := decodeState(data)
	if err != nil {
		return out, fmt.Errorf("checkpoints: %s: %w", path, err)
	}
	out.Version = 1
	for _, cp := range files {
		sc := SavedCheckpoint{Path: cp.Path, Dev: cp.ID.Dev, Inode: cp.ID.Ino, Offset: cp.Offset, FingerprintLen: cp.FPLen, Done: cp.Done}
		if pd, err := parseContainerDir(filepath.Dir(cp.Path)); err == nil {
			sc.Namespace, sc.Pod, sc.Container = pd.Namespace, pd.Pod, pd.Container
		}
		out.Files = append(out.Files, sc)
	}
	return out, nil
}
