package kubetest

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// AssetsEnv names the environment variable that overrides the folder holding
// the tool binaries (kube-apiserver, etcd, kubectl, helm).
const AssetsEnv = "LOGAGENT_KUBE_ASSETS"

// BuildCommand is what to run to build the missing binaries.
const BuildCommand = "make tools"

// mainModule is the module path of the repository root; it tells the root
// apart from the tools modules under test/tools, which have their own go.mod.
const mainModule = "github.com/logagent/logagent"

// AssetsDir returns the folder holding the tool binaries: $LOGAGENT_KUBE_ASSETS
// if set, else <repo>/.cache/tools/bin where test/tools/build.sh links them.
func AssetsDir() (string, error) {
	if dir := os.Getenv(AssetsEnv); dir != "" {
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	root, err := repoRoot(wd)
	if err != nil {
		return "", fmt.Errorf("find tool binaries (set %s to their folder): %w", AssetsEnv, err)
	}
	return filepath.Join(root, ".cache", "tools", "bin"), nil
}

// repoRoot walks up from dir to the folder whose go.mod declares mainModule.
// Tests run in their package's folder, so this finds the checkout they belong
// to (-trimpath leaves no source paths to use instead).
func repoRoot(dir string) (string, error) {
	for d := dir; ; {
		mod, err := modulePath(filepath.Join(d, "go.mod"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if mod == mainModule {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod of module %s in %s or above", mainModule, dir)
		}
		d = parent
	}
}

// modulePath returns the module path declared in a go.mod file.
func modulePath(gomod string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read %s: %w", gomod, err)
	}
	return "", nil
}

// Bin returns the path of the named tool binary (kube-apiserver, etcd,
// kubectl, helm), or an error that says how to build it.
func Bin(name string) (string, error) {
	dir, err := AssetsDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%s not found in %s: build it with `%s` (test/tools/build.sh) or set %s to its folder: %w",
			name, dir, BuildCommand, AssetsEnv, err)
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file: rebuild with `%s`", path, BuildCommand)
	}
	return path, nil
}

// RequireBin is Bin for tests that need a tool without a cluster (helm
// template, say): it fails the test, naming the build command, if the binary
// is missing, and skips under -short like Start.
func RequireBin(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("kubetest: skipping, needs the %s binary (not run under -short)", name)
	}
	path, err := Bin(name)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return path
}
