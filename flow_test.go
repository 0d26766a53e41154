package sqspool

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/clock"
)

func newTestBreaker(clk clock.Clock, changes chan BreakerState) *breaker {
	return newBreaker(CircuitBreaker{
		Window: 10 * time.Second, MinRequests: 4, FailureRatio: 0.5, CoolDown: 30 * time.Second, Probes: 2,
		OnStateChange: func(_, to BreakerState) {
			if changes != nil {
				changes <- to
			}
		},
	}, clk, func(from, to BreakerState) {})
}

func TestBreakerOpensOnFailureRatioAndProbesAfterCoolDown(t *testing.T) {
	clk := clock.NewManual(time.Now())
	b := newTestBreaker(clk, nil)
	boom := errors.New("downstream down")
	b.record(nil, 0)
	b.record(boom, 0)
	b.record(nil, 0)
	assert.True(t, b.allows(), "3 outcomes are below MinRequests")
	b.record(boom, 0)
	assert.False(t, b.allows(), "2 of 4 failed: open")
	state, opens := b.snapshot()
	assert.Equal(t, BreakerOpen, state)
	assert.EqualValues(t, 1, opens)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := b.admit(ctx, 10)
	assert.ErrorIs(t, err, context.Canceled, "an open breaker admits nothing")

	clk.Advance(30 * time.Second)
	n, probe, err := b.admit(context.Background(), 10)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "half-open lets the probes through")
	n2, _, err := b.admit(ctx, 10)
	assert.Error(t, err, "and no more")
	assert.Zero(t, n2)
	b.record(nil, probe)
	b.record(nil, probe)
	state, _ = b.snapshot()
	assert.Equal(t, BreakerClosed, state, "the probes succeeded")
	n, _, _ = b.admit(context.Background(), 10)
	assert.Equal(t, 10, n)
}

func TestBreakerReopensWhenAProbeFails(t *testing.T) {
	b, _, probe := halfOpenBreaker(t) // both probes admitted
	b.unadmit(probe, 1)               // the receive brought one message
	b.record(errors.New("still down"), probe)
	state, opens := b.snapshot()
	assert.Equal(t, BreakerOpen, state)
	assert.EqualValues(t, 2, opens)
}

// movingClock moves its manual clock by step as a timer is armed: the clock
// moving between a reading of Now and the timer made from it.
type movingClock struct {
	*clock.Manual
	step time.Duration
}

func (c movingClock) NewTimer(d time.Duration) clock.Timer {
	c.Advance(c.step)
	return c.Manual.NewTimer(d)
}

// A poller that read the clock just before the cool-down ended arms its
// timer after: it must not wait a whole cool-down more (on a manual clock
// moved once, for ever).
func TestBreakerCoolDownEndsAsTheClockMovesBeforeItsTimer(t *testing.T) {
	clk := movingClock{clock.NewManual(time.Now()), 30 * time.Second}
	b := newTestBreaker(clk, nil)
	for range 4 {
		b.record(errors.New("x"), 0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admitted := make(chan int, 1)
	go func() {
		n, _, _ := b.admit(ctx, 10)
		admitted <- n
	}()
	select {
	case n := <-admitted:
		assert.Equal(t, 2, n, "half-open lets the probes through")
	case <-time.After(10 * time.Second):
		t.Fatal("admit waits on a timer armed after the cool-down ended")
	}
}

func TestBreakerWindowForgetsOldOutcomes(t *testing.T) {
	clk := clock.NewManual(time.Now())
	b := newTestBreaker(clk, nil)
	for range 3 {
		b.record(errors.New("x"), 0)
	}
	clk.Advance(11 * time.Second) // the failures slid out of the window
	b.record(nil, 0)
	b.record(errors.New("x"), 0)
	b.record(nil, 0)
	b.record(nil, 0)
	assert.True(t, b.allows(), "1 of the 4 outcomes in the window failed")
}

func TestBreakerIgnoresNoRetryErrors(t *testing.T) {
	b := newTestBreaker(clock.NewManual(time.Now()), nil)
	for range 10 {
		b.record(NoRetry(errors.New("bad order")), 0)
	}
	assert.True(t, b.allows(), "a message's own fault says nothing of the downstream")
}

// The scenario: a downstream outage must not push good messages
// into the dead-letter queue, must not keep the pool receiving, and must
// end by itself when the downstream is back.
func TestBreakerKeepsAnOutageOutOfTheDLQ(t *testing.T) {
	e := newEnv(t, nil)
	dlq := e.fake.MustCreateQueue("orders-dlq", nil)
	e.queue = e.fake.MustCreateQueue("orders-guarded", map[string]string{
		"VisibilityTimeout": "30",
		"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"3"}`, e.fake.QueueARN("orders-dlq")),
	})
	e.sendOrders(40)
	var down atomic.Bool
	down.Store(true)
	changes := make(chan BreakerState, 10)
	s := newSeen()
	p := e.start(func(ctx context.Context, o *order) error {
		if down.Load() {
			return errors.New("table unavailable")
		}
		return s.handler(ctx, o)
	}, WithWorkers(4), WithCircuitBreaker(CircuitBreaker{
		MinRequests: 4, CoolDown: time.Minute, Probes: 1,
		OnStateChange: func(_, to BreakerState) { changes <- to },
	}))
	require.Equal(t, BreakerOpen, <-changes)
	receivesAtOpen := e.fake.Calls("ReceiveMessage")
	// Handlers that were running when it opened finish (and fail) first.
	idle := func() bool { return p.Stats().InFlight == 0 }
	require.Eventually(t, idle, 10*time.Second, time.Millisecond)

	// Still down at the first probe: it opens again.
	e.clk.Advance(time.Minute)
	require.Equal(t, BreakerHalfOpen, <-changes)
	require.Equal(t, BreakerOpen, <-changes)
	require.Eventually(t, idle, 10*time.Second, time.Millisecond)

	down.Store(false)
	e.clk.Advance(time.Minute)
	require.Equal(t, BreakerHalfOpen, <-changes)
	require.Equal(t, BreakerClosed, <-changes)
	s.wait(t, 40) // processing resumed by itself
	e.shutdown(p)

	fs := e.fake.Stats(dlq)
	assert.Zero(t, fs.Visible+fs.InFlight, "no message reached the DLQ because of the outage")
	assert.LessOrEqual(t, receivesAtOpen, 8, "the outage was noticed within a few receives")
	st := p.Stats()
	assert.EqualValues(t, 2, st.BreakerOpens)
	assert.Equal(t, BreakerClosed, st.Breaker)
}

// simulate runs the limiter against a downstream whose latency is base up to
// knee handlers at once and grows in proportion beyond, and returns the
// limits it chose.
func simulate(l *limiter, knee int, base time.Duration, rounds int) []int {
	var limits []int
	limit := l.cfg.Min
	for range rounds {
		c := limit
		lat := base * time.Duration(math.Max(1, float64(c)/float64(knee))*1000) / 1000
		for range 50 {
			l.observe(lat, int64(c))
		}
		limit, _ = l.adjust(int64(c))
		limits = append(limits, limit)
	}
	return limits
}

func TestAdaptiveLimitSettlesNearTheKneeNotAtTheMaximum(t *testing.T) {
	for _, knee := range []int{8, 32} {
		l := newLimiter((&AdaptiveConcurrency{Min: 1, Max: 256}).withDefaults(256))
		limits := simulate(l, knee, 10*time.Millisecond, 300)
		settled := limits[len(limits)-50:]
		for _, lim := range settled {
			assert.GreaterOrEqual(t, lim, knee, "knee %d: throughput needs at least the knee", knee)
			assert.LessOrEqual(t, lim, 2*knee, "knee %d: far below the maximum", knee)
		}
	}
}

func TestAdaptiveLimitShrinksWhenIdle(t *testing.T) {
	l := newLimiter((&AdaptiveConcurrency{Min: 2, Max: 64}).withDefaults(64))
	l.limit = 40
	for range 100 {
		l.adjust(0)
	}
	assert.InDelta(t, 2, l.limit, 0.01, "an empty queue needs no concurrency")
}

func TestAdaptiveLimitBoundsRunningHandlers(t *testing.T) {
	e := newEnv(t, nil)
	s := newSeen()
	var running, peak atomic.Int64
	release := make(chan struct{})
	started := make(chan struct{}, 12)
	p := e.start(func(ctx context.Context, o *order) error {
		n := running.Add(1)
		for old := peak.Load(); n > old && !peak.CompareAndSwap(old, n); old = peak.Load() {
		}
		started <- struct{}{}
		<-release
		running.Add(-1)
		return s.handler(ctx, o)
	}, WithAdaptiveConcurrency(AdaptiveConcurrency{Min: 2, Max: 16}), withReceiveFill(0))
	// A read-ahead of ten lets more messages in than the limit may run. (The
	// sizer keeps it: on this clock its next turn never comes.)
	p.sizer.mu.Lock()
	p.sizer.lastAt = e.clk.Now()
	p.sizer.mu.Unlock()
	p.readAhead.Store(10)
	p.credits.release(10)
	e.sendOrders(12)
	// InFlight counts a message from its receive, before a worker picks it
	// up: wait for the two handlers themselves to start.
	for range 2 {
		<-started
	}
	held := assert.Eventually(t, func() bool { return p.Stats().InFlight == 12 }, 10*time.Second, time.Millisecond)
	assert.EqualValues(t, 2, running.Load(), "held beyond the limit, they wait for a worker")
	close(release)
	require.True(t, held)
	s.wait(t, 12)
	st := p.Stats()
	e.shutdown(p)
	assert.EqualValues(t, 2, st.ConcurrencyLimit, "the manual clock never ticked the limiter")
	assert.EqualValues(t, 2, peak.Load())
}

// An admission reads the half-open period it belongs to under the lock: a
// probe that fails at once reopens the breaker, and the next cool-down
// starts another period, while the admitting poller is still returning.
// Under -race this failed when admit read the period after unlocking.
func TestBreakerAdmissionReadsItsPeriodUnderTheLock(t *testing.T) {
	clk := clock.NewManual(time.Now())
	b := newTestBreaker(clk, nil)
	boom := errors.New("downstream down")
	for range 4 {
		b.record(boom, 0)
	}
	for range 20 {
		clk.Advance(30 * time.Second)
		_, first, err := b.admit(context.Background(), 1) // half-open: period first
		require.NoError(t, err)
		start, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			<-start
			b.record(boom, first) // reopen, then the next period
			clk.Advance(30 * time.Second)
			_, _, _ = b.admit(context.Background(), 1)
		}()
		close(start)
		n, probe, err := b.admit(context.Background(), 1)
		<-done
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		assert.Contains(t, []uint64{first, first + 1}, probe, "an admission belongs to the period it was made in")
		b.record(boom, probe) // open again for the next round
		b.mu.Lock()
		epoch := b.epoch
		b.mu.Unlock()
		if probe == first {
			b.record(boom, epoch)
		}
	}
}
