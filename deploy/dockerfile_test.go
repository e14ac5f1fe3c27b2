package deploy

import (
	"debug/elf"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The Dockerfile as text, and its build stage without an engine:
// TestDockerfile reads the Dockerfile; TestDockerBuildStage runs the build
// stage's command on the build context .dockerignore leaves and inspects the
// binary the final stage copies. TestImage (image_test.go) builds and runs
// the image in a real engine.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
	line int
}

// stage is one FROM and what follows it.
type stage struct {
	from, name string
	// fromArg names the global ARG the FROM reads (FROM ${BUILD_IMAGE}),
	// "" for a literal; from is then that ARG's default.
	fromArg string
	instrs  []instruction
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// parseDockerfile splits a Dockerfile into stages. It handles comments,
// parser directives and backslash continuations; not heredocs, which the
// Dockerfile does not use. A FROM naming a global ARG (the ARGs before the
// first FROM) reads that ARG's default.
func parseDockerfile(t testing.TB, text string) []stage {
	t.Helper()
	var stages []stage
	var cur *instruction
	var instrs []instruction
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if cur == nil && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur != nil && strings.HasPrefix(line, "#") {
			continue // comment lines inside a continuation are dropped
		}
		cont := strings.HasSuffix(line, "\\")
		line = strings.TrimSuffix(line, "\\")
		if cur == nil {
			cmd, args, _ := strings.Cut(line, " ")
			cur = &instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: i + 1}
		} else {
			cur.args = strings.TrimSpace(cur.args + " " + line)
		}
		if !cont {
			instrs = append(instrs, *cur)
			cur = nil
		}
	}
	if cur != nil {
		t.Fatalf("Dockerfile ends inside a continued instruction (line %d)", cur.line)
	}
	globals := map[string]string{}
	argRef := regexp.MustCompile(`^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$`)
	for _, in := range instrs {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--") })
			s := stage{from: f[0]}
			if m := argRef.FindStringSubmatch(f[0]); m != nil {
				def, ok := globals[m[1]]
				if !ok {
					t.Fatalf("Dockerfile line %d: FROM %s names no global ARG with a default", in.line, f[0])
				}
				s.from, s.fromArg = def, m[1]
			}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile line %d: %s before the first FROM", in.line, in.cmd)
			}
			if name, def, ok := strings.Cut(in.args, "="); ok {
				globals[name] = def
			}
			continue
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	return stages
}

// TestDockerfile: a multi-stage build whose build stage runs `make build`
// (the Makefile's static, -trimpath build), and a final stage with no shell
// (distroless static or scratch), an explicit non-root USER, exec-form
// ENTRYPOINT and CMD, and the binary make build writes.
func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, string(data))
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stage(s), want a build stage and a final stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	t.Run("build stage runs make build", func(t *testing.T) {
		if !strings.HasPrefix(build.from, "docker.io/library/golang:") {
			t.Errorf("build stage FROM %s, want Docker's official golang image, fully qualified (podman resolves no short names without a registries.conf that says how)", build.from)
		}
		runs := build.all("RUN")
		if !slices.ContainsFunc(runs, func(in instruction) bool {
			return regexp.MustCompile(`(^|\s)make build(\s|$)`).MatchString(in.args) && strings.Contains(in.args, "VERSION=${VERSION}")
		}) {
			t.Errorf("no RUN of the build stage runs `make build VERSION=${VERSION}`: %v", runs)
		}
		if !slices.ContainsFunc(build.all("ARG"), func(in instruction) bool { return strings.HasPrefix(in.args, "VERSION") }) {
			t.Error("the build stage has no ARG VERSION (make image passes --build-arg VERSION)")
		}
		// What make build runs: the flags the issue names.
		makeN, err := run(root, nil, nil, "make", "-n", "build", "VERSION=x")
		if err != nil {
			t.Skipf("make -n build: %v", err)
		}
		for _, flag := range []string{"CGO_ENABLED=0", "go build", "-trimpath", "-s -w", "-X main.version=x", "-o bin/logagent", "./cmd/logagent"} {
			if !strings.Contains(makeN, flag) {
				t.Errorf("make build runs %q, which lacks %q", strings.TrimSpace(makeN), flag)
			}
		}
	})

	t.Run("base images are build arguments pinned by digest", func(t *testing.T) {
		// deploy/image/standins.sh reads these two defaults (and the Go
		// version and Debian suite from BUILD_IMAGE's tag).
		digest := regexp.MustCompile(`^[a-z0-9./-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$`)
		for _, s := range []struct {
			st  stage
			arg string
		}{{build, "BUILD_IMAGE"}, {final, "RUNTIME_IMAGE"}} {
			if s.st.fromArg != s.arg {
				t.Errorf("stage FROM %q: want FROM ${%s}", s.st.from, s.arg)
			}
			if !digest.MatchString(s.st.from) {
				t.Errorf("ARG %s=%s: want <image>:<tag>@sha256:<digest>", s.arg, s.st.from)
			}
		}
		if !regexp.MustCompile(`^docker\.io/library/golang:\d+\.\d+(\.\d+)?-[a-z]+@`).MatchString(build.from) {
			t.Errorf("BUILD_IMAGE %s: want golang:<go version>-<debian suite>@... (the stand-in is made from those)", build.from)
		}
		if tag := regexp.MustCompile(`/golang:(\d+\.\d+\.\d+)-`).FindStringSubmatch(build.from); tag != nil {
			if gomod, err := os.ReadFile(filepath.Join(root, "go.mod")); err == nil {
				m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
				if m == nil {
					t.Fatal("go.mod has no go line")
				}
				if !versionAtLeast(tag[1], string(m[1])) {
					t.Errorf("BUILD_IMAGE's Go %s is older than go.mod's go %s", tag[1], m[1])
				}
			}
		}
	})

	t.Run("final stage has no shell", func(t *testing.T) {
		if final.from != "scratch" && !strings.HasPrefix(final.from, "gcr.io/distroless/static") {
			t.Errorf("final stage FROM %s: want scratch or gcr.io/distroless/static (no shell)", final.from)
		}
		if runs := final.all("RUN"); len(runs) > 0 {
			t.Errorf("the final stage has RUN instructions, which need a shell: %v", runs)
		}
		for _, cmd := range []string{"ENTRYPOINT", "CMD", "HEALTHCHECK", "SHELL"} {
			for _, in := range final.all(cmd) {
				var argv []string
				if cmd == "SHELL" || json.Unmarshal([]byte(in.args), &argv) != nil {
					t.Errorf("line %d: %s %s is in shell form, which needs /bin/sh", in.line, cmd, in.args)
				}
			}
		}
		if len(final.all("ENTRYPOINT")) != 1 {
			t.Errorf("the final stage has %d ENTRYPOINTs, want 1", len(final.all("ENTRYPOINT")))
		}
	})

	t.Run("final stage runs as an explicit non-root user", func(t *testing.T) {
		users := final.all("USER")
		if len(users) != 1 {
			t.Fatalf("final stage has %d USER instructions, want 1", len(users))
		}
		// Numeric, so that Kubernetes' runAsNonRoot can verify it.
		m := regexp.MustCompile(`^(\d+)(:(\d+))?$`).FindStringSubmatch(users[0].args)
		if m == nil || m[1] == "0" {
			t.Errorf("USER %s: want a numeric non-root uid[:gid]", users[0].args)
		}
	})

	t.Run("final stage copies what make build writes", func(t *testing.T) {
		workdir := ""
		for _, in := range build.all("WORKDIR") {
			workdir = in.args
		}
		want := path.Join(workdir, "bin/logagent")
		copies := final.all("COPY")
		ok := slices.ContainsFunc(copies, func(in instruction) bool {
			f := strings.Fields(in.args)
			return slices.Contains(f, "--from="+build.name) && slices.Contains(f, want)
		})
		if build.name == "" || !ok {
			t.Errorf("the final stage does not COPY --from=%s %s: %v", build.name, want, copies)
		}
		ep := final.all("ENTRYPOINT")
		if len(ep) == 1 && len(copies) > 0 {
			dest := strings.Fields(copies[0].args)
			if !strings.Contains(ep[0].args, dest[len(dest)-1]) {
				t.Errorf("ENTRYPOINT %s does not run the copied %s", ep[0].args, dest[len(dest)-1])
			}
		}
	})
}

// TestDockerBuildStage does what the build stage does, without Docker: it
// copies the build context (the repository minus .dockerignore's patterns)
// to a temporary folder, runs `make build VERSION=...` there, and checks the
// binary: statically linked (no ELF interpreter, no shared libraries), and
// carrying the version.
func TestDockerBuildStage(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: builds the agent with make build (not run under -short)")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make not found on $PATH")
	}
	root := repoRoot(t)
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	patterns := parseDockerignore(string(ignore))
	ctxDir := filepath.Join(t.TempDir(), "context")
	copied := copyContext(t, root, ctxDir, patterns)
	for _, p := range []string{".git", ".cache", "bin", "deploy", "test"} {
		if slices.ContainsFunc(copied, func(c string) bool { return c == p || strings.HasPrefix(c, p+"/") }) {
			t.Errorf(".dockerignore lets %s into the build context", p)
		}
	}
	t.Logf("build context: %d files", len(copied))

	if out, err := run(ctxDir, []string{"GOFLAGS=-mod=readonly"}, nil, "make", "build", "VERSION=deploytest"); err != nil {
		t.Fatalf("make build in the build context: %v\n%s", err, out)
	}
	bin := filepath.Join(ctxDir, "bin", "logagent")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("make build's output is not an ELF file: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("bin/logagent has a %v program header: it is dynamically linked", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("bin/logagent needs shared libraries %v (%v)", libs, err)
	}
	if syms, _ := f.Symbols(); len(syms) > 0 {
		t.Errorf("bin/logagent has %d symbols: -s -w should strip them", len(syms))
	}
	if out, err := run(ctxDir, nil, nil, "file", bin); err == nil && !strings.Contains(out, "statically linked") {
		t.Errorf("file(1) does not call bin/logagent static: %s", out)
	}
	out, err := run(ctxDir, nil, nil, bin, "version")
	if err != nil || strings.TrimSpace(out) != "logagent deploytest" {
		t.Errorf("bin/logagent version: %q, %v; want \"logagent deploytest\"", out, err)
	}
}

// ignorePattern is one .dockerignore line.
type ignorePattern struct {
	re     *regexp.Regexp
	negate bool
}

// parseDockerignore compiles .dockerignore patterns with Docker's meaning:
// paths relative to the context root, `*` and `?` within one path element,
// `**` across any number of them, `!` re-including, the last match winning.
func parseDockerignore(text string) []ignorePattern {
	var out []ignorePattern
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := ignorePattern{}
		if strings.HasPrefix(line, "!") {
			p.negate, line = true, strings.TrimSpace(line[1:])
		}
		line = strings.TrimPrefix(path.Clean("/"+line), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		// A pattern naming a folder excludes what is in it.
		re.WriteString("(/.*)?$")
		p.re = regexp.MustCompile(re.String())
		out = append(out, p)
	}
	return out
}

func ignored(patterns []ignorePattern, rel string) bool {
	ex := false
	for _, p := range patterns {
		if p.re.MatchString(rel) {
			ex = !p.negate
		}
	}
	return ex
}

// copyContext copies the files of root that the patterns leave in, and
// returns their relative paths.
func copyContext(t testing.TB, root, dst string, patterns []ignorePattern) []string {
	t.Helper()
	negations := slices.ContainsFunc(patterns, func(p ignorePattern) bool { return p.negate })
	var copied []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return os.MkdirAll(dst, 0o755)
		}
		if ignored(patterns, rel) {
			if d.IsDir() && !negations {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			copied = append(copied, rel)
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			copied = append(copied, rel)
			return copyFile(p, target)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copy the build context: %v", err)
	}
	return copied
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestDockerignorePatterns: the .dockerignore matcher means what Docker means.
func TestDockerignorePatterns(t *testing.T) {
	ps := parseDockerignore("# comment\n.git\n/bin\n**/*_test.go\ndeploy\n*.out\n!keep.out\n")
	for rel, want := range map[string]bool{
		".git": true, ".git/config": true, "bin/logagent": true, "bin": true,
		"collector/cri_test.go": true, "x_test.go": true, "collector/cri.go": false,
		"deploy/kubernetes/daemonset.yaml": true, "cover.out": true, "keep.out": false,
		"sub/cover.out": false, "go.mod": false, "cmd/logagent/main.go": false, ".gitignore": false,
	} {
		if got := ignored(ps, rel); got != want {
			t.Errorf("ignored(%q) = %v, want %v", rel, got, want)
		}
	}
}

// versionAtLeast compares dotted Go versions: 1.26.8 >= 1.26.0.
func versionAtLeast(v, min string) bool {
	a, b := strings.Split(v, "."), strings.Split(min, ".")
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y int
		if i < len(a) {
			x, _ = strconv.Atoi(a[i])
		}
		if i < len(b) {
			y, _ = strconv.Atoi(b[i])
		}
		if x != y {
			return x > y
		}
	}
	return true
}
