package enrich

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDeriveOwner(t *testing.T) {
	yes, no := true, false
	ref := func(kind, name string, controller *bool) metav1.OwnerReference {
		return metav1.OwnerReference{Kind: kind, Name: name, Controller: controller}
	}
	hash := map[string]string{"pod-template-hash": "5d8f7c9b6"}
	for _, tc := range []struct {
		name   string
		refs   []metav1.OwnerReference
		labels map[string]string
		want   owner
		ok     bool
	}{
		{"bare pod", nil, nil, owner{}, false},
		{"deployment via replicaset", []metav1.OwnerReference{ref("ReplicaSet", "web-5d8f7c9b6", &yes)}, hash, owner{"Deployment", "web"}, true},
		{"deployment with dashes", []metav1.OwnerReference{ref("ReplicaSet", "my-web-app-5d8f7c9b6", &yes)}, hash, owner{"Deployment", "my-web-app"}, true},
		{"replicaset without hash label", []metav1.OwnerReference{ref("ReplicaSet", "web-5d8f7c9b6", &yes)}, nil, owner{"ReplicaSet", "web-5d8f7c9b6"}, true},
		{"replicaset whose name lacks the hash", []metav1.OwnerReference{ref("ReplicaSet", "standalone", &yes)}, hash, owner{"ReplicaSet", "standalone"}, true},
		{"name equal to the hash suffix only", []metav1.OwnerReference{ref("ReplicaSet", "-5d8f7c9b6", &yes)}, hash, owner{"ReplicaSet", "-5d8f7c9b6"}, true},
		{"cronjob via job", []metav1.OwnerReference{ref("Job", "backup-29123456", &yes)}, nil, owner{"CronJob", "backup"}, true},
		{"cronjob with dashes", []metav1.OwnerReference{ref("Job", "nightly-db-backup-29123456", &yes)}, nil, owner{"CronJob", "nightly-db-backup"}, true},
		{"bare job", []metav1.OwnerReference{ref("Job", "migrate", &yes)}, nil, owner{"Job", "migrate"}, true},
		{"job with small number", []metav1.OwnerReference{ref("Job", "migrate-2", &yes)}, nil, owner{"Job", "migrate-2"}, true},
		{"job with non-digit suffix", []metav1.OwnerReference{ref("Job", "backup-manual-x7k", &yes)}, nil, owner{"Job", "backup-manual-x7k"}, true},
		{"job with plus sign", []metav1.OwnerReference{ref("Job", "backup-+29123456", &yes)}, nil, owner{"Job", "backup-+29123456"}, true},
		{"job ending in dash", []metav1.OwnerReference{ref("Job", "backup-", &yes)}, nil, owner{"Job", "backup-"}, true},
		{"statefulset", []metav1.OwnerReference{ref("StatefulSet", "db", &yes)}, map[string]string{"controller-revision-hash": "db-7f"}, owner{"StatefulSet", "db"}, true},
		{"daemonset", []metav1.OwnerReference{ref("DaemonSet", "logagent", &yes)}, nil, owner{"DaemonSet", "logagent"}, true},
		{"custom controller", []metav1.OwnerReference{ref("Rollout", "canary", &yes)}, nil, owner{"Rollout", "canary"}, true},
		{"controller wins over first", []metav1.OwnerReference{ref("ConfigMap", "x", &no), ref("StatefulSet", "db", &yes)}, nil, owner{"StatefulSet", "db"}, true},
		{"first when none is controller", []metav1.OwnerReference{ref("Node", "n1", nil)}, nil, owner{"Node", "n1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := deriveOwner(tc.refs, tc.labels)
			if got != tc.want || ok != tc.ok {
				t.Errorf("deriveOwner = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
