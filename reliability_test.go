package sqspool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/clock"
)

func TestHeartbeatKeepsASlowHandlersMessageInvisible(t *testing.T) {
	e := newEnv(t, nil) // visibility 30 s
	e.sendOrders(1)
	started := make(chan struct{})
	finish := make(chan struct{})
	clk := &armClock{Clock: e.clk, armed: make(chan time.Duration, 100)}
	p := e.start(func(ctx context.Context, o *order) error {
		close(started)
		<-finish
		return nil
	}, withClock(clk), WithWorkers(1))
	<-started
	// Run the handler for three visibility timeouts, a heartbeat tick at a time.
	for i := 1; i <= 9; i++ {
		for d := range clk.armed {
			if d == 10*time.Second {
				break
			}
		}
		e.clk.Advance(10 * time.Second)
		require.Eventually(t, func() bool { return p.Stats().Extended == int64(i) }, 10*time.Second, time.Millisecond)
	}
	fs := e.fake.Stats(e.queue)
	assert.EqualValues(t, 1, fs.Received, "never delivered again while its handler ran")
	assert.Equal(t, 1, fs.InFlight)
	close(finish)
	e.shutdown(p)
	fs = e.fake.Stats(e.queue)
	assert.EqualValues(t, 1, fs.Deleted)
	assert.Zero(t, fs.StaleDeletes)
}

func TestNoHeartbeatForFinishedMessages(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(3)
	s := newSeen()
	clk := &armClock{Clock: e.clk, armed: make(chan time.Duration, 100)}
	heartbeatArmed := func() {
		for d := range clk.armed {
			if d == 10*time.Second {
				return
			}
		}
	}
	// Deletes wait for the linger, which this clock never reaches.
	p := e.start(s.handler, withClock(clk), WithDeleteLinger(time.Hour))
	s.wait(t, 3)
	require.Eventually(t, func() bool { return p.Stats().Processed == 3 }, 10*time.Second, time.Millisecond)
	heartbeatArmed()
	e.clk.Advance(10 * time.Second) // a tick that would extend all three, were they running
	heartbeatArmed()                // the tick is over
	assert.Zero(t, p.deq.changes.Pending(), "a finished message waiting for its delete is not extended")
	e.shutdown(p)
	assert.Zero(t, p.Stats().Extended)
	assert.Zero(t, e.fake.Calls("ChangeMessageVisibilityBatch"))
	assert.EqualValues(t, 3, p.Stats().Deleted)
}

func TestRetryAfterSetsTheRedeliveryDelay(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	counts := make(chan int, 2)
	p := e.start(func(ctx context.Context, o *order) error {
		m, _ := MessageFrom(ctx)
		counts <- m.ReceiveCount
		if m.ReceiveCount == 1 {
			return RetryAfter(5*time.Second, errors.New("busy"))
		}
		return nil
	})
	require.Equal(t, 1, <-counts)
	require.Eventually(t, func() bool {
		msgs := e.fake.Messages(e.queue)
		return len(msgs) == 1 && msgs[0].VisibleAt.Equal(e.clk.Now().Add(5*time.Second))
	}, 10*time.Second, time.Millisecond, "the retry delay reached SQS")
	e.clk.Advance(5 * time.Second) // not the 30 s visibility timeout
	require.Equal(t, 2, <-counts)
	e.shutdown(p)
	assert.EqualValues(t, 1, p.Stats().Retried)
	assert.EqualValues(t, 1, p.Stats().Processed)
}

func TestNoRetryDeletesTheMessage(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	errs := newErrorLog()
	p := e.start(func(ctx context.Context, o *order) error {
		return NoRetry(errors.New("order refers to a deleted account"))
	}, WithErrorHook(errs.hook))
	assert.ErrorIs(t, errs.next(t), ErrNoRetry)
	e.shutdown(p)
	st := p.Stats()
	assert.EqualValues(t, 1, st.Dropped)
	assert.EqualValues(t, 1, st.Failed)
	visible, inFlight := e.depth(e.queue)
	assert.Zero(t, visible+inFlight)
}

func TestExponentialBackoff(t *testing.T) {
	b := ExponentialBackoff(time.Second, 10*time.Second)
	for range 100 {
		d1, d3, d9 := b(1), b(3), b(9)
		assert.True(t, d1 >= 500*time.Millisecond && d1 <= time.Second, d1)
		assert.True(t, d3 >= 2*time.Second && d3 <= 4*time.Second, d3)
		assert.True(t, d9 >= 5*time.Second && d9 <= 10*time.Second, d9, "capped")
	}
}

func TestRetryDelayClassifiesErrors(t *testing.T) {
	b := func(n int) time.Duration { return time.Duration(n) * time.Second }
	d, set, final := retryDelay(errors.New("x"), 3, b)
	assert.Equal(t, 3*time.Second, d)
	assert.True(t, set)
	assert.False(t, final)
	d, set, _ = retryDelay(RetryAfter(time.Minute, nil), 3, b)
	assert.Equal(t, time.Minute, d)
	assert.True(t, set)
	_, _, final = retryDelay(NoRetry(nil), 3, b)
	assert.True(t, final)
	_, set, _ = retryDelay(errors.New("x"), 3, nil)
	assert.False(t, set, "no backoff: left to the visibility timeout")
}

func TestVisibilityIsCappedAtTwelveHoursFromReceive(t *testing.T) {
	now := time.Now()
	rec := &record{receivedAt: now.Add(-11*time.Hour - 59*time.Minute)}
	assert.LessOrEqual(t, visibilitySeconds(rec, time.Hour, now), int32(60))
	rec.receivedAt = now.Add(-13 * time.Hour)
	assert.Zero(t, visibilitySeconds(rec, time.Hour, now))
	rec.receivedAt = now
	assert.EqualValues(t, 2, visibilitySeconds(rec, 1500*time.Millisecond, now), "rounded up")
}

// fifoDispatcher is a dispatcher for one FIFO queue, fed directly.
func fifoDispatcher(clk clock.Clock) (*dispatcher, *[]time.Duration) {
	var held []time.Duration
	d := &dispatcher{
		fifo: true, visibility: 30 * time.Second, clock: clk,
		deadline: func(_, t time.Time) time.Time { return t.Add(time.Minute) },
		credits:  newCredits(10), counters: &counters{}, work: make(chan *record, 10),
		hold:   func(_ *record, d time.Duration) { held = append(held, d) },
		groups: map[string]*group{}, inflight: map[string]*record{},
	}
	return d, &held
}

func fifoMsg(id, group string) types.Message {
	return types.Message{
		MessageId: aws.String(id), ReceiptHandle: aws.String("h-" + id), Body: aws.String("{}"),
		Attributes: map[string]string{"MessageGroupId": group},
	}
}

func TestFIFOGroupIsHeldAfterAFailureUntilTheFailedMessageReturns(t *testing.T) {
	clk := clock.NewManual(time.Now())
	d, held := fifoDispatcher(clk)
	d.dispatch([]types.Message{fifoMsg("1", "g"), fifoMsg("2", "g")}, clk.Now())
	first := <-d.work
	require.Equal(t, "1", first.msg.ID)
	require.Empty(t, d.work, "2 waits behind 1")

	d.forget(first)
	next, released := d.next(first, false, 10*time.Second)
	assert.Nil(t, next)
	require.Len(t, released, 1, "2 is released, not run out of order")
	d.forget(released[0])

	// A server that does not lock the group delivers 2 again before 1.
	d.dispatch([]types.Message{fifoMsg("2", "g")}, clk.Now())
	assert.Empty(t, d.work)
	assert.Equal(t, []time.Duration{10 * time.Second}, *held, "2 goes back for the rest of the hold")

	clk.Advance(3 * time.Second)
	d.dispatch([]types.Message{fifoMsg("1", "g")}, clk.Now())
	again := <-d.work
	assert.Equal(t, "1", again.msg.ID, "the failed message itself ends the hold")
}

func TestFIFOHoldEndsWhenItsDelayHasPassed(t *testing.T) {
	clk := clock.NewManual(time.Now())
	d, _ := fifoDispatcher(clk)
	d.dispatch([]types.Message{fifoMsg("1", "g")}, clk.Now())
	first := <-d.work
	d.forget(first)
	d.next(first, false, 10*time.Second)
	clk.Advance(11 * time.Second) // 1 went to a DLQ, say, and never came back
	d.dispatch([]types.Message{fifoMsg("2", "g")}, clk.Now())
	assert.Equal(t, "2", (<-d.work).msg.ID)
	d.pruneGroups(clk.Now())
	assert.Len(t, d.groups, 1, "the running group stays")
	d.forget(first)
}

func TestPruneGroupsForgetsEndedHolds(t *testing.T) {
	clk := clock.NewManual(time.Now())
	d, _ := fifoDispatcher(clk)
	d.dispatch([]types.Message{fifoMsg("1", "g")}, clk.Now())
	first := <-d.work
	d.next(first, false, 10*time.Second)
	d.pruneGroups(clk.Now())
	assert.Len(t, d.groups, 1, "held")
	clk.Advance(10 * time.Second)
	d.pruneGroups(clk.Now())
	assert.Empty(t, d.groups)
}

// finishOnReceive plays a fast worker: as each later message of a response
// is received, it takes whatever the dispatcher already handed to the
// workers and ends it as failed, given back at once.
type finishOnReceive struct {
	NopObserver
	d     *dispatcher
	taken []string // what it took, in order
}

func (o *finishOnReceive) Received(*Message) {
	select {
	case rec := <-o.d.work:
		o.taken = append(o.taken, rec.msg.ID)
		o.d.forget(rec)
		_, released := o.d.next(rec, false, 0)
		for _, r := range released {
			o.taken = append(o.taken, r.msg.ID)
			o.d.forget(r)
		}
	default:
	}
}

// The messages of one FIFO receive all take their places in their group
// before any of them reaches a worker: otherwise a first message that fails
// (and goes back) before the second one entered the group leaves the
// second to start as the group's head, ahead of the first.
func TestFIFOResponseEntersItsGroupsBeforeAnyMessageRuns(t *testing.T) {
	clk := clock.NewManual(time.Now())
	d, _ := fifoDispatcher(clk)
	o := &finishOnReceive{d: d}
	d.observer = o
	d.dispatch([]types.Message{fifoMsg("1", "g"), fifoMsg("2", "g"), fifoMsg("3", "g")}, clk.Now())
	require.Empty(t, o.taken, "no message of the response reached a worker during its dispatch")
	first := <-d.work
	require.Equal(t, "1", first.msg.ID)
	require.Empty(t, d.work, "2 and 3 wait behind 1")
	d.forget(first)
	_, released := d.next(first, false, 0)
	ids := make([]string, 0, len(released))
	for _, rec := range released {
		ids = append(ids, rec.msg.ID)
		d.forget(rec)
	}
	assert.Equal(t, []string{"2", "3"}, ids, "1 failed: the rest of its group goes back behind it")
}
