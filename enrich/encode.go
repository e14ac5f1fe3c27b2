package enrich

import (
	"sort"

	"github.com/tinylib/msgp/msgp"
)

// kv is one label or annotation; slices of kv are kept sorted by key so the
// encoding is deterministic.
type kv struct{ k, v string }

// sortedKVs copies the allowed entries of m, sorted by key; nil when none.
func sortedKVs(m map[string]string, f keyFilter) []kv {
	var out []kv
	for k, v := range m {
		if f.allows(k) {
			out = append(out, kv{k, v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].k < out[j].k })
	return out
}

// podFields are the pod-level values of the "kubernetes" map.
type podFields struct {
	namespace   string
	name        string
	uid         string
	ip          string
	host        string
	labels      []kv
	annotations []kv
	nsLabels    []kv
	owner       owner
	hasOwner    bool
}

// containerFields are the per-container values of the "kubernetes" map.
type containerFields struct {
	name  string
	id    string // without the runtime's "containerd://" prefix, as Fluent Bit's docker_id
	image string
}

// encodeKubernetes appends the msgpack "kubernetes" map to dst. Key names
// follow Fluent Bit's kubernetes filter; keys come in a fixed order and empty
// values are left out, so equal inputs encode to equal bytes.
func encodeKubernetes(dst []byte, p *podFields, c containerFields) []byte {
	n := uint32(3) // namespace_name, pod_name, container_name
	for _, present := range []bool{
		p.uid != "", p.ip != "", p.host != "", c.id != "", c.image != "",
		len(p.labels) > 0, len(p.annotations) > 0, len(p.nsLabels) > 0, p.hasOwner,
	} {
		if present {
			n++
		}
	}
	dst = msgp.AppendMapHeader(dst, n)
	dst = appendStr(dst, "namespace_name", p.namespace)
	dst = appendStr(dst, "pod_name", p.name)
	if p.uid != "" {
		dst = appendStr(dst, "pod_id", p.uid)
	}
	if p.ip != "" {
		dst = appendStr(dst, "pod_ip", p.ip)
	}
	if p.host != "" {
		dst = appendStr(dst, "host", p.host)
	}
	dst = appendStr(dst, "container_name", c.name)
	if c.id != "" {
		dst = appendStr(dst, "container_id", c.id)
	}
	if c.image != "" {
		dst = appendStr(dst, "container_image", c.image)
	}
	if len(p.labels) > 0 {
		dst = appendKVs(dst, "labels", p.labels)
	}
	if len(p.annotations) > 0 {
		dst = appendKVs(dst, "annotations", p.annotations)
	}
	if len(p.nsLabels) > 0 {
		dst = appendKVs(dst, "namespace_labels", p.nsLabels)
	}
	if p.hasOwner {
		dst = msgp.AppendString(dst, "owner")
		dst = msgp.AppendMapHeader(dst, 2)
		dst = appendStr(dst, "kind", p.owner.Kind)
		dst = appendStr(dst, "name", p.owner.Name)
	}
	return dst
}

func appendStr(dst []byte, k, v string) []byte {
	return msgp.AppendString(msgp.AppendString(dst, k), v)
}

func appendKVs(dst []byte, k string, kvs []kv) []byte {
	dst = msgp.AppendString(dst, k)
	dst = msgp.AppendMapHeader(dst, uint32(len(kvs)))
	for _, e := range kvs {
		dst = appendStr(dst, e.k, e.v)
	}
	return dst
}

// encodedSize is a close upper bound of the encoding's length, to allocate
// the immutable slice once.
func encodedSize(p *podFields, c containerFields) int {
	// 5 bytes of header per string at most (str32), plus map headers.
	size := 16
	add := func(k, v string) { size += len(k) + len(v) + 10 }
	add("namespace_name", p.namespace)
	add("pod_name", p.name)
	add("pod_id", p.uid)
	add("pod_ip", p.ip)
	add("host", p.host)
	add("container_name", c.name)
	add("container_id", c.id)
	add("container_image", c.image)
	for _, l := range [][]kv{p.labels, p.annotations, p.nsLabels} {
		size += 32
		for _, e := range l {
			add(e.k, e.v)
		}
	}
	add("owner", "")
	add("kind", p.owner.Kind)
	add("name", p.owner.Name)
	return size
}

// encode returns the immutable encoding for one container of the pod.
func encode(p *podFields, c containerFields) []byte {
	b := encodeKubernetes(make([]byte, 0, encodedSize(p, c)), p, c)
	return b[:len(b):len(b)] // cap = len: an append by a reader cannot write into shared bytes
}
