package collector

import (
	"errors"
	"io/fs"
	"time"
)

// An agent that cannot read the logs (run as another user, without
// DAC_READ_SEARCH, on an SELinux node without the right type) must say so:
// every file, directory or link it cannot read is logged, once while it stays
// unreadable, with the path and the error, and counted by reason; /readyz
// fails while files exist and none can be read.

// scanReport is what one rescan could and could not read.
type scanReport struct {
	readable   int // log files opened
	unreadable int // files, directories and links that could not be
	example    string
	exampleErr string
	// said holds the paths reported unreadable, and why: each is logged
	// and counted once, until a rescan finds it readable (or gone).
	said map[string]string
}

// cannotRead notes a path the collector cannot read, during a rescan; c.mu
// is held. A path that does not exist (any more) is not an error.
func (c *Collector) cannotRead(next *scanReport, path string, err error) {
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	re := classify(err)
	next.unreadable++
	if next.example == "" {
		next.example, next.exampleErr = path, re.Error()
	}
	if next.said == nil {
		next.said = map[string]string{}
	}
	next.said[path] = re.reason
	if c.scan.said[path] == re.reason {
		return // said before
	}
	c.m.unreadable.WithLabelValues(re.reason).Inc()
	c.log.Warn("cannot read", "path", path, "reason", re.reason, "err", re.err)
}

// globMatched notes how many links the glob matched, to say at info level
// when it has matched nothing for a while (a wrong glob, or logs not mounted).
func (c *Collector) globMatched(n int, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > 0 {
		if c.globEmptySaid {
			c.log.Info("the log glob matches files again", "glob", c.cfg.LogGlob, "files", n)
		}
		c.globEmptySince, c.globEmptySaid = time.Time{}, false
		return
	}
	if c.globEmptySince.IsZero() {
		c.globEmptySince = now
	}
	if !c.globEmptySaid && now.Sub(c.globEmptySince) >= c.globQuietAfter {
		c.globEmptySaid = true
		c.log.Info("the log glob has matched no file for a while: is it right, and are the log folders mounted?",
			"glob", c.cfg.LogGlob, "for", now.Sub(c.globEmptySince).Round(time.Second))
	}
}
