package enrich

import (
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// owner names the workload that controls a pod.
type owner struct {
	Kind string
	Name string
}

// podTemplateHashLabel is the label the Deployment controller puts on a
// ReplicaSet's pods; the ReplicaSet is named "<deployment>-<hash>".
const podTemplateHashLabel = "pod-template-hash"

// cronJobSuffixRange bounds the scheduled time, in Unix minutes, that the
// CronJob controller appends to its Jobs' names ("<cronjob>-<minutes>"). Only
// such suffixes are stripped, so a Job named "migrate-2" stays a Job.
var cronJobSuffixRange = [2]int64{
	time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 60,
	time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 60,
}

// controllerRef returns the pod's controlling owner reference, or its first
// owner reference when none is marked as the controller, or nil.
func controllerRef(refs []metav1.OwnerReference) *metav1.OwnerReference {
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			return &refs[i]
		}
	}
	if len(refs) > 0 {
		return &refs[0]
	}
	return nil
}

// deriveOwner names the workload controlling a pod from its owner reference
// and labels alone, without informers on ReplicaSets or Jobs: a ReplicaSet's
// Deployment from the pod-template-hash label, a Job's CronJob from the
// scheduled-time suffix of the Job's name. Other kinds (StatefulSet, DaemonSet,
// bare Job, custom controllers) are named directly. A pod without owner
// references has no owner (ok false).
func deriveOwner(refs []metav1.OwnerReference, labels map[string]string) (o owner, ok bool) {
	ref := controllerRef(refs)
	if ref == nil || ref.Name == "" {
		return owner{}, false
	}
	switch ref.Kind {
	case "ReplicaSet":
		if hash := labels[podTemplateHashLabel]; hash != "" {
			if name, found := strings.CutSuffix(ref.Name, "-"+hash); found && name != "" {
				return owner{Kind: "Deployment", Name: name}, true
			}
		}
	case "Job":
		if i := strings.LastIndexByte(ref.Name, '-'); i > 0 {
			if n, err := strconv.ParseInt(ref.Name[i+1:], 10, 64); err == nil &&
				ref.Name[i+1] != '+' && n >= cronJobSuffixRange[0] && n < cronJobSuffixRange[1] {
				return owner{Kind: "CronJob", Name: ref.Name[:i]}, true
			}
		}
	}
	return owner{Kind: ref.Kind, Name: ref.Name}, true
}
