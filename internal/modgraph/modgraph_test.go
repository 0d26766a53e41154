package modgraph

import (
	"go/version"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// maxModules bounds `go list -m all` of a user's module that imports only
// the root package: the user's module, sqspool, 15 AWS SDK modules and
// smithy-go (what any SQS consumer with the default AWS config needs), and
// three test-only modules of sqspool's own tests (testify, the YAML module
// testify needs, goleak), which go list -m all shows to users too. The
// DynamoDB sink is a module of its own (sink/) so that its SDK modules are
// not among them.
const maxModules = 20

// allowed says which modules the root module may bring to its users: the
// AWS SDK, smithy-go, and the test-only modules above. Anything else (an
// observability SDK, a metrics client) belongs in a module of its own, as
// otelsqspool is.
func allowed(path string) bool {
	switch path {
	case "github.com/aws/aws-sdk-go-v2", "github.com/aws/smithy-go",
		"github.com/stretchr/testify", "go.yaml.in/yaml/v3", "go.uber.org/goleak":
		return true
	}
	return strings.HasPrefix(path, "github.com/aws/aws-sdk-go-v2/")
}

// A new user's module: the README quickstart (examples/quickstart/main.go)
// in a module that requires only sqspool, replaced by this checkout. It is
// built and listed offline (GOPROXY=off), from the module cache that the
// repo's own build has filled, with the toolchain running this test, so
// that under scripts/test's minimum-Go step it also proves the quickstart
// builds with the Go version of the go line.
func TestQuickstartModuleGraph(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	rootMod := read(t, filepath.Join(root, "go.mod"))
	goLine := regexp.MustCompile(`(?m)^go \S+$`).FindString(rootMod)
	if goLine == "" {
		t.Fatal("no go line in go.mod")
	}

	dir := t.TempDir()
	write(t, filepath.Join(dir, "main.go"), read(t, filepath.Join(root, "examples", "quickstart", "main.go")))
	write(t, filepath.Join(dir, "go.mod"), "module example.com/quickstart\n\n"+goLine+
		"\n\nrequire github.com/sqspool/sqspool v0.0.0\n\nreplace github.com/sqspool/sqspool => "+root+"\n")
	// Every checksum the user's build needs is in sqspool's go.sum.
	write(t, filepath.Join(dir, "go.sum"), read(t, filepath.Join(root, "go.sum")))

	goCmd := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	goCmd("build", "-o", os.DevNull, ".")
	mods := strings.Fields(goCmd("list", "-m", "-f", "{{.Path}}", "all"))

	t.Logf("%d modules in go list -m all:\n%s", len(mods), strings.Join(mods, "\n"))
	for _, m := range mods[1:] { // mods[0] is the user's module
		if m != "github.com/sqspool/sqspool" && !allowed(m) {
			t.Errorf("importing sqspool brings %s to its users; only the AWS SDK and smithy-go belong in the root module", m)
		}
	}
	if len(mods) > maxModules {
		t.Errorf("a module with the quickstart lists %d modules, want at most %d", len(mods), maxModules)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The README's first commands run from the repo root in a fresh clone. The
// examples are a module of their own, so `go run ./examples/pipeline` works
// there only through go.work: each go run in the README's first sh block
// must name a main package that the workspace resolves, offline.
func TestReadmeGoRunCommandsResolve(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	// The examples need a newer Go than the library (OpenTelemetry's floor);
	// under scripts/test's minimum-Go step this toolchain is older than the
	// workspace's, and fetching a newer one would take the network.
	workGo := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(read(t, filepath.Join(root, "go.work")))
	if workGo == nil {
		t.Fatal("no go line in go.work")
	}
	if version.Compare(runtime.Version(), "go"+workGo[1]) < 0 {
		t.Skipf("go.work needs go %s; running %s", workGo[1], runtime.Version())
	}
	_, rest, ok := strings.Cut(read(t, filepath.Join(root, "README.md")), "```sh\n")
	if !ok {
		t.Fatal("README has no sh block")
	}
	block, _, _ := strings.Cut(rest, "```")
	var pkgs []string
	for _, m := range regexp.MustCompile(`(?m)^go run (\./\S+)`).FindAllStringSubmatch(block, -1) {
		pkgs = append(pkgs, m[1])
	}
	if len(pkgs) == 0 {
		t.Fatalf("no go run command in the README's first sh block:\n%s", block)
	}
	cmd := exec.Command(goBin, append([]string{"list", "-f", "{{.Name}}"}, pkgs...)...)
	cmd.Dir = root
	// scripts/test sets GOWORK=off for its per-module steps; a user's clone
	// has the default, which finds go.work in the root.
	cmd.Env = append(os.Environ(), "GOWORK="+filepath.Join(root, "go.work"), "GOPROXY=off", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s from the repo root: %v\n%s", strings.Join(pkgs, " "), err, out)
	}
	for i, name := range strings.Fields(string(out)) {
		if name != "main" {
			t.Errorf("%s is package %s, not a command", pkgs[i], name)
		}
	}
}
