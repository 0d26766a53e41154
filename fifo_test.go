package sqspool

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sqsfake"
)

// fifoEnv is a FIFO queue, optionally with a redrive policy to a FIFO
// dead-letter queue after maxReceives receives (0: none).
func fifoEnv(t *testing.T, maxReceives int) (e *env, dlq string) {
	t.Helper()
	clk := clock.NewManual(time.Now())
	f := sqsfake.New(clock.Option[sqsfake.Option](clk), sqsfake.WithSeed(1))
	attrs := map[string]string{"FifoQueue": "true", "VisibilityTimeout": "30"}
	if maxReceives > 0 {
		dlq = f.MustCreateQueue("dead.fifo", map[string]string{"FifoQueue": "true"})
		attrs["RedrivePolicy"] = sqsfake.RedrivePolicy(f.QueueARN("dead.fifo"), maxReceives)
	}
	return &env{t: t, clk: clk, fake: f, queue: f.MustCreateQueue("steps.fifo", attrs)}, dlq
}

// handled records, per message, the receive counts its handler saw, in order.
type handled struct {
	mu     sync.Mutex
	order  []int
	counts map[int][]int
	ok     chan int // each success
	tries  chan int // each attempt
}

func newHandled() *handled {
	return &handled{counts: map[int][]int{}, ok: make(chan int, 1000), tries: make(chan int, 1000)}
}

// run records the attempt and fails it with fail's error, if any.
func (h *handled) run(ctx context.Context, o *order, fail func(id, receiveCount, attempt int) error) error {
	m, _ := MessageFrom(ctx)
	h.mu.Lock()
	h.counts[o.ID] = append(h.counts[o.ID], m.ReceiveCount)
	attempt := len(h.counts[o.ID])
	h.mu.Unlock()
	h.tries <- o.ID
	if err := fail(o.ID, m.ReceiveCount, attempt); err != nil {
		return err
	}
	h.mu.Lock()
	h.order = append(h.order, o.ID)
	h.mu.Unlock()
	h.ok <- o.ID
	return nil
}

func (h *handled) wait(t *testing.T, ch chan int, n int) {
	t.Helper()
	timeout := time.NewTimer(30 * time.Second) // a hang guard
	defer timeout.Stop()
	for range n {
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("waited for %d", n)
		}
	}
}

// A failed FIFO message runs again here while its group stays in flight: no
// other message of the group is received again, so with maxReceiveCount 2
// none of them moves to the dead-letter queue because another one failed.
func TestFIFOFailureIsRetriedInPlaceAndSpendsNoReceives(t *testing.T) {
	e, dlq := fifoEnv(t, 2)
	e.sendFIFO("g", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	e.sendFIFO("h", 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)
	h := newHandled()
	p := e.start(func(ctx context.Context, o *order) error {
		return h.run(ctx, o, func(id, _, attempt int) error {
			if attempt == 1 && id%3 == 1 { // 1, 4, 7, 10, 13, 16, 19 fail once
				return errors.New("flaky downstream")
			}
			return nil
		})
	}, WithWorkers(4))
	h.wait(t, h.ok, 20)
	e.shutdown(p)

	for id, counts := range h.counts {
		for _, c := range counts {
			assert.Equal(t, 1, c, "message %d was received again: %v", id, counts)
		}
	}
	assert.Len(t, h.order, 20)
	assert.Empty(t, e.fake.Messages(dlq))
	assert.EqualValues(t, 7, p.Stats().Retried)
	assert.Zero(t, p.Stats().Returned)
	visible, inFlight := e.depth(e.queue)
	assert.Zero(t, visible+inFlight)
}

// Group order holds across local retries: each group's successes come in
// send order.
func TestFIFOLocalRetryKeepsGroupOrder(t *testing.T) {
	e, _ := fifoEnv(t, 0)
	e.sendFIFO("a", 1, 2, 3, 4, 5, 6)
	h := newHandled()
	p := e.start(func(ctx context.Context, o *order) error {
		return h.run(ctx, o, func(id, _, attempt int) error {
			if attempt <= 1 && id%2 == 0 {
				return RetryAfter(0, errors.New("again"))
			}
			return nil
		})
	}, WithWorkers(4))
	h.wait(t, h.ok, 6)
	e.shutdown(p)
	assert.Equal(t, []int{1, 2, 3, 4, 5, 6}, h.order)
}

// After maxLocalAttempts failures the group goes back to the queue, the
// failed message first, and comes back in order.
func TestFIFOGroupGoesBackAfterLocalAttempts(t *testing.T) {
	e, _ := fifoEnv(t, 0)
	e.sendFIFO("g", 1, 2, 3)
	h := newHandled()
	p := e.start(func(ctx context.Context, o *order) error {
		return h.run(ctx, o, func(id, receiveCount, _ int) error {
			if id == 1 && receiveCount == 1 {
				return RetryAfter(0, errors.New("not yet"))
			}
			return nil
		})
	}, WithWorkers(4))
	h.wait(t, h.ok, 3)
	e.shutdown(p)
	assert.Equal(t, []int{1, 2, 3}, h.order)
	assert.Equal(t, []int{1, 1, 1, 2}, h.counts[1], "three runs here, then one after the group came back")
	assert.Equal(t, []int{2}, h.counts[2], "the group went back once, after message 1's local attempts")
	assert.EqualValues(t, 2, p.Stats().Returned)
}

// A message waiting for its local retry's backoff goes back at Shutdown,
// with the rest of its group, at once.
func TestFIFOShutdownGivesBackAWaitingRetryAndItsGroup(t *testing.T) {
	e, _ := fifoEnv(t, 0)
	e.sendFIFO("g", 1, 2, 3)
	h := newHandled()
	p := e.start(func(ctx context.Context, o *order) error {
		return h.run(ctx, o, func(int, int, int) error { return errors.New("down") })
	}, WithWorkers(4), WithRetryBackoff(func(int) time.Duration { return 20 * time.Second }))
	// The second failure waits for its backoff on the test's clock, which
	// does not move.
	h.wait(t, h.tries, 2)
	waitRetries(t, p, 1)
	e.shutdown(p)
	visible, inFlight := e.depth(e.queue)
	assert.Equal(t, 2, visible, "the two behind message 1 are back")
	assert.Equal(t, 1, inFlight, "message 1 comes back after the backoff its failure asked for, not at once")
	e.clk.Advance(20*time.Second - time.Millisecond)
	_, inFlight = e.depth(e.queue)
	assert.Equal(t, 1, inFlight)
	e.clk.Advance(time.Millisecond)
	visible, inFlight = e.depth(e.queue)
	assert.Equal(t, 3, visible, "message 1 and the two behind it are back")
	assert.Zero(t, inFlight)
	assert.Equal(t, []int{1, 1}, h.counts[1])
	assert.Empty(t, h.counts[2])
}

// SQS delivers no more of a FIFO group until every message of it in flight
// is deleted. When a receive may have left more of its group at SQS, the
// group's run here is deleted in one call as its last message finishes,
// without waiting for the delete linger: the group's next batch comes
// without the clock moving, and each run costs one DeleteMessageBatch.
func TestFIFOGroupRunIsDeletedInOneCallAtOnce(t *testing.T) {
	e, _ := fifoEnv(t, 0)
	e.sendFIFO("g", 1, 2, 3, 4, 5, 6, 7, 8)
	h := newHandled()
	// 4 workers: receives ask for 4, each a full response of group g.
	p := e.start(func(ctx context.Context, o *order) error {
		return h.run(ctx, o, func(int, int, int) error { return nil })
	}, WithWorkers(4), WithDeleteLinger(time.Hour))
	h.wait(t, h.ok, 8)
	require.Eventually(t, func() bool {
		visible, inFlight := e.depth(e.queue)
		return visible+inFlight == 0
	}, 10*time.Second, time.Millisecond)
	e.shutdown(p)
	assert.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8}, h.order)
	assert.EqualValues(t, 2, p.Stats().Calls["DeleteMessageBatch"], "one call for each run of four")
}

// Deletes held for the end of a group's run are sent by the stop, even when
// the run never ends: here its second message waits for a retry's backoff.
func TestFIFOShutdownDeletesAGroupRunsHeldDeletes(t *testing.T) {
	e, _ := fifoEnv(t, 0)
	e.sendFIFO("g", 1, 2, 3)
	h := newHandled()
	p := e.start(func(ctx context.Context, o *order) error {
		return h.run(ctx, o, func(id, _, _ int) error {
			if id == 2 {
				return RetryAfter(time.Hour, errors.New("not yet"))
			}
			return nil
		})
	}, WithWorkers(3), WithDeleteLinger(time.Hour))
	h.wait(t, h.tries, 2)
	waitRetries(t, p, 1)
	assert.Zero(t, p.Stats().Deleted, "message 1's delete waits for its run's end")
	e.shutdown(p)
	assert.EqualValues(t, 1, p.Stats().Deleted)
	msgs := e.fake.Messages(e.queue)
	require.Len(t, msgs, 2, "messages 2 and 3 are back, message 1 is gone")
}

// A held delete goes before its message's visibility timeout can run out,
// however long the rest of its group's run takes.
func TestFIFOHeldDeleteGoesBeforeItsVisibilityRunsOut(t *testing.T) {
	e, _ := fifoEnv(t, 0)
	e.sendFIFO("g", 1, 2, 3)
	h := newHandled()
	release := make(chan struct{})
	p := e.start(func(ctx context.Context, o *order) error {
		return h.run(ctx, o, func(id, _, _ int) error {
			if id == 2 {
				<-release // a long handler
			}
			return nil
		})
	}, WithWorkers(3), WithPollers(1), WithDeleteLinger(time.Hour))
	defer close(release)
	h.wait(t, h.tries, 2)
	assert.Zero(t, p.Stats().Deleted)
	// The watchdog ticks every 10 s (a third of the 30 s visibility): the
	// first tick finds message 1 visible again within its margin.
	require.True(t, e.clk.BlockUntil(2, nil)) // the watchdog and the long poll
	e.clk.Advance(10 * time.Second)
	require.Eventually(t, func() bool { return p.Stats().Deleted == 1 }, 10*time.Second, time.Millisecond)
	_, inFlight := e.depth(e.queue)
	assert.Equal(t, 2, inFlight, "message 2 still runs, message 3 waits behind it")
}

// waitRetries waits until n retries in place wait for their backoff.
func waitRetries(t *testing.T, p *Pool, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		p.retryMu.Lock()
		defer p.retryMu.Unlock()
		return len(p.retries) == n
	}, 10*time.Second, time.Millisecond)
}
