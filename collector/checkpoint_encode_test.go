package collector

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestEncodeStateIsJSONMarshal: the checkpoint file's hand-written encoder
// writes exactly what encoding/json writes, for plain paths and for paths
// that need escaping (quotes, HTML characters, control bytes, non-ASCII,
// invalid UTF-8), so the file reads back the same.
func TestEncodeStateIsJSONMarshal(t *testing.T) {
	cases := map[string][]checkpoint{
		"nil":   nil,
		"empty": {},
		"plain": {
			{Path: "/var/log/pods/default_web-1_uid/app/0.log", ID: fileID{Dev: 2049, Ino: 1 << 40}, FPLen: 96, FP: 1<<64 - 1, Offset: 123456789},
			{Path: "/var/log/pods/default_web-1_uid/app/0.log.20261127-080000.gz", ID: fileID{Dev: 1, Ino: 2}, FPLen: 0, FP: 0, Offset: 0, Done: true},
		},
		"escaped": {
			{Path: `/a/"quoted"\back`, Offset: 1},
			{Path: "/a/<b>&c", Offset: 2},
			{Path: "/a/tab\there\x01", Offset: 3},
			{Path: "/a/pod-ünïcode/日本", Offset: 4},
			{Path: "/a/bad\xff\xfeutf8", Offset: 5},
			{Path: "/a/line\u2028sep", Offset: 6},
		},
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			want, err := json.Marshal(stateFile{Version: 1, Files: files})
			if err != nil {
				t.Fatal(err)
			}
			got, err := encodeState(files)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encodeState:\n got %s\nwant %s", got, want)
			}
		})
	}
}
