package enrich

import (
	"bytes"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestEncodeKubernetes(t *testing.T) {
	p := &podFields{
		namespace: "shop", name: "web-5d8f7c9b6-x2x", uid: "u-1", ip: "10.1.0.7", host: "node-a",
		labels:      []kv{{"app", "web"}, {"tier", "front"}},
		annotations: []kv{{"note", "hi"}},
		nsLabels:    []kv{{"team", "t1"}},
		owner:       owner{"Deployment", "web"}, hasOwner: true,
	}
	b := encode(p, containerFields{name: "app", id: "abc123", image: "example.com/app:1"})
	if cap(b) != len(b) {
		t.Errorf("cap %d != len %d: a reader's append could write into shared bytes", cap(b), len(b))
	}
	d := decode(t, b)
	wantKeys := []string{"namespace_name", "pod_name", "pod_id", "pod_ip", "host", "container_name",
		"container_id", "container_image", "labels", "annotations", "namespace_labels", "owner"}
	if !slices.Equal(d.keys, wantKeys) {
		t.Errorf("keys %q, want %q", d.keys, wantKeys)
	}
	for k, want := range map[string]string{
		"namespace_name": "shop", "pod_name": "web-5d8f7c9b6-x2x", "pod_id": "u-1", "pod_ip": "10.1.0.7",
		"host": "node-a", "container_name": "app", "container_id": "abc123", "container_image": "example.com/app:1",
	} {
		if got := d.str(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if l := d.sub("labels"); len(l) != 2 || l["app"] != "web" || l["tier"] != "front" {
		t.Errorf("labels = %v", l)
	}
	if o := d.sub("owner"); o["kind"] != "Deployment" || o["name"] != "web" {
		t.Errorf("owner = %v", o)
	}
	if l := d.sub("namespace_labels"); l["team"] != "t1" {
		t.Errorf("namespace_labels = %v", l)
	}
}

func TestEncodedSizeExact(t *testing.T) {
	long := string(bytes.Repeat([]byte("x"), 300))
	huge := string(bytes.Repeat([]byte("y"), 70000))
	many := make([]kv, 20)
	for i := range many {
		many[i] = kv{string(rune('a' + i)), long}
	}
	for _, tc := range []struct {
		p *podFields
		c containerFields
	}{
		{&podFields{namespace: "n", name: "p"}, containerFields{name: "c"}},
		{&podFields{namespace: "n", name: long, uid: "u", ip: "1.2.3.4", host: "h", labels: many, annotations: []kv{{"big", huge}},
			nsLabels: []kv{{"a", "b"}}, owner: owner{"Deployment", "web"}, hasOwner: true}, containerFields{name: "c", id: long, image: "i"}},
	} {
		b := encode(tc.p, tc.c)
		if len(b) != encodedSize(tc.p, tc.c) || cap(b) != len(b) {
			t.Errorf("len %d cap %d, encodedSize %d", len(b), cap(b), encodedSize(tc.p, tc.c))
		}
		decode(t, b)
	}
}

func TestEncodeOmitsEmpty(t *testing.T) {
	d := decode(t, encode(&podFields{namespace: "ns", name: "p"}, containerFields{name: "c"}))
	if want := []string{"namespace_name", "pod_name", "container_name"}; !slices.Equal(d.keys, want) {
		t.Errorf("keys %q, want %q", d.keys, want)
	}
}

// Equal pods encode to equal bytes whatever their maps' iteration order, so
// tests (and receivers deduplicating) can compare.
func TestEncodeDeterministic(t *testing.T) {
	labels := map[string]string{}
	for _, k := range []string{"z", "a", "m", "b", "y", "c", "x", "d"} {
		labels[k] = k + "v"
	}
	f := newKeyFilter([]string{"*"})
	first := encode(&podFields{namespace: "n", name: "p", labels: sortedKVs(labels, f)}, containerFields{name: "c"})
	for range 20 {
		again := encode(&podFields{namespace: "n", name: "p", labels: sortedKVs(labels, f)}, containerFields{name: "c"})
		if !bytes.Equal(first, again) {
			t.Fatal("encoding differs between runs")
		}
	}
	d := decode(t, first)
	if len(d.sub("labels")) != 8 {
		t.Errorf("labels = %v", d.sub("labels"))
	}
}

func TestSortedKVsFilters(t *testing.T) {
	got := sortedKVs(map[string]string{"app": "1", "team": "2", "secret": "3"}, newKeyFilter([]string{"app", "team"}))
	if want := []kv{{"app", "1"}, {"team", "2"}}; !slices.Equal(got, want) {
		t.Errorf("sortedKVs = %v, want %v", got, want)
	}
	if got := sortedKVs(map[string]string{"app": "1"}, newKeyFilter(nil)); got != nil {
		t.Errorf("empty allow-list kept %v", got)
	}
}

func TestBuildMetaContainers(t *testing.T) {
	pod := newPod("shop", "web-1", "u-1", withContainers("app", "side"),
		status("app", "containerd://cur111", "containerd://old000"), status("side", "cri-o://side222", ""),
		ownedBy("StatefulSet", "web"), annotated("note", "x"))
	m := buildMeta(pod, &nsMeta{labels: []kv{{"team", "t"}}}, filters{labels: newKeyFilter([]string{"*"}), annotations: newKeyFilter([]string{"*"})})

	cur := decode(t, m.kubernetes("app", "cur111"))
	if cur.str("container_id") != "cur111" || cur.str("container_image") != "example.com/app@sha256:abc" {
		t.Errorf("current: id %q image %q", cur.str("container_id"), cur.str("container_image"))
	}
	if !bytes.Equal(m.kubernetes("app", ""), m.kubernetes("app", "cur111")) {
		t.Error("unknown id should get the current container's encoding")
	}
	if old := decode(t, m.kubernetes("app", "old000")); old.str("container_id") != "old000" {
		t.Errorf("previous instance: id %q", old.str("container_id"))
	}
	if side := decode(t, m.kubernetes("side", "")); side.str("container_id") != "side222" {
		t.Errorf("side: id %q", side.str("container_id"))
	}
	// An id the status does not list (yet) is encoded once and then shared.
	a, b := m.kubernetes("app", "new999"), m.kubernetes("app", "new999")
	if &a[0] != &b[0] {
		t.Error("encoding for an unlisted id was built twice")
	}
	if d := decode(t, a); d.str("container_id") != "new999" || d.str("container_image") != "example.com/app@sha256:abc" {
		t.Errorf("unlisted id: %v", d.m)
	}
	// A container the pod does not have still gets the pod's metadata.
	if d := decode(t, m.kubernetes("debug", "")); d.str("container_name") != "debug" || d.str("pod_name") != "web-1" {
		t.Errorf("unknown container: %v", d.m)
	}
	if o := cur.sub("owner"); o["kind"] != "StatefulSet" || o["name"] != "web" {
		t.Errorf("owner %v", o)
	}
	if cur.sub("namespace_labels")["team"] != "t" || cur.sub("annotations")["note"] != "x" {
		t.Errorf("namespace labels / annotations: %v", cur.m)
	}
}

func TestStripRuntime(t *testing.T) {
	for in, want := range map[string]string{
		"containerd://abc": "abc", "docker://abc": "abc", "cri-o://abc": "abc", "abc": "abc", "": "",
	} {
		if got := stripRuntime(in); got != want {
			t.Errorf("stripRuntime(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSlimPodKeepsWhatEnrichReads(t *testing.T) {
	pod := newPod("shop", "web-1", "u-1", labelled("pod-template-hash", "h1"), ownedBy("ReplicaSet", "web-h1"),
		annotated(excludeContainersKey, "side"), annotated("kubectl.kubernetes.io/last-applied-configuration", "{...}"),
		annotated(mirrorAnnotation, "m-1"), status("app", "containerd://c1", "containerd://c0"))
	pod.Spec.Volumes = make([]corev1.Volume, 3)
	f := filters{labels: newKeyFilter([]string{"team"}), annotations: newKeyFilter(nil), podExclusion: true}
	s := slimPod(pod, f)
	if _, ok := s.Labels["app"]; ok {
		t.Error("label outside the allow-list kept")
	}
	if s.Labels["pod-template-hash"] != "h1" {
		t.Error("pod-template-hash dropped: owner derivation needs it")
	}
	if _, ok := s.Annotations["kubectl.kubernetes.io/last-applied-configuration"]; ok {
		t.Error("annotation outside the allow-list kept")
	}
	if s.Annotations[excludeContainersKey] != "side" || s.Annotations[mirrorAnnotation] != "m-1" {
		t.Errorf("selection / mirror annotations dropped: %v", s.Annotations)
	}
	if len(s.Spec.Volumes) != 0 || len(s.OwnerReferences) != 1 || s.Status.ContainerStatuses[0].LastTerminationState.Terminated.ContainerID != "containerd://c0" {
		t.Errorf("slim pod %+v", s)
	}
	a, b := buildMeta(pod, nil, f), buildMeta(s, nil, f)
	if !bytes.Equal(a.kubernetes("app", "c1"), b.kubernetes("app", "c1")) {
		t.Error("slimming changed the encoding")
	}
	// Idempotent, as client-go requires of transforms.
	if !bytes.Equal(buildMeta(slimPod(s, f), nil, f).kubernetes("app", ""), b.kubernetes("app", "")) {
		t.Error("slimPod is not idempotent")
	}
}

// TestSlimPodAnnotations: the informer's store keeps the selection
// annotations only when they are honoured, and never an excluded annotation
// (last-applied-configuration by default), even under annotations: ["*"].
func TestSlimPodAnnotations(t *testing.T) {
	const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"
	pod := newPod("shop", "web-1", "u-1", annotated(excludeKey, "true"), annotated(excludeContainersKey, "side"),
		annotated(lastApplied, "{...}"), annotated("note", "n"), annotated(mirrorAnnotation, "m-1"))
	d := DefaultConfig()
	for _, tc := range []struct {
		name        string
		annotations []string
		podExcl     bool
		want        []string
	}{
		{"defaults", []string{"*"}, false, []string{excludeKey, excludeContainersKey, mirrorAnnotation, "note"}},
		{"pod exclusion on, none copied", nil, true, []string{excludeKey, excludeContainersKey, mirrorAnnotation}},
		{"pod exclusion off, none copied", nil, false, []string{mirrorAnnotation}},
	} {
		f := filters{annotations: newKeyFilter(tc.annotations).without(d.ExcludeAnnotations), podExclusion: tc.podExcl}
		s := slimPod(pod, f)
		var got []string
		for k := range s.Annotations {
			got = append(got, k)
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) {
			t.Errorf("%s: annotations kept %q, want %q", tc.name, got, want)
		}
	}
}
