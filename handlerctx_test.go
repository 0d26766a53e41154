package sqspool

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type valueKey struct{}

func TestHandlerContextCancelsItselfAndWhatDerivesFromIt(t *testing.T) {
	msg := &Message{ID: "m-1"}
	deadline := time.Now().Add(time.Hour)
	c := &handlerContext{values: context.WithValue(context.Background(), valueKey{}, "v"), msg: msg, deadline: deadline}

	d, ok := c.Deadline()
	assert.True(t, ok)
	assert.Equal(t, deadline, d)
	assert.Equal(t, "v", c.Value(valueKey{}), "the pool context's values are kept")
	m, ok := MessageFrom(c)
	require.True(t, ok)
	assert.Same(t, msg, m)

	child, cancelChild := context.WithTimeout(c, time.Hour)
	defer cancelChild()
	stopped := context.AfterFunc(c, func() { t.Error("a stopped AfterFunc ran") })
	require.True(t, stopped())
	ran := make(chan struct{})
	context.AfterFunc(c, func() { close(ran) })

	assert.NoError(t, c.Err())
	c.cancel(context.DeadlineExceeded)
	<-c.Done()
	<-child.Done()
	<-ran
	assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	assert.ErrorIs(t, child.Err(), context.DeadlineExceeded, "derived contexts hear of it")
	c.cancel(context.Canceled)
	assert.ErrorIs(t, c.Err(), context.DeadlineExceeded, "the first cancellation wins")
}

func TestHandlerContextCancelledBeforeDoneWasAsked(t *testing.T) {
	c := &handlerContext{values: context.Background()}
	c.cancel(context.Canceled)
	<-c.Done()
	ran := make(chan struct{})
	context.AfterFunc(c, func() { close(ran) })
	<-ran
}

func TestWatchdogCancelsAHandlerPastItsDeadline(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	clk := &armClock{Clock: e.clk, armed: make(chan time.Duration, 100)}
	errs := make(chan error, 1)
	started := make(chan struct{})
	p := e.start(func(ctx context.Context, o *order) error {
		close(started)
		<-ctx.Done()
		errs <- ctx.Err()
		return ctx.Err()
	}, withClock(clk), WithHandlerTimeout(2*time.Second), WithWorkers(1))
	<-started
	tick := watchTick(30*time.Second, 2*time.Second)
	require.Equal(t, 100*time.Millisecond, tick, "a twentieth of the handler timeout")
	for d := range clk.armed {
		if d == tick {
			break
		}
	}
	e.clk.Advance(2 * time.Second) // the watchdog fires past the deadline
	assert.ErrorIs(t, <-errs, context.DeadlineExceeded)
	e.shutdown(p)
	assert.EqualValues(t, 1, p.Stats().Failed)
}
