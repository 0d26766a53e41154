package faults

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

var longFlag = flag.Bool("long", false, "run the long variants (also SQSPOOL_LONG=1)")

// long reports whether the long variants run.
func long() bool {
	on, _ := strconv.ParseBool(os.Getenv("SQSPOOL_LONG"))
	return on || *longFlag
}

// pick returns short, or long in the long mode.
func pick[T any](short, longV T) T {
	if long() {
		return longV
	}
	return short
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	removeChildBuild()
	if code == 0 {
		// No goroutine of any pool, sink, batcher or fake outlives the
		// tests. The SDK clients' idle keep-alive connections (emulator
		// tests) are the only goroutines allowed to stay.
		if err := goleak.Find(
			goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// figures logs a block of figures for the report (shown with -v).
func figures(t *testing.T, title string, lines ...string) {
	t.Helper()
	t.Log("\n== " + title + "\n   " + strings.Join(lines, "\n   "))
}
