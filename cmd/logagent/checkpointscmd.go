package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/logagent/logagent/collector"
)

// checkpointsCmd prints the checkpoint file of a state directory: for each
// file, how far it is acknowledged, against its size on disk now. It only
// reads: safe while an agent runs on the directory.
func checkpointsCmd(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs, ns, pod := newFilesFlagSet("checkpoints")
	dir := fs.String("state-dir", "", "the agent's state directory (default: the state_dir setting of the agent in this container, else as $LOGAGENT_STATE_DIR or $LOGAGENT_CONFIG say)")
	if code, done := parseSubcommand(fs, "checkpoints", args, stdout, stderr); done {
		return code
	}
	if *dir == "" {
		*dir = defaultConfig().Collector.StateDir
		if cfg := agentConfig(getenv); cfg != nil && cfg.Collector.StateDir != "" {
			*dir = cfg.Collector.StateDir
		}
	}
	saved, err := collector.ReadCheckpoints(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "logagent checkpoints: %v\n", err)
		return 1
	}
	now := time.Now()
	var files []collector.SavedCheckpoint
	for _, f := range saved.Files {
		if (*ns == "" || f.Namespace == *ns) && strings.HasPrefix(f.Pod, *pod) {
			files = append(files, f)
		}
	}
	fmt.Fprintf(stdout, "%s: %d files, saved %s\n", saved.File, len(files), ago(saved.SavedAt, now))
	if len(files) == 0 {
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tPOD\tCONTAINER\tACKED\tON DISK\tBEHIND\tDONE\tINODE\tPATH")
	for _, f := range files {
		disk, behind := onDisk(f)
		done := "no"
		if f.Done {
			done = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d:%d\t%s\n", dash(f.Namespace), dash(f.Pod), dash(f.Container),
			f.Offset, disk, behind, done, f.Dev, f.Inode, f.Path)
	}
	tw.Flush()
	return 0
}

// onDisk is the size of the checkpoint's file now, and what is beyond its
// offset, if the file is still at that path and is the same file; else why not.
func onDisk(f collector.SavedCheckpoint) (size, behind string) {
	fi, err := os.Stat(f.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if _, err := os.Stat(f.Path + ".gz"); err == nil && !strings.HasSuffix(f.Path, ".gz") {
			return "compressed", "-"
		}
		return "gone", "-"
	case err != nil:
		return "unreadable", "-"
	}
	if id, ok := fileIdentity(fi); ok && (id[0] != f.Dev || id[1] != f.Inode) && !strings.HasSuffix(f.Path, ".gz") {
		return fmt.Sprintf("%d (another file)", fi.Size()), "-"
	}
	if strings.HasSuffix(f.Path, ".gz") {
		return fmt.Sprintf("%d (compressed)", fi.Size()), "-"
	}
	return fmt.Sprint(fi.Size()), humanBytes(max(fi.Size()-f.Offset, 0))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fileIdentity is a file's device and inode.
func fileIdentity(fi os.FileInfo) ([2]uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return [2]uint64{}, false
	}
	return [2]uint64{uint64(st.Dev), st.Ino}, true
}
