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

// RetryAfterError asks for the message to be delivered again after Delay,
// whatever the pool's backoff says. Return it with RetryAfter.
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

// RetryAfter wraps err so that the message comes back after d.
func RetryAfter(d time.Duration, err error) error { return &RetryAfterError{Delay: d, Err: err} }

func (e *RetryAfterError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("sqspool: retry after %v", e.Delay)
	}
	return fmt.Sprintf("%v (retry after %v)", e.Err, e.Delay)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

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
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return max(ra.Delay, 0), true, false
	}
	if b == nil {
		return 0, false, false
	}
	return b(max(receiveCount, 1)), true, false
}
