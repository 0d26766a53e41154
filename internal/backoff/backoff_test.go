package backoff

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// edge draws the lowest (0) or the highest (n-1) value every time.
type edge struct{ high bool }

func (e edge) Int64N(n int64) int64 {
	if e.high {
		return n - 1
	}
	return 0
}

func TestCeilingDoublesUpToMax(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Max: time.Second}
	var got []time.Duration
	for n := range 6 {
		got = append(got, p.Ceiling(n))
	}
	ms := time.Millisecond
	assert.Equal(t, []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second}, got)
	assert.Equal(t, time.Second, p.Ceiling(1_000_000), "many retries stay at the cap")
	huge := Policy{Base: time.Second, Max: time.Duration(1<<63 - 1)}
	assert.Equal(t, huge.Max, huge.Ceiling(100), "no overflow")
	assert.Equal(t, time.Second, Policy{Base: 2 * time.Second, Max: time.Second}.Ceiling(0), "a base above the cap is capped")
}

func TestFullJitterIsInZeroToCeiling(t *testing.T) {
	low := Policy{Base: time.Second, Max: time.Minute, Jitter: edge{}}
	high := low
	high.Jitter = edge{high: true}
	for n := range 8 {
		assert.Equal(t, time.Duration(1), low.Delay(n), "never zero")
		assert.Equal(t, low.Ceiling(n), high.Delay(n), "at most the ceiling")
	}
}

func TestEqualJitterKeepsHalfTheCeiling(t *testing.T) {
	low := Policy{Base: time.Second, Max: time.Minute, Equal: true, Jitter: edge{}}
	high := low
	high.Jitter = edge{high: true}
	for n := range 8 {
		assert.Equal(t, low.Ceiling(n)/2, low.Delay(n))
		assert.Equal(t, low.Ceiling(n), high.Delay(n))
	}
	assert.Equal(t, time.Duration(1), Policy{Base: 1, Max: 1, Equal: true}.Delay(0), "too short to halve")
	assert.Zero(t, Policy{}.Delay(3), "no base, no wait")
}

func TestSeededSourceReplays(t *testing.T) {
	draws := func(seed uint64) []int64 {
		s := Seeded(seed)
		out := make([]int64, 20)
		for i := range out {
			out[i] = s.Int64N(1 << 40)
		}
		return out
	}
	assert.Equal(t, draws(7), draws(7))
	assert.NotEqual(t, draws(7), draws(8))
	p := Policy{Base: time.Millisecond, Max: time.Hour}
	for n := range 10 {
		d := p.Delay(n) // Global
		assert.True(t, d > 0 && d <= p.Ceiling(n), "retry %d: %v", n, d)
	}
}

func TestThrottleCodesAreTheSDKsAndSQSs(t *testing.T) {
	for _, c := range []string{"ThrottlingException", "Throttling", "RequestThrottled", "ProvisionedThroughputExceededException",
		"RequestLimitExceeded", "SlowDown", "TooManyRequestsException", "AWS.SimpleQueueService.RequestThrottled", "KmsThrottled"} {
		assert.True(t, Throttle(c), c)
	}
	for _, c := range []string{"", "InternalError", "AccessDenied", "ValidationException", "AWS.SimpleQueueService.NonExistentQueue"} {
		assert.False(t, Throttle(c), c)
	}
}
