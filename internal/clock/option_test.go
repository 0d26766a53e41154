package clock_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sqspool/sqspool/internal/clock"
)

type fakeOption func() clock.Clock

type unregistered func()

// A package's registered clock option comes back by its type; asking for
// an option type nobody registered is a test's mistake and panics.
func TestOptionByType(t *testing.T) {
	clock.Register(func(c clock.Clock) fakeOption { return func() clock.Clock { return c } })
	m := clock.NewManual(time.Unix(0, 0))
	assert.Same(t, m, clock.Option[fakeOption](m)())
	assert.Panics(t, func() { clock.Option[unregistered](m) })
}
