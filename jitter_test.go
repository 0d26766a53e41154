package sqspool

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/sqsfake"
)

// fixedJitter records the ceiling of every draw and always draws 6, so that
// a full-jitter delay is 7 ns: a duration nothing else in the pool arms.
type fixedJitter struct{ ceilings chan int64 }

func (j fixedJitter) Int64N(n int64) int64 {
	j.ceilings <- n
	return 6
}

// The pool's own backoffs (a failed receive, a batch entry that failed
// transiently) draw their jitter from the pool's source, which the simulator
// seeds so that a seed's retries replay: one mechanism (internal/backoff),
// full jitter under each one's ceiling.
func TestPoolBackoffsDrawFromItsJitterSource(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	e.fake.FailNext(sqsfake.OpReceiveMessage, 1, nil)
	e.fake.FailNext(sqsfake.OpDeleteMessageBatch, 1, nil)
	src := fixedJitter{ceilings: make(chan int64, 10)}
	clk := &armClock{Clock: e.clk, armed: make(chan time.Duration, 1000)}
	s := newSeen()
	p := e.start(s.handler, withClock(clk), WithWorkers(1), func(c *config) { c.jitter = src })
	waitArmed := func() {
		for d := range clk.armed {
			if d == 7 {
				return
			}
		}
	}
	assert.Equal(t, int64(minReceiveBackoff), <-src.ceilings, "the first receive failed")
	waitArmed()
	e.clk.Advance(7)
	s.wait(t, 1)
	assert.Equal(t, int64(50*time.Millisecond), <-src.ceilings, "the delete failed transiently")
	waitArmed()
	e.clk.Advance(7)
	require.NoError(t, p.Shutdown(context.Background()))
	assert.EqualValues(t, 1, e.fake.Stats(e.queue).Deleted)
	assert.Empty(t, src.ceilings, "no other draw")
}
