package sqspool

import (
	"errors"
	"fmt"
	"time"

	"github.com/sqspool/sqspool/internal/backoff"
)

// ErrNoRetry marks a handler error as final: the message will never succeed,
// so it is deleted (after the error hook saw it) instead of coming back.
// Wrap it, or use NoRetry.
var ErrNoRetry = errors.New("sqspool: do not retry")

// NoRetry marks err as final; see ErrNoRetry.
func NoRetry(err error) error {
	if err == nil {
		return ErrNoRetry
	}
	return fmt.Errorf("%w: %w", ErrNoRetry, err)
}

// RetryAfter wraps err so that the message comes back after d, whatever the
// pool's backoff says. RetryDelay reads d back.
func RetryAfter(d time.Duration, err error) error { return &retryAfterError{delay: d, err: err} }

// RetryDelay reports the delay that RetryAfter put in err's chain, and
// whether there is one: how a test (or a wrapper around a handler) checks what
// a handler asked for.
func RetryDelay(err error) (time.Duration, bool) {
	var ra *retryAfterError
	if !errors.As(err, &ra) {
		return 0, false
	}
	return ra.delay, true
}

// retryAfterError is RetryAfter's error; only RetryAfter makes one and only
// RetryDelay reads it, so there is one way to do each.
type retryAfterError struct {
	delay time.Duration
	err   error
}

func (e *retryAfterError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("sqspool: retry after %v", e.delay)
	}
	return fmt.Sprintf("%v (retry after %v)", e.err, e.delay)
}

func (e *retryAfterError) Unwrap() error { return e.err }

// Backoff gives the delay before a failed message is delivered again, from
// the number of times it has been received (1 on the first failure).
type Backoff func(receiveCount int) time.Duration

// ExponentialBackoff doubles the delay with each receive, from base up to
// ceiling, with "equal jitter" (half fixed, half random) so that messages that
// failed together do not return together.
func ExponentialBackoff(base, ceiling time.Duration) Backoff {
	b := backoff.Policy{Base: base, Max: ceiling, Equal: true}
	return func(receiveCount int) time.Duration { return b.Delay(max(receiveCount, 1) - 1) }
}

// retryDelay decides when a failed message should come back. ok is false
// when the error is final (ErrNoRetry).
func retryDelay(err error, receiveCount int, b Backoff) (delay time.Duration, set, final bool) {
	if errors.Is(err, ErrNoRetry) {
		return 0, false, true
	}
	if d, ok := RetryDelay(err); ok {
		return max(d, 0), true, false
	}
	if b == nil {
		return 0, false, false
	}
	return b(max(receiveCount, 1)), true, false
}
