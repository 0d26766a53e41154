package sink_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README's sink example is sink/internal/readmesnippet, which the build
// compiles: this keeps the two the same, so the README's code compiles as
// shown.
func TestReadmeSinkExampleIsCompiled(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(readme), "## Writing results: `sink`\n")
	require.True(t, ok, "README has the sink section")
	_, rest, ok := strings.Cut(section, "```go\n")
	require.True(t, ok, "the sink section has a go block")
	block, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)

	src, err := os.ReadFile("internal/readmesnippet/snippet.go")
	require.NoError(t, err)
	_, shown, ok := strings.Cut(string(src), "// README begin\n\n")
	require.True(t, ok)
	shown, _, ok = strings.Cut(shown, "\n// README end")
	require.True(t, ok)
	assert.Equal(t, shown, block, "the README's sink block is sink/internal/readmesnippet/snippet.go between its README markers")
}
