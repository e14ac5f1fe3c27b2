package kubetest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// tokenLifetime outlives any test; the apiserver caps nothing by default.
const tokenLifetime = 2 * time.Hour

// ServiceAccountKubeconfig returns a kubeconfig file and rest.Config that
// authenticate as ServiceAccount namespace/name with a bearer token from the
// TokenRequest API, and no client certificate (which would win over the
// token). The ServiceAccount is created if it does not exist; the namespace
// must. What the ServiceAccount may do is up to the test's RBAC objects.
func (c *Cluster) ServiceAccountKubeconfig(t testing.TB, namespace, name string) (path string, cfg *rest.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sas := c.Client.CoreV1().ServiceAccounts(namespace)
	_, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("kubetest: create ServiceAccount %s/%s: %v", namespace, name, err)
	}
	seconds := int64(tokenLifetime / time.Second)
	tr, err := sas.CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: request token for ServiceAccount %s/%s: %v", namespace, name, err)
	}
	token := tr.Status.Token
	if token == "" {
		t.Fatalf("kubetest: TokenRequest for ServiceAccount %s/%s returned no token", namespace, name)
	}

	path = filepath.Join(t.TempDir(), fmt.Sprintf("sa-%s-%s.kubeconfig", namespace, name))
	user := fmt.Sprintf("system:serviceaccount:%s:%s", namespace, name)
	if err := writeKubeconfig(path, c.Server, c.pki.caCert, user, credentials{token: token}); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	cfg = &rest.Config{
		Host:            c.Server,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.pki.caCert},
		QPS:             c.Config.QPS,
		Burst:           c.Config.Burst,
	}
	return path, cfg
}
