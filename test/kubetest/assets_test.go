package kubetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBin(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kubectl"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "helm"), []byte("not executable"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(AssetsEnv, dir)

	tests := []struct {
		name    string
		wantErr string // substring; "" means success
	}{
		{"kubectl", ""},
		{"kube-apiserver", "make tools"},
		{"helm", "not an executable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, err := Bin(tc.name)
			if tc.wantErr == "" {
				if err != nil || path != filepath.Join(dir, tc.name) {
					t.Fatalf("Bin(%q) = %q, %v; want %q", tc.name, path, err, filepath.Join(dir, tc.name))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Bin(%q) error = %v, want one mentioning %q", tc.name, err, tc.wantErr)
			}
		})
	}
}

// TestAssetsDirDefault: without the override, binaries are looked for in
// <repo>/.cache/tools/bin, where test/tools/build.sh links them.
func TestAssetsDirDefault(t *testing.T) {
	t.Setenv(AssetsEnv, "")
	dir, err := AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("../..") // this package is test/kubetest
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, ".cache", "tools", "bin"); dir != want {
		t.Errorf("AssetsDir() = %q, want %q", dir, want)
	}
}

func TestRepoRootSkipsToolsModules(t *testing.T) {
	root := t.TempDir()
	write := func(path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "go.mod"), "// c\nmodule github.com/logagent/logagent\n\ngo 1.26.0\n")
	write(filepath.Join(root, "test/tools/kube/go.mod"), "module github.com/logagent/logagent/test/tools/kube\n")
	got, err := repoRoot(filepath.Join(root, "test/tools/kube"))
	if err != nil || got != root {
		t.Fatalf("repoRoot = %q, %v; want %q", got, err, root)
	}
	if _, err := repoRoot(t.TempDir()); err == nil {
		t.Error("repoRoot outside any checkout: want an error")
	}
}
