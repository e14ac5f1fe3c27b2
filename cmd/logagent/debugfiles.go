package main

import (
	"time"

	"github.com/logagent/logagent/collector"
)

// /debug/files is the collector's view of every file it knows, so that an
// operator can answer "is this pod's log shipped, and how far behind". This
// is its JSON contract, which `logagent status` reads: {"files": [...]},
// one object per file, sorted by namespace, pod, container, then path.
// The collector provides it (collector.Files, see agent.files); without it
// /debug/files answers 404 and status says "not available".

// File states, as fileStatus.State reports them.
const (
	// fileLive is the file the container writes now, being followed.
	fileLive = collector.StateLive
	// fileRotated was renamed by a rotation and is still read, until
	// collector.rotate_wait after it last grew.
	fileRotated = collector.StateRotated
	// fileDraining is no longer written (rotated past rotate_wait, or its
	// container ended) and is read to its end; it stays until everything
	// read from it is acknowledged.
	fileDraining = collector.StateDraining
	// fileDeletedHeld was deleted while records in it were not yet
	// acknowledged: held open until they are (within
	// collector.deleted_hold_bytes).
	fileDeletedHeld = collector.StateDeletedHeld
	// fileCompressed is a rotation the kubelet compressed before the agent
	// had read and delivered all of it: read from the .gz at its checkpoint.
	fileCompressed = collector.StateCompressed
	// fileDone is a rotation read to its end with every record
	// acknowledged (or history from before the agent's first start), kept
	// only to recognise it while it is on disk.
	fileDone = collector.StateDone
)

// fileStates are the values of fileStatus.State, in the order status shows them.
var fileStates = []string{fileLive, fileRotated, fileDraining, fileDeletedHeld, fileCompressed, fileDone}

// fileStatus is one file of /debug/files.
type fileStatus struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Container string `json:"container"`
	// Path is where the file is now (a rotation renames it).
	Path string `json:"path"`
	// Size is the file's size when last looked at; for a compressed
	// rotation, of its uncompressed content as far as known.
	Size int64 `json:"size"`
	// ReadOffset is how far the collector has read; AckedOffset how far
	// every record is acknowledged downstream (the checkpoint's offset).
	ReadOffset  int64 `json:"read_offset"`
	AckedOffset int64 `json:"acked_offset"`
	// BytesBehind is what is written but not yet acknowledged: Size minus
	// AckedOffset.
	BytesBehind int64 `json:"bytes_behind"`
	// State is one of fileStates.
	State string `json:"state"`
	// LastRead is when the collector last read from the file; zero
	// (omitted) if it has not since the agent started.
	LastRead time.Time `json:"last_read,omitzero"`
}

// filesStatus is the body of /debug/files.
type filesStatus struct {
	Files []fileStatus `json:"files"`
}

// filesOf is the collector's view of its files in the JSON contract.
func filesOf(fs []collector.FileStatus) []fileStatus {
	out := make([]fileStatus, 0, len(fs))
	for _, f := range fs {
		out = append(out, fileStatus{
			Namespace: f.Namespace, Pod: f.Pod, Container: f.Container, Path: f.Path,
			Size: f.Size, ReadOffset: f.ReadOffset, AckedOffset: f.AckedOffset,
			BytesBehind: f.BytesBehind(), State: f.State, LastRead: f.LastRead,
		})
	}
	return out
}
