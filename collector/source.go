package collector

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tinylib/msgp/msgp"
)

// podDir is what the kubelet encodes in /var/log/pods/<namespace>_<pod>_<uid>/<container>/.
type podDir struct {
	Namespace, Pod, UID, Container string
}

// parseContainerDir reads the pod identity from a container log directory,
// /var/log/pods/<namespace>_<pod>_<uid>/<container>. Namespace and pod names
// cannot hold '_' (DNS labels), and neither can a uid, so splitting is exact.
func parseContainerDir(dir string) (podDir, error) {
	container := filepath.Base(dir)
	parts := strings.Split(filepath.Base(filepath.Dir(dir)), "_")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" || container == "" || container == "." {
		return podDir{}, fmt.Errorf("%s: not a kubelet container log directory (want .../<namespace>_<pod>_<uid>/<container>)", dir)
	}
	return podDir{Namespace: parts[0], Pod: parts[1], UID: parts[2], Container: container}, nil
}

// linkInfo is what the kubelet encodes in /var/log/containers/<pod>_<namespace>_<container>-<id>.log.
type linkInfo struct {
	Pod, Namespace, Container, ContainerID string
}

// parseLinkName reads a /var/log/containers link name. The container ID is the
// part after the last '-', which is a 64-hex-digit runtime ID.
func parseLinkName(name string) (linkInfo, bool) {
	base, ok := strings.CutSuffix(filepath.Base(name), ".log")
	if !ok {
		return linkInfo{}, false
	}
	parts := strings.SplitN(base, "_", 3)
	if len(parts) != 3 {
		return linkInfo{}, false
	}
	i := strings.LastIndexByte(parts[2], '-')
	if i <= 0 || i == len(parts[2])-1 {
		return linkInfo{}, false
	}
	return linkInfo{Pod: parts[0], Namespace: parts[1], Container: parts[2][:i], ContainerID: parts[2][i+1:]}, true
}

// logName classifies a file name inside a container log directory: the live
// file "N.log", a rotated one "N.log.<timestamp>", or neither (compressed or
// temporary rotations, anything else). restart is N.
func logName(name string) (restart int, rotated, ok bool) {
	num, rest, found := strings.Cut(name, ".log")
	if !found || num == "" {
		return 0, false, false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, false, false
	}
	switch {
	case rest == "":
		return n, false, true
	case rest[0] != '.' || len(rest) == 1:
		return 0, false, false
	case strings.HasSuffix(rest, ".gz") || strings.HasSuffix(rest, ".tmp"):
		// The kubelet compresses older rotations; reading them would duplicate
		// what was read before they were compressed.
		return 0, false, false
	}
	return n, true, true
}

// newSource builds the Source of a file and encodes its path metadata once.
func newSource(path, link string, pd podDir, containerID, node string) *Source {
	s := &Source{
		Path: path, Link: link,
		Namespace: pd.Namespace, Pod: pd.Pod, PodUID: pd.UID, Container: pd.Container,
		ContainerID: containerID, Node: node,
	}
	s.Kubernetes = encodePathMetadata(s)
	return s
}

// encodePathMetadata writes the "kubernetes" map the way Fluent Bit's
// kubernetes filter names its keys, with what the path alone tells.
func encodePathMetadata(s *Source) []byte {
	n := uint32(4)
	if s.Node != "" {
		n++
	}
	if s.ContainerID != "" {
		n++
	}
	b := make([]byte, 0, 64+len(s.Namespace)+len(s.Pod)+len(s.PodUID)+len(s.Container)+len(s.Node)+len(s.ContainerID))
	b = msgp.AppendMapHeader(b, n)
	b = msgp.AppendString(b, "pod_name")
	b = msgp.AppendString(b, s.Pod)
	b = msgp.AppendString(b, "namespace_name")
	b = msgp.AppendString(b, s.Namespace)
	b = msgp.AppendString(b, "pod_id")
	b = msgp.AppendString(b, s.PodUID)
	b = msgp.AppendString(b, "container_name")
	b = msgp.AppendString(b, s.Container)
	if s.ContainerID != "" {
		b = msgp.AppendString(b, "container_id")
		b = msgp.AppendString(b, s.ContainerID)
	}
	if s.Node != "" {
		b = msgp.AppendString(b, "host")
		b = msgp.AppendString(b, s.Node)
	}
	return b
}
