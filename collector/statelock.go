package collector

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// stateLock keeps the state directory to one agent: two agents on one node
// sharing it (a Helm and a kustomize install, say) would overwrite each
// other's checkpoints. It is an flock on state_dir/lock, held for the life
// of the collector and released by the kernel if the process dies; the file
// names the holder's pid for the error the second agent prints.
type stateLock struct {
	f *os.File
}

const lockFile = "lock"

// lockStateDir creates the state directory (mode 0700: checkpoints name every
// log file of the node) and locks it. A directory that exists but cannot be
// written (a read-only mount) is not an error here: logs are still read and
// shipped, the checkpoint saves fail and say so (Ready); warn says why it is
// not locked.
func lockStateDir(dir string) (l *stateLock, warn, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("state_dir %s: %w", dir, err)
	}
	// MkdirAll leaves an existing directory's mode alone (a hostPath the
	// kubelet made 0755): tighten it.
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			warn = fmt.Errorf("state_dir %s: %w", dir, err)
		}
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return &stateLock{}, fmt.Errorf("state_dir %s cannot be written, not locked: %w", dir, err), nil
		}
		return nil, nil, fmt.Errorf("state_dir %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another process"
		if data, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(data))); perr == nil {
				holder = fmt.Sprintf("process %d", pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("state_dir %s is in use by %s (another logagent on this node?): each agent needs its own state directory", dir, holder)
		}
		return nil, nil, fmt.Errorf("state_dir %s: lock %s: %w", dir, path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &stateLock{f: f}, warn, nil
}

// unlock releases the lock. The file stays: removing it would race with a
// next agent that already opened it.
func (l *stateLock) unlock() {
	if l == nil || l.f == nil {
		return
	}
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}
