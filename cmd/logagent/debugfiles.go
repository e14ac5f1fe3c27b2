package main

import "time"

// /debug/files is the collector's view of every file it knows, so that an
// operator can answer "is this pod's log shipped, and how far behind". This
// is its JSON contract, which `logagent status` reads: {"files": [...]},
// one object per file, sorted by namespace, pod, container, then path.
// The collector provides it later (see agent.files); until then
// /debug/files answers 404 and status says "not available".

// File states, as fileStatus.State reports them.
const (
	// fileLive is the file the container writes now, being followed.
	fileLive = "live"
	// fileRotated was renamed by a rotation and is still read, until
	// collector.rotate_wait after it last grew.
	fileRotated = "rotated"
	// fileDraining is no longer written (rotated past rotate_wait, or its
	// container ended) and is read to its end; it stays until everything
	// read from it is acknowledged.
	fileDraining = "draining"
	// fileDeletedHeld was deleted while records in it were not yet
	// acknowledged: held open until they are (within
	// collector.deleted_hold_bytes).
	fileDeletedHeld = "deleted_held"
	// fileCompressed is a rotation the kubelet compressed before the agent
	// had read and delivered all of it: read from the .gz at its checkpoint.
	fileCompressed = "compressed"
)

// fileStates are the values of fileStatus.State, in the order status shows them.
var fileStates = []string{fileLive, fileRotated, fileDraining, fileDeletedHeld, fileCompressed}

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
