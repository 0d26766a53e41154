package sink_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// What depends on an item type is typed by it: the pool's decoder is the
// message type's DecodeBody method, the sink's marshaller and idempotency key
// are methods of its item type, and sink.Pipe ties a handler's result type to
// the sink's. So a mismatch is a compile error, not an error at start. This
// builds the programs in testdata/typecheck in a module of their own
// (offline, from the module cache the repo's build filled): the correct one
// must build, each mismatch must fail with the compiler's message.
func TestTypeMismatchesDoNotCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds programs with the go command")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	sinkDir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := filepath.Join("testdata", "typecheck")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		body, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		pkg := strings.TrimSuffix(e.Name(), ".go.txt")
		if err := os.MkdirAll(filepath.Join(dir, pkg), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, pkg, "main.go"), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goMod := "module example.com/typecheck\n\ngo 1.25.0\n\nrequire (\n" +
		"\tgithub.com/sqspool/sqspool v0.0.0\n\tgithub.com/sqspool/sqspool/sink v0.0.0\n)\n\nreplace (\n" +
		"\tgithub.com/sqspool/sqspool => " + filepath.Dir(sinkDir) + "\n" +
		"\tgithub.com/sqspool/sqspool/sink => " + sinkDir + "\n)\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(goMod), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(pkg string) (string, error) {
		cmd := exec.Command(goBin, "build", "-o", os.DevNull, "./"+pkg)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	if out, err := build("ok"); err != nil {
		t.Fatalf("the well-typed program does not build: %v\n%s", err, out)
	}
	for pkg, want := range map[string]string{
		// A handler's result goes to a sink of another item type.
		"pipemismatch": "does not match",
		// A Pipe handler of one message type where another's is expected.
		"handlermismatch": "cannot use",
	} {
		out, err := build(pkg)
		if err == nil {
			t.Errorf("%s builds; it must not compile", pkg)
			continue
		}
		if !strings.Contains(out, want) {
			t.Errorf("%s: the compiler's message lacks %q:\n%s", pkg, want, out)
		}
	}
}
