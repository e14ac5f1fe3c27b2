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

// strSize is the exact msgpack size of a string.
func strSize(s string) int {
	switch n := len(s); {
	case n < 32:
		return 1 + n
	case n < 1<<8:
		return 2 + n
	case n < 1<<16:
		return 3 + n
	default:
		return 5 + n
	}
}

// mapHeaderSize is the exact msgpack size of a map header.
func mapHeaderSize(n int) int {
	switch {
	case n < 16:
		return 1
	case n < 1<<16:
		return 3
	default:
		return 5
	}
}

// encodedSize is the exact length of encodeKubernetes' output, so each
// shared encoding is allocated once at its final size (these live as long as
// the pod version: no slack).
func encodedSize(p *podFields, c containerFields) int {
	n, size := 0, 0
	add := func(k, v string, present bool) {
		if present {
			n++
			size += strSize(k) + strSize(v)
		}
	}
	add("namespace_name", p.namespace, true)
	add("pod_name", p.name, true)
	add("pod_id", p.uid, p.uid != "")
	add("pod_ip", p.ip, p.ip != "")
	add("host", p.host, p.host != "")
	add("container_name", c.name, true)
	add("container_id", c.id, c.id != "")
	add("container_image", c.image, c.image != "")
	for _, l := range []struct {
		k   string
		kvs []kv
	}{{"labels", p.labels}, {"annotations", p.annotations}, {"namespace_labels", p.nsLabels}} {
		if len(l.kvs) == 0 {
			continue
		}
		n++
		size += strSize(l.k) + mapHeaderSize(len(l.kvs))
		for _, e := range l.kvs {
			size += strSize(e.k) + strSize(e.v)
		}
	}
	if p.hasOwner {
		n++
		size += strSize("owner") + mapHeaderSize(2) + strSize("kind") + strSize(p.owner.Kind) + strSize("name") + strSize(p.owner.Name)
	}
	return mapHeaderSize(n) + size
}

// encode returns the immutable encoding for one container of the pod. Its
// capacity equals its length, so a reader's append cannot write into the
// shared bytes.
func encode(p *podFields, c containerFields) []byte {
	return encodeKubernetes(make([]byte, 0, encodedSize(p, c)), p, c)
}
