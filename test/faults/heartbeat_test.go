package faults

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/internal/awstest"
	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sqsfake"
)

// calls counts handler calls per MessageId.
type calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *calls) add(ctx context.Context) {
	m, _ := sqspool.MessageFrom(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[m.ID]++
}

func (c *calls) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

// TestHeartbeat is scenario 4: handlers that run three times the queue's
// visibility timeout keep their messages: no message is delivered again
// while its handler runs, on the fake with failing visibility changes and
// on the emulator.
func TestHeartbeat(t *testing.T) {
	t.Run("fake", func(t *testing.T) {
		const n, vis = 4, 30 * time.Second
		clk := clock.NewManual(time.Unix(1_700_000_000, 0))
		f := sqsfake.New(clock.Option[sqsfake.Option](clk), sqsfake.WithSeed(4))
		q := f.MustCreateQueue("heartbeat", map[string]string{"VisibilityTimeout": "30"})
		for pid := range n {
			f.MustSendJSON(q, job{PID: pid})
		}
		// Heartbeats fail: whole calls, single entries, with jitter; the
		// first three calls fail outright. Receives fail too, but no
		// duplicate is injected: every second delivery would be the
		// heartbeat's failure.
		f.SetFaults(sqsfake.Faults{
			sqsfake.OpReceiveMessage:               {ErrorRate: 0.05, ThrottleRate: 0.05, Jitter: 300 * time.Microsecond},
			sqsfake.OpChangeMessageVisibilityBatch: {ErrorRate: 0.1, ThrottleRate: 0.1, PartialFailureRate: 0.1, LostReplyRate: 0.05, Jitter: time.Millisecond},
			sqsfake.OpDeleteMessageBatch:           {ErrorRate: 0.1, PartialFailureRate: 0.1},
		})
		f.FailNext(sqsfake.OpChangeMessageVisibilityBatch, 3, nil)
		var c calls
		pool, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: f, Queue: q}, func(ctx context.Context, j *job) error {
			c.add(ctx)
			t := clk.NewTimer(3 * vis) // three visibility timeouts of work, on the test's clock
			defer t.Stop()
			<-t.C()
			return nil
		}, clock.Option[sqspool.Option](clk), sqspool.WithWorkers(n), sqspool.WithLogger(quietLogger()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = pool.Shutdown(context.Background()) })
		d := startDriver(t, clk, 50*time.Millisecond, 50*time.Millisecond, func() bool { return true })
		d.waitFor(t, 60*time.Second, "queue drained", func() bool {
			s := f.Stats(q)
			return s.Visible+s.InFlight+s.Delayed == 0
		})
		require.NoError(t, pool.Shutdown(context.Background()))
		d.halt()
		st, fs := pool.Stats(), f.Stats(q)
		assert.EqualValues(t, n, fs.Received, "no message delivered twice")
		assert.Zero(t, st.Duplicates)
		assert.EqualValues(t, n, st.Processed)
		assert.EqualValues(t, n, fs.Deleted)
		assert.Zero(t, fs.StaleDeletes)
		for id, k := range c.snapshot() {
			assert.Equal(t, 1, k, "handler calls for %s", id)
		}
		assert.GreaterOrEqual(t, st.Extended, int64(n*3), "a 90s handler on a 30s timeout needs at least three extensions")
		figures(t, "scenario 4 (fake): heartbeat",
			fmt.Sprintf("%d handlers of 3 visibility timeouts (90s simulated) under failing ChangeMessageVisibilityBatch: %d extensions, %d CMVB calls (%d failed), deliveries %d, duplicates 0",
				n, st.Extended, st.Calls["ChangeMessageVisibilityBatch"], st.CallErrors["ChangeMessageVisibilityBatch"], fs.Received))
	})

	t.Run("emulator", func(t *testing.T) {
		client := awstest.SQS(t)
		// A heartbeat tick is a second here (vis/3, at least 1s); with a 3s
		// timeout one late tick still leaves a second to spare.
		const n, vis = 3, 3 * time.Second
		// No redrive policy: the emulator counts every visibility change
		// as a receive.
		q := awstest.NewQueue(t, client, "faults-heartbeat", map[string]string{"VisibilityTimeout": "3"})
		b := &backend{client: client}
		b.sendBatch(t, q, jobEntries(n, 0))
		var c calls
		began := time.Now()
		pool, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: client, Queue: q}, func(ctx context.Context, j *job) error {
			c.add(ctx)
			t := time.NewTimer(3 * vis) // the work
			defer t.Stop()
			<-t.C
			return nil
		}, sqspool.WithWorkers(n), sqspool.WithWaitTime(time.Second), sqspool.WithLogger(quietLogger()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = pool.Shutdown(context.Background()) })
		eventually(t, 60*time.Second, "three handlers done", func() bool {
			s := pool.Stats()
			return s.Processed == n && s.Deleted == n
		})
		require.NoError(t, pool.Shutdown(context.Background()))
		st := pool.Stats()
		assert.Zero(t, st.Duplicates, "no delivery while the handler ran")
		assert.EqualValues(t, n, st.Received)
		for id, k := range c.snapshot() {
			assert.Equal(t, 1, k, "handler calls for %s", id)
		}
		assert.Len(t, c.snapshot(), n)
		assert.True(t, b.empty(t, q))
		assert.GreaterOrEqual(t, st.Extended, int64(n*3), "a 9s handler on a 3s timeout needs at least three extensions")
		figures(t, "scenario 4 (emulator): heartbeat",
			fmt.Sprintf("%d handlers of 9s on a 3s visibility timeout: %d extensions, received %d, duplicates %d, wall %v",
				n, st.Extended, st.Received, st.Duplicates, time.Since(began).Round(time.Millisecond)))
	})
}
