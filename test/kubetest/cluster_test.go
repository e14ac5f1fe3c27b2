package kubetest

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestClusterRBAC proves the cluster is real and enforces RBAC: a
// ServiceAccount may not list pods until a RoleBinding allows it, and then
// only in that namespace.
func TestClusterRBAC(t *testing.T) {
	c := Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	v, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	// The build's version link flags; without them clients that check
	// versions see v0.0.0-master.
	if v.GitVersion != "v1.37.2" {
		t.Errorf("server version = %q, want v1.37.2", v.GitVersion)
	}

	const ns, sa = "kubetest-rbac", "reader"
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns, Labels: map[string]string{"app": "demo"}},
		Spec: corev1.PodSpec{
			NodeName:   "node-a", // no scheduler: the pod must be bound on create
			Containers: []corev1.Container{{Name: "app", Image: "busybox:1.36"}},
		},
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}

	saPath, saCfg := c.ServiceAccountKubeconfig(t, ns, sa)
	saClient, err := kubernetes.NewForConfig(saCfg)
	if err != nil {
		t.Fatalf("ServiceAccount clientset: %v", err)
	}
	if _, err := saClient.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list pods as %s before any RoleBinding: err = %v, want Forbidden", sa, err)
	}
	if out, err := c.Kubectl(t, "--kubeconfig="+saPath, "auth", "can-i", "list", "pods", "-n", ns); err == nil || strings.TrimSpace(out) != "no" {
		t.Fatalf("kubectl auth can-i as %s before RoleBinding: out=%q err=%v, want \"no\" and exit 1", sa, out, err)
	}

	if _, err := c.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Role: %v", err)
	}
	if _, err := c.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create RoleBinding: %v", err)
	}

	// The RBAC authorizer reads bindings from an informer: poll until the
	// binding takes effect.
	var pods *corev1.PodList
	for {
		pods, err = saClient.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			break
		}
		if !apierrors.IsForbidden(err) {
			t.Fatalf("list pods as %s after RoleBinding: %v", sa, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("list pods as %s still forbidden after RoleBinding: %v", sa, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if len(pods.Items) != 1 || pods.Items[0].Name != "app" || pods.Items[0].Spec.NodeName != "node-a" {
		t.Fatalf("pods seen by %s = %+v, want one pod app on node-a", sa, pods.Items)
	}
	if _, err := saClient.CoreV1().Pods(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list pods as %s in namespace default: err = %v, want Forbidden (Role is namespaced)", sa, err)
	}

	out, err := c.Kubectl(t, "get", "pod", "app", "-n", ns, "-o", "jsonpath={.spec.nodeName}")
	if err != nil || out != "node-a" {
		t.Errorf("kubectl get pod as admin: out=%q err=%v, want node-a", out, err)
	}
	out, err = c.Kubectl(t, "--kubeconfig="+saPath, "get", "pods", "-n", ns, "-o", "name")
	if err != nil || strings.TrimSpace(out) != "pod/app" {
		t.Errorf("kubectl get pods as %s: out=%q err=%v, want pod/app", sa, out, err)
	}
}
