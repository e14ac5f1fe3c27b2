package kubetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// kubectlTimeout bounds one kubectl run so a hung command fails the test
// instead of eating go test's whole timeout.
const kubectlTimeout = 2 * time.Minute

// Kubectl runs the built kubectl against the admin kubeconfig and returns its
// stdout. A non-nil error carries the exit status and stderr. A later
// --kubeconfig in args overrides the admin one (e.g. one from
// ServiceAccountKubeconfig). Fails t if kubectl is missing.
func (c *Cluster) Kubectl(t testing.TB, args ...string) (stdout string, err error) {
	t.Helper()
	bin := c.Bin("kubectl")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("kubetest: kubectl: %v (build it with `%s`)", err, BuildCommand)
	}
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	// HOME: keep kubectl from reading or writing the developer's ~/.kube (config, cache).
	cmd.Env = append(cmd.Environ(), "KUBECONFIG="+c.Kubeconfig, "HOME="+c.Dir)
	var out, errOut bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}
