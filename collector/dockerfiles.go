package collector

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// On a Docker node (cri-dockerd), a container's live log in its pod folder,
// /var/log/pods/<ns>_<pod>_<uid>/<container>/0.log, is a link to Docker's
// json-file log, /var/lib/docker/containers/<id>/<id>-json.log, and Docker
// rotates that file itself, beside it: <id>-json.log.1 (the newest), .2, ...,
// compressed as <id>-json.log.1.gz with the driver's compress option. Those
// rotations are the container's history as much as the kubelet's rotated
// files are, and must be found the same way: after the agent was down
// while Docker rotated, the lines before the rotation are only there.

// dockerRotation is one of Docker's rotated files of a container.
type dockerRotation struct {
	path  string
	gz    bool
	order string // sorts oldest first: the highest number is the oldest
}

// dockerRotations lists Docker's rotated files beside the json-file log that
// the live file link points to; none if it points elsewhere.
func dockerRotations(live string) []dockerRotation {
	target, err := os.Readlink(live)
	if err != nil {
		return nil
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(live), target)
	}
	base := filepath.Base(target)
	if !strings.HasSuffix(base, "-json.log") {
		return nil
	}
	entries, err := os.ReadDir(filepath.Dir(target))
	if err != nil {
		return nil // the live file's own open reports why
	}
	var out []dockerRotation
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok {
			continue
		}
		num, gz := strings.CutSuffix(rest, ".gz")
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 {
			continue
		}
		out = append(out, dockerRotation{
			path:  filepath.Join(filepath.Dir(target), e.Name()),
			gz:    gz,
			order: fmt.Sprintf("\x01%09d", 999999999-n),
		})
	}
	return out
}
