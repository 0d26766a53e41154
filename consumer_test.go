package sqspool

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/clock"
)

func newWaiter() *waiter { return &waiter{ch: make(chan struct{}, 1)} }

func TestCreditsGrantWholeBatches(t *testing.T) {
	clk := clock.NewManual(time.Now())
	c := newCredits(0)
	got := make(chan [2]int, 2)
	for id := range 2 {
		ready := make(chan struct{})
		go func() {
			w := newWaiter()
			close(ready)
			n, err := c.take(context.Background(), w, 10, time.Hour, clk)
			assert.NoError(t, err)
			got <- [2]int{id, n}
		}()
		<-ready
		require.Eventually(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.waiters) == id+1 }, 5*time.Second, time.Millisecond)
	}
	for range 10 {
		c.release(1) // slots free one at a time
	}
	first := <-got
	assert.Equal(t, 10, first[1], "one poller gets a whole batch")
	for range 10 {
		c.release(1)
	}
	second := <-got
	assert.Equal(t, 10, second[1], "and so does the other, not the leftovers")
	assert.NotEqual(t, first[0], second[0])
}

func TestCreditsWaitingPollersHoldNothing(t *testing.T) {
	// Two pollers that each want more than is free must not each hold part
	// of it while waiting: that would leave both waiting for ever.
	clk := clock.NewManual(time.Now())
	c := newCredits(2)
	first, err := c.take(context.Background(), newWaiter(), 2, time.Hour, clk)
	require.NoError(t, err)
	require.Equal(t, 2, first)
	done := make(chan int, 2)
	for range 2 {
		go func() {
			n, err := c.take(context.Background(), newWaiter(), 2, time.Hour, clk)
			assert.NoError(t, err)
			done <- n
		}()
	}
	c.release(2)
	n := <-done
	assert.Equal(t, 2, n)
	c.release(2)
	assert.Equal(t, 2, <-done)
}

func TestCreditsTakeWhatIsFreeAfterTheFill(t *testing.T) {
	clk := clock.NewManual(time.Now())
	c := newCredits(3)
	got := make(chan int, 1)
	go func() {
		n, err := c.take(context.Background(), newWaiter(), 10, 10*time.Millisecond, clk)
		assert.NoError(t, err)
		got <- n
	}()
	require.True(t, clk.BlockUntil(1, nil))
	clk.Advance(10 * time.Millisecond)
	assert.Equal(t, 3, <-got, "a slow pool still puts its free slots to use")
}

func TestCreditsCancelledWaitReturnsNothingHeld(t *testing.T) {
	c := newCredits(0)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.take(ctx, newWaiter(), 5, 0, clock.Real)
		errc <- err
	}()
	require.Eventually(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.waiters) == 1 }, 5*time.Second, time.Millisecond)
	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)
	c.release(1)
	n, err := c.take(context.Background(), newWaiter(), 5, 0, clock.Real)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the cancelled poller left the slot free")
}
