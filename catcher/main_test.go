package catcher

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must leave no goroutine behind: the handler's promise after
// Close, and the test's own after its requests are answered.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
