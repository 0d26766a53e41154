package sqspool_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README's quickstart is examples/quickstart/main.go, which the build
// compiles: this keeps the two the same, and the quickstart short.
func TestReadmeQuickstartIsTheCompiledExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(readme), "```go\n")
	require.True(t, ok, "README has a go block")
	block, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	main, err := os.ReadFile("examples/quickstart/main.go")
	require.NoError(t, err)
	assert.Equal(t, string(main), block, "the README's first go block is examples/quickstart/main.go")

	code := 0
	inImport := false
	for _, line := range strings.Split(block, "\n") {
		l := strings.TrimSpace(line)
		switch {
		case l == "" || strings.HasPrefix(l, "//") || strings.HasPrefix(l, "package "):
		case l == "import (":
			inImport = true
		case inImport:
			inImport = l != ")"
		default:
			code++
		}
	}
	assert.LessOrEqual(t, code, 15, "lines of code in the quickstart, not counting package, import, blank and comment lines")
}
