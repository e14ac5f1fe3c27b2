// Package collectortest writes container logs in the kubelet's layout for
// tests and benchmarks of the collector and of the whole agent.
package collectortest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Node is a tree of container logs: ROOT/pods/<ns>_<pod>_<uid>/<container>/0.log
// and ROOT/containers/<pod>_<ns>_<container>-<id>.log links to them.
type Node struct {
	Root    string
	Records int64 // records written, partial pieces joined
	Bytes   int64
	Pods    []Pod
}

// Pod is one pod whose logs were written.
type Pod struct {
	Namespace, Name, UID string
	Labels               map[string]string
	Containers           []string
}

// Glob is the pattern that finds the node's links.
func (n *Node) Glob() string { return filepath.Join(n.Root, "containers", "*.log") }

// Generate writes pods × lines CRI records: JSON application logs, plain text
// on stderr, and every 200th record 40 KB long, split into 16 KiB partial
// pieces as the runtime does. When genlogs names ../shared/bench/genlogs.py,
// that script writes the data instead (its manifest counts the records).
func Generate(root string, pods, lines int, genlogs string) (*Node, error) {
	if genlogs != "" {
		return runGenlogs(root, pods, lines, genlogs)
	}
	n := &Node{Root: root}
	long := strings.Repeat("x", 40000)
	ts := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	if err := os.MkdirAll(filepath.Join(root, "containers"), 0o755); err != nil {
		return nil, err
	}
	for p := range pods {
		pod := Pod{Namespace: fmt.Sprintf("ns%d", p%5), Name: fmt.Sprintf("pod%d", p), UID: fmt.Sprintf("uid%d", p),
			Labels: map[string]string{"app": fmt.Sprintf("app-%d", p%7)}, Containers: []string{"main"}}
		var sb strings.Builder
		for i := range lines {
			stamp := ts.Add(time.Duration(i) * time.Microsecond).Format(time.RFC3339Nano)
			switch {
			case i%200 == 199:
				for k := 0; k < len(long); k += 16384 {
					tag := "P"
					if k+16384 >= len(long) {
						tag = "F"
					}
					fmt.Fprintf(&sb, "%s stdout %s %s\n", stamp, tag, long[k:min(k+16384, len(long))])
				}
			case i%2 == 0:
				fmt.Fprintf(&sb, `%s stdout F {"level":"info","msg":"request served","latency_ms":%d,"status":200,"trace_id":"%032x","seq":%d}`+"\n", stamp, i%900, i, i)
			default:
				fmt.Fprintf(&sb, "%s stderr F connection pool worker queue shard replica leader follower commit seq=%d\n", stamp, i)
			}
			n.Records++
		}
		if err := n.writeContainer(pod, "main", p, sb.String()); err != nil {
			return nil, err
		}
		n.Bytes += int64(sb.Len())
		n.Pods = append(n.Pods, pod)
	}
	return n, nil
}

func (n *Node) writeContainer(pod Pod, container string, idx int, content string) error {
	dir := filepath.Join(n.Root, "pods", pod.Namespace+"_"+pod.Name+"_"+pod.UID, container)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, "0.log")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Symlink(path, n.link(pod, container, fmt.Sprintf("%064x", idx+1)))
}

func (n *Node) link(pod Pod, container, id string) string {
	return filepath.Join(n.Root, "containers", pod.Name+"_"+pod.Namespace+"_"+container+"-"+id+".log")
}

// SetUID moves a pod's logs to the directory of another uid (the one an API
// server gave the pod) and points its links there.
func (n *Node) SetUID(i int, uid string) error {
	pod := &n.Pods[i]
	from := filepath.Join(n.Root, "pods", pod.Namespace+"_"+pod.Name+"_"+pod.UID)
	to := filepath.Join(n.Root, "pods", pod.Namespace+"_"+pod.Name+"_"+uid)
	if err := os.Rename(from, to); err != nil {
		return err
	}
	for _, c := range pod.Containers {
		links, _ := filepath.Glob(filepath.Join(n.Root, "containers", pod.Name+"_"+pod.Namespace+"_"+c+"-*.log"))
		for _, l := range links {
			if err := os.Remove(l); err != nil {
				return err
			}
			if err := os.Symlink(filepath.Join(to, c, "0.log"), l); err != nil {
				return err
			}
		}
	}
	pod.UID = uid
	return nil
}

func runGenlogs(root string, pods, lines int, script string) (*Node, error) {
	out, err := exec.Command("python3", script, root, "--pods", fmt.Sprint(pods), "--lines", fmt.Sprint(lines)).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("genlogs: %v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(root, "manifest.json"))
	if err != nil {
		return nil, err
	}
	var m struct {
		Records, Bytes int64
		Pods           []struct {
			Namespace, Name, UID string
			Labels               map[string]string
			Containers           []struct{ Name string }
		}
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("genlogs manifest: %w", err)
	}
	n := &Node{Root: root, Records: m.Records, Bytes: m.Bytes}
	for _, p := range m.Pods {
		pod := Pod{Namespace: p.Namespace, Name: p.Name, UID: p.UID, Labels: p.Labels}
		for _, c := range p.Containers {
			pod.Containers = append(pod.Containers, c.Name)
		}
		n.Pods = append(n.Pods, pod)
	}
	return n, nil
}
