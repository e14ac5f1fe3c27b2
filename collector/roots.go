package collector

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// The agent runs with DAC_READ_SEARCH: it may read any file of the node. A
// link in a container's log directory (1.log, or a rotated name) pointing
// elsewhere, at a ServiceAccount token say, must not make it ship that file.
// Every file and directory is resolved and must lie under a log root.

// logRoots are the resolved folders the agent may read logs from.
type logRoots []string

// defaultLogRoots are the kubelet's pod log folder beside the glob's folder
// (/var/log/pods for /var/log/containers/*.log) and Docker's container
// folder, where dockershim-era links point.
func defaultLogRoots(glob string) []string {
	return []string{
		filepath.Join(filepath.Dir(filepath.Dir(glob)), "pods"),
		"/var/lib/docker/containers",
	}
}

// resolveRoots cleans the roots and resolves their links, so that a root
// that is itself a link (/var/log -> /data/log) still contains what it holds.
func resolveRoots(roots []string) logRoots {
	var out logRoots
	for _, r := range roots {
		r = filepath.Clean(r)
		out = append(out, r)
		if real, err := filepath.EvalSymlinks(r); err == nil && real != r {
			out = append(out, real)
		}
	}
	return out
}

// contains reports whether path (absolute, resolved) is a root or under one.
func (rs logRoots) contains(path string) bool {
	for _, r := range rs {
		if path == r || strings.HasPrefix(path, r+string(filepath.Separator)) || r == "/" {
			return true
		}
	}
	return false
}

// Why a file or directory cannot be read: the reason label of
// logagent_collector_unreadable_total.
const (
	reasonPermission  = "permission"
	reasonOutsideRoot = "outside_roots"
	reasonNotRegular  = "not_regular"
	reasonError       = "error"
)

// readError is a file the collector will not read, and why.
type readError struct {
	reason string
	err    error
}

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// classify gives an error from opening or reading a path its reason.
func classify(err error) *readError {
	var re *readError
	if errors.As(err, &re) {
		return re
	}
	if errors.Is(err, os.ErrPermission) {
		return &readError{reasonPermission, err}
	}
	return &readError{reasonError, err}
}

// openLog opens a log file for reading if it is a regular file under the
// roots. The check is made on the opened descriptor (/proc/self/fd), so a
// link swapped between the check and the open cannot redirect it. real is
// the file's resolved path.
func (rs logRoots) openLog(path string) (fh *os.File, fi os.FileInfo, real string, err error) {
	// Not opened if not regular: opening a FIFO would block.
	fi, err = os.Stat(path)
	if err != nil {
		return nil, nil, "", err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, "", &readError{reasonNotRegular, fmt.Errorf("%s: not a regular file (%s)", path, fi.Mode().Type())}
	}
	fh, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, "", err
	}
	real, err = os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fh.Fd()))
	if err != nil {
		real, err = filepath.EvalSymlinks(path) // no /proc: check the name instead
	}
	if err != nil {
		fh.Close()
		return nil, nil, "", err
	}
	if !rs.contains(real) {
		fh.Close()
		return nil, nil, "", &readError{reasonOutsideRoot, fmt.Errorf("%s resolves to %s, outside the log roots %v", path, real, []string(rs))}
	}
	fi, err = fh.Stat()
	if err != nil {
		fh.Close()
		return nil, nil, "", err
	}
	if !fi.Mode().IsRegular() {
		fh.Close()
		return nil, nil, "", &readError{reasonNotRegular, fmt.Errorf("%s: not a regular file", path)}
	}
	return fh, fi, real, nil
}

// checkDir reports an error if dir does not resolve to a directory under the roots.
func (rs logRoots) checkDir(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	if !rs.contains(real) {
		return &readError{reasonOutsideRoot, fmt.Errorf("%s resolves to %s, outside the log roots %v", dir, real, []string(rs))}
	}
	return nil
}
