package output

import (
	"fmt"
	"strings"

	"github.com/logagent/logagent/collector"
)

// tagField is one placeholder of a tag template.
type tagField uint8

const (
	fieldLiteral tagField = iota
	fieldNamespace
	fieldPod
	fieldPodUID
	fieldContainer
	fieldContainerID
	fieldNode
)

var tagFields = map[string]tagField{
	"namespace":    fieldNamespace,
	"pod":          fieldPod,
	"pod_uid":      fieldPodUID,
	"container":    fieldContainer,
	"container_id": fieldContainerID,
	"node":         fieldNode,
}

type tagPart struct {
	field tagField
	lit   string
}

// tagTemplate renders a Source's tag from literal text and {placeholders}.
type tagTemplate []tagPart

func parseTagTemplate(s string) (tagTemplate, error) {
	if s == "" {
		return nil, fmt.Errorf("empty tag template")
	}
	var t tagTemplate
	for len(s) > 0 {
		open := strings.IndexByte(s, '{')
		if open < 0 {
			if strings.IndexByte(s, '}') >= 0 {
				return nil, fmt.Errorf("unmatched '}' in tag template")
			}
			t = append(t, tagPart{lit: s})
			break
		}
		if open > 0 {
			if strings.IndexByte(s[:open], '}') >= 0 {
				return nil, fmt.Errorf("unmatched '}' in tag template")
			}
			t = append(t, tagPart{lit: s[:open]})
		}
		end := strings.IndexByte(s[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("unterminated placeholder %q in tag template", s[open:])
		}
		name := s[open+1 : open+end]
		f, ok := tagFields[name]
		if !ok {
			return nil, fmt.Errorf("unknown placeholder {%s} (known: namespace, pod, pod_uid, container, container_id, node)", name)
		}
		t = append(t, tagPart{field: f})
		s = s[open+end+1:]
	}
	return t, nil
}

func (t tagTemplate) render(src *collector.Source) string {
	var s collector.Source
	if src != nil {
		s = *src
	}
	var b strings.Builder
	for _, p := range t {
		switch p.field {
		case fieldLiteral:
			b.WriteString(p.lit)
		case fieldNamespace:
			b.WriteString(s.Namespace)
		case fieldPod:
			b.WriteString(s.Pod)
		case fieldPodUID:
			b.WriteString(s.PodUID)
		case fieldContainer:
			b.WriteString(s.Container)
		case fieldContainerID:
			b.WriteString(s.ContainerID)
		case fieldNode:
			b.WriteString(s.Node)
		}
	}
	return validString(b.String())
}

// maxCachedTags bounds the tag cache. Sources come and go with files; when the
// cache is full it starts over rather than tracking which Sources are gone.
const maxCachedTags = 8192

// tagCache computes a Source's tag once. A Source is immutable and shared by
// all batches of a file, so its pointer is the key. Not safe for concurrent
// use: the Forward output calls it under its lock.
type tagCache struct {
	tmpl tagTemplate
	tags map[*collector.Source]string
}

func newTagCache(tmpl tagTemplate) *tagCache {
	return &tagCache{tmpl: tmpl, tags: make(map[*collector.Source]string)}
}

func (c *tagCache) get(src *collector.Source) string {
	if t, ok := c.tags[src]; ok {
		return t
	}
	if len(c.tags) >= maxCachedTags {
		clear(c.tags)
	}
	t := c.tmpl.render(src)
	c.tags[src] = t
	return t
}
