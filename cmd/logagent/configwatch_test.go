package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// configMapVolume lays out files as the kubelet does in a ConfigMap (or
// projected) volume, and updates them as its AtomicWriter does: the files
// live in a timestamped folder, `..data` links to it, and each file's name
// at the top is a link through `..data`. An update writes a new
// timestamped folder, links `..data_tmp` to it, renames `..data_tmp` over
// `..data` (the one atomic step), and removes the old folder; the
// top-level links never change.
type configMapVolume struct {
	dir     string
	current string // the timestamped folder ..data points to
}

func newConfigMapVolume(t *testing.T, dir string, files map[string]string) *configMapVolume {
	t.Helper()
	v := &configMapVolume{dir: dir}
	v.update(t, files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// path is where a file of the volume is read, through the links.
func (v *configMapVolume) path(name string) string { return filepath.Join(v.dir, name) }

func (v *configMapVolume) update(t *testing.T, files map[string]string) {
	t.Helper()
	ts, err := os.MkdirTemp(v.dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05."))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(ts, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ts, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if v.current != "" {
		if err := os.RemoveAll(v.current); err != nil {
			t.Fatal(err)
		}
	}
	v.current = ts
}

// TestConfigWatch: the watch reports each way a configuration file is
// changed in place: the kubelet's swap of a ConfigMap volume's ..data link,
// an editor renaming a new file over the old one, and a plain write.
func TestConfigWatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, dir string) (path string)
		change func(t *testing.T, dir string, content string)
	}{
		{"kubelet ConfigMap ..data swap",
			func(t *testing.T, dir string) string {
				return newConfigMapVolume(t, dir, map[string]string{"config.yaml": "v: 0\n"}).path("config.yaml")
			},
			func(t *testing.T, dir string, content string) {
				// The volume is rebuilt from its folder's state.
				v := &configMapVolume{dir: dir}
				target, err := os.Readlink(filepath.Join(dir, "..data"))
				if err != nil {
					t.Fatal(err)
				}
				v.current = filepath.Join(dir, target)
				v.update(t, map[string]string{"config.yaml": content})
			}},
		{"editor renames a new file over it",
			func(t *testing.T, dir string) string {
				p := filepath.Join(dir, "config.yaml")
				os.WriteFile(p, []byte("v: 0\n"), 0o644)
				return p
			},
			func(t *testing.T, dir string, content string) {
				tmp := filepath.Join(dir, ".config.yaml.swp")
				if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, filepath.Join(dir, "config.yaml")); err != nil {
					t.Fatal(err)
				}
			}},
		{"written in place",
			func(t *testing.T, dir string) string {
				p := filepath.Join(dir, "config.yaml")
				os.WriteFile(p, []byte("v: 0\n"), 0o644)
				return p
			},
			func(t *testing.T, dir string, content string) {
				if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := tc.setup(t, dir)
			var calls atomic.Int64
			seen := make(chan string, 16)
			w := configWatch{path: path, debounce: 20 * time.Millisecond, poll: time.Hour, log: slog.New(slog.DiscardHandler)}
			ctx := t.Context()
			go w.run(ctx, func() {
				calls.Add(1)
				seen <- fileHash(path)
			})
			<-seen // the call at the start
			for i := 1; i <= 3; i++ {
				content := "v: " + string(rune('0'+i)) + "\n"
				tc.change(t, dir, content)
				want := fileHash(path)
				deadline := time.After(10 * time.Second)
			wait:
				for {
					select {
					case h := <-seen:
						if h == want {
							break wait
						}
					case <-deadline:
						t.Fatalf("change %d: not reported (calls %d)", i, calls.Load())
					}
				}
				if got, _ := os.ReadFile(path); string(got) != content {
					t.Fatalf("reading %s through its links: %q, want %q", path, got, content)
				}
			}
		})
	}
}

// TestConfigWatchPolls: where the folder cannot be watched (here: it does
// not exist yet), the file is read every poll interval instead.
func TestConfigWatchPolls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "not-yet", "config.yaml")
	seen := make(chan string, 16)
	w := configWatch{path: path, debounce: 10 * time.Millisecond, poll: 20 * time.Millisecond, log: slog.New(slog.DiscardHandler)}
	go w.run(t.Context(), func() { seen <- fileHash(path) })
	<-seen
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("v: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := fileHash(path)
	deadline := time.After(10 * time.Second)
	var got []string
	for {
		select {
		case h := <-seen:
			got = append(got, h)
			if h == want {
				return
			}
		case <-deadline:
			t.Fatalf("the new file was not reported: %q, want %q", got, want)
		}
	}
}
