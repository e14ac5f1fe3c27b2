package output

import (
	"slices"
	"testing"
)

func listIDs(l *chunkList) []string {
	var ids []string
	for c := l.head; c != nil; c = c.nextOpen {
		ids = append(ids, c.id)
	}
	// And backwards: the links agree.
	var back []string
	for c := l.tail; c != nil; c = c.prevOpen {
		back = append(back, c.id)
	}
	slices.Reverse(back)
	if !slices.Equal(ids, back) {
		return append(ids, "BROKEN")
	}
	return ids
}

func TestChunkListRemove(t *testing.T) {
	for _, tc := range []struct {
		remove []string
		want   []string
	}{
		{nil, []string{"a", "b", "c", "d"}},
		{[]string{"a"}, []string{"b", "c", "d"}},
		{[]string{"d"}, []string{"a", "b", "c"}},
		{[]string{"b", "c"}, []string{"a", "d"}},
		{[]string{"a", "b", "c", "d"}, nil},
		{[]string{"d", "c", "b", "a"}, nil},
	} {
		var l chunkList
		byID := map[string]*chunk{}
		for _, id := range []string{"a", "b", "c", "d"} {
			c := &chunk{id: id}
			byID[id] = c
			l.pushBack(c)
		}
		for _, id := range tc.remove {
			l.remove(byID[id])
		}
		if got := listIDs(&l); !slices.Equal(got, tc.want) {
			t.Errorf("remove %v: %v, want %v", tc.remove, got, tc.want)
		}
		l.pushBack(&chunk{id: "e"}) // still usable
		if got := listIDs(&l); got[len(got)-1] != "e" || l.head == nil {
			t.Errorf("remove %v then push: %v", tc.remove, got)
		}
	}
}

func TestChunkQueueOrder(t *testing.T) {
	var q chunkQueue
	var want []string
	for i := range 3000 {
		q.push(&chunk{id: string(rune('a' + i%26))})
		want = append(want, string(rune('a'+i%26)))
		if i%3 == 2 { // keep it moving, past the compaction threshold
			if got := q.pop().id; got != want[0] {
				t.Fatalf("pop %q, want %q", got, want[0])
			}
			want = want[1:]
		}
	}
	q.pushFront([]*chunk{{id: "X"}, {id: "Y"}})
	want = append([]string{"X", "Y"}, want...)
	if q.len() != len(want) || q.peek().id != "X" {
		t.Fatalf("len %d peek %q, want %d and X", q.len(), q.peek().id, len(want))
	}
	for _, w := range want {
		if got := q.pop().id; got != w {
			t.Fatalf("pop %q, want %q", got, w)
		}
	}
	if q.len() != 0 {
		t.Errorf("len %d after draining", q.len())
	}
}

func TestWaitQueueWakesFirstOnly(t *testing.T) {
	var q waitQueue
	a, b, c := q.push(), q.push(), q.push()
	q.wakeFirst()
	q.wakeFirst() // a is still first and already woken: no second wake-up
	if len(a.ch) != 1 || len(b.ch) != 0 || len(c.ch) != 0 {
		t.Fatalf("woken: a %d, b %d, c %d; want a only, once", len(a.ch), len(b.ch), len(c.ch))
	}
	q.remove(b) // one in the middle gives up
	q.remove(a)
	if q.first() != c || q.len() != 1 {
		t.Fatalf("first %p len %d, want c alone", q.first(), q.len())
	}
	q.wakeAll()
	if len(c.ch) != 1 {
		t.Error("wakeAll missed c")
	}
	q.remove(nil) // no-op
}
