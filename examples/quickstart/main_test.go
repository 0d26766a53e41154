package main

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runMainEnv makes the test binary run the quickstart's main instead of its
// tests, so that a test can run the program as a user does.
const runMainEnv = "SQSPOOL_QUICKSTART_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// go run ./examples/quickstart on a machine without AWS: it consumes the
// three orders of the embedded in-memory SQS through the real SDK, and
// exits 0 on SIGINT.
func TestQuickstartRunsWithoutAWS(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, runMainEnv+"=1")
	out, err := cmd.StderrPipe() // the log package writes to stderr
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	lines := bufio.NewScanner(out)
	var orders []string
	for len(orders) < 3 && lines.Scan() {
		t.Log(lines.Text())
		if _, id, ok := strings.Cut(lines.Text(), " order "); ok {
			orders = append(orders, id)
		}
	}
	assert.ElementsMatch(t, []string{"A-1", "A-2", "A-3"}, orders)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	for lines.Scan() {
		t.Log(lines.Text())
	}
	assert.NoError(t, cmd.Wait(), "exit status after SIGINT")
}
