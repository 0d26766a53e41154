// Package backoff is the module's one retry backoff: capped exponential,
// with jitter drawn from a source that tests can seed, and the one list of
// the error codes with which AWS says "slow down".
package backoff

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
)

// Source draws jitter: Int64N returns a uniform value in [0, n). It must be
// safe for concurrent use.
type Source interface {
	Int64N(n int64) int64
}

// global is math/rand/v2's top-level source.
type global struct{}

func (global) Int64N(n int64) int64 { return rand.Int64N(n) }

// Global is the default source: math/rand/v2's, seeded at random.
var Global Source = global{}

// Seeded returns a source whose draws follow from seed, for replays. Draws
// made concurrently come in the order the callers take turns.
func Seeded(seed uint64) Source {
	return &seeded{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

type seeded struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (s *seeded) Int64N(n int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.Int64N(n)
}

// Policy is a capped exponential backoff: before retry n (from 0) the
// ceiling is min(Max, Base·2ⁿ).
type Policy struct {
	Base, Max time.Duration
	// Equal takes half the ceiling fixed and half at random ("equal
	// jitter"): a floor for delays that must not come back early.
	// Otherwise the delay is at random in (0, ceiling] ("full jitter"),
	// which spreads retries that failed together furthest apart.
	Equal bool
	// Jitter is the source of the random part; nil means Global.
	Jitter Source
}

// Ceiling is the longest delay before retry n.
func (p Policy) Ceiling(n int) time.Duration {
	c := p.Base
	for i := 0; i < n && c < p.Max; i++ {
		if c > p.Max/2 {
			return p.Max
		}
		c *= 2
	}
	return min(c, p.Max)
}

// Delay is the delay before retry n (from 0). Full jitter never returns 0:
// a zero timer would not show on a manual clock.
func (p Policy) Delay(n int) time.Duration {
	src := p.Jitter
	if src == nil {
		src = Global
	}
	c := p.Ceiling(n)
	if c <= 0 {
		return 0
	}
	if p.Equal {
		half := c / 2
		if half <= 0 {
			return c
		}
		return half + time.Duration(src.Int64N(int64(half)+1))
	}
	return time.Duration(src.Int64N(int64(c))) + 1
}

// sqsThrottleCodes are SQS's and KMS's "slow down" codes that the SDK's
// list does not carry (SQS's query-compatible form among them).
var sqsThrottleCodes = []string{"AWS.SimpleQueueService.RequestThrottled", "KmsThrottled"}

// throttleCodes are the SDK's throttle codes plus sqsThrottleCodes.
var throttleCodes = func() map[string]bool {
	m := make(map[string]bool, len(retry.DefaultThrottleErrorCodes)+len(sqsThrottleCodes))
	for c := range retry.DefaultThrottleErrorCodes {
		m[c] = true
	}
	for _, c := range sqsThrottleCodes {
		m[c] = true
	}
	return m
}()

// Throttle reports whether an AWS error code says "slow down".
func Throttle(code string) bool { return throttleCodes[code] }
