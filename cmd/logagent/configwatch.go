package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// How the configuration file is watched.
const (
	// configDebounce is how quiet the file's folder must stay after a change
	// before the file is read: an editor's save, or the kubelet's update of a
	// ConfigMap volume, is several steps.
	configDebounce = time.Second
	// configPoll reads the file this often as well, for what inotify does
	// not report: a node out of inotify instances, a folder replaced whole,
	// a file system without inotify.
	configPoll = 10 * time.Second
)

// configWatch reports when the configuration file may have changed. It
// watches the file's folder, not the file: the kubelet updates a mounted
// ConfigMap by writing a new timestamped folder and renaming the `..data`
// link to it (config.yaml is a link through ..data, and never changes
// itself), and editors save by renaming a new file over the old one; an
// inotify watch on the file would follow the old inode and see neither.
type configWatch struct {
	path     string
	debounce time.Duration
	poll     time.Duration
	log      *slog.Logger
}

// run calls changed once the folder has been quiet for debounce after an
// event, or after a poll found the file's content changed, until ctx is
// done. It calls it once at the start too, for a change made before the
// watch was in place. changed must not block.
func (w configWatch) run(ctx context.Context, changed func()) {
	dir := filepath.Dir(w.path)
	var events <-chan fsnotify.Event
	var errs <-chan error
	fw, err := fsnotify.NewWatcher()
	if err == nil {
		if err = fw.Add(dir); err != nil {
			fw.Close()
		}
	}
	if err != nil {
		w.log.Warn("cannot watch the configuration file's folder; it is read every "+w.poll.String()+" instead", "dir", dir, "err", err)
	} else {
		defer fw.Close()
		events, errs = fw.Events, fw.Errors
	}
	// The content the start's call covers, taken before it: a change made
	// while it runs is seen by the next poll.
	last := fileHash(w.path)
	changed()

	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	poll := time.NewTicker(w.poll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			debounce.Stop()
			return
		case <-events:
			debounce.Reset(w.debounce)
		case err := <-errs:
			w.log.Warn("watching the configuration file's folder", "dir", dir, "err", err)
			debounce.Reset(w.debounce) // an overflow may have hidden a change
		case <-poll.C:
			if c := fileHash(w.path); c != last {
				last = c
				debounce.Reset(w.debounce)
			}
		case <-debounce.C:
			last = fileHash(w.path) // before the call, as at the start
			changed()
		}
	}
}
