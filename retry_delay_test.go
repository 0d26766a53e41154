package sqspool

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// RetryAfter is the one way to ask for a delay and RetryDelay the one way
// to read it, through any wrapping.
func TestRetryDelayReadsRetryAfter(t *testing.T) {
	cause := errors.New("warehouse busy")
	err := fmt.Errorf("order 7: %w", RetryAfter(3*time.Second, cause))
	d, ok := RetryDelay(err)
	assert.True(t, ok)
	assert.Equal(t, 3*time.Second, d)
	assert.ErrorIs(t, err, cause)

	_, ok = RetryDelay(cause)
	assert.False(t, ok)
	_, ok = RetryDelay(nil)
	assert.False(t, ok)
}

// The package's sentinel errors say where they come from.
func TestSentinelErrorsArePrefixed(t *testing.T) {
	for _, err := range []error{ErrNoRetry, ErrNotSNSEnvelope} {
		assert.True(t, strings.HasPrefix(err.Error(), "sqspool: "), err.Error())
	}
}
