package sqspool

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/clock"
	"github.com/sqspool/sqspool/sqsfake"
)

// panickyObserver panics in every method it has.
type panickyObserver struct{}

func (panickyObserver) Received(*Message) { panic("observer: received") }
func (panickyObserver) Start(context.Context, *Message) (context.Context, func(error)) {
	panic("observer: start")
}
func (panickyObserver) Deleted(*Message)                       { panic("observer: deleted") }
func (panickyObserver) Call(string, int, time.Duration, error) { panic("observer: call") }

// Defect 8: a panicking Decoder is a decode error under the decode policy,
// and a panicking ErrorHook or Observer is logged, never the end of the
// process.
func TestPanickingDecoderHookAndObserverDoNotCrash(t *testing.T) {
	for _, policy := range []DecodeFailurePolicy{LeaveMalformed, DeleteMalformed} {
		e := newEnv(t, nil)
		e.send("bad", "id=1")
		errs := newErrorLog()
		s := newSeen()
		hookCalls := 0
		p := e.start(s.handler, WithWorkers(1), WithMaxMessages(1), WithDecodeFailure(policy),
			WithDecoder(func(body string, o *order) error {
				if body == "bad" {
					panic("decoder: bad body")
				}
				o.ID = 1
				return nil
			}),
			WithObserver(panickyObserver{}),
			WithErrorHook(func(ctx context.Context, m *Message, err error) {
				errs.hook(ctx, m, err)
				hookCalls++ // one worker: no race
				panic("hook: " + err.Error())
			}))
		var derr *DecodeError
		require.ErrorAs(t, errs.next(t), &derr)
		var perr *PanicError
		require.ErrorAs(t, derr, &perr, "the decoder's panic is in the decode error")
		assert.Equal(t, "decoder: bad body", perr.Value)
		assert.Equal(t, []int{1}, s.wait(t, 1), "the pool went on to the next message")
		e.shutdown(p)
		st := p.Stats()
		assert.EqualValues(t, 1, st.DecodeErrors)
		assert.EqualValues(t, 1, st.Processed)
		msgs := e.fake.Messages(e.queue)
		if policy == DeleteMalformed {
			assert.Empty(t, msgs, "deleted by policy")
		} else {
			require.Len(t, msgs, 1, "left for the redrive policy")
			assert.Equal(t, "bad", msgs[0].Body)
		}
	}
}

// Defect 7: the handler's time counts from when its message arrived, not
// from when the long poll that brought it was sent.
func TestHandlerTimeoutCountsFromArrivalNotFromThePoll(t *testing.T) {
	e := newEnv(t, nil)
	left := make(chan time.Duration, 1)
	p := e.start(func(ctx context.Context, o *order) error {
		d, ok := ctx.Deadline()
		require.True(t, ok)
		require.NoError(t, ctx.Err())
		left <- time.Until(d)
		return nil
	}, WithWorkers(1), WithHandlerTimeout(5*time.Second))
	require.True(t, e.clk.BlockUntil(2, nil)) // the watchdog's tick and the long poll's wait
	e.clk.Advance(15 * time.Second)           // 15 s into the 20 s poll ...
	e.sendOrders(1)                           // ... the message arrives
	assert.Greater(t, <-left, 4*time.Second, "the whole handler timeout is left")
	e.shutdown(p)
}

// Defect 5: the heartbeat stops at the handler's deadline.
func TestHeartbeatStopsAtTheHandlerDeadline(t *testing.T) {
	e := newEnv(t, nil) // visibility 30 s
	e.sendOrders(1)
	started := make(chan struct{})
	release := make(chan struct{})
	clk := &armClock{Clock: e.clk, armed: make(chan time.Duration, 1000)}
	// Extensions wait for the linger, which this clock never reaches: what
	// the heartbeat asked for stays pending where the test can see it.
	p := e.start(func(ctx context.Context, o *order) error {
		close(started)
		<-release // ignores its context
		return ctx.Err()
	}, WithClock(clk), WithWorkers(1), WithHandlerTimeout(15*time.Second), WithDeleteLinger(time.Hour), WithRetryBackoff(nil))
	<-started
	tick := watchTick(30*time.Second, 15*time.Second)
	ticked := func() {
		for d := range clk.armed {
			if d == tick {
				return
			}
		}
	}
	ticked()
	for elapsed := time.Duration(0); elapsed < 40*time.Second; elapsed += tick {
		e.clk.Advance(tick)
		ticked() // the watchdog has looked at the message
	}
	assert.Zero(t, p.deq.changes.Pending(), "no extension past the handler's deadline (15 s), long before the visibility timeout (30 s) needed one")
	close(release)
	e.shutdown(p)
}

// plainDispatcher is a dispatcher for one standard queue, fed directly.
func plainDispatcher(clk clock.Clock) *dispatcher {
	d, _ := fifoDispatcher(clk)
	d.fifo = false
	return d
}

func plainMsg(id, handle string, receiveCount int) types.Message {
	return types.Message{
		MessageId: aws.String(id), ReceiptHandle: aws.String(handle), Body: aws.String("{}"),
		Attributes: map[string]string{"ApproximateReceiveCount": strconv.Itoa(receiveCount)},
	}
}

// Defect 5: SQS counts the 12 hours from the newest receive, and so must the
// cap on extensions.
func TestVisibilityCapCountsFromTheNewestDelivery(t *testing.T) {
	clk := clock.NewManual(time.Now())
	d := plainDispatcher(clk)
	d.dispatch([]types.Message{plainMsg("m", "h1", 1)}, clk.Now())
	rec := <-d.work
	clk.Advance(11 * time.Hour)
	d.dispatch([]types.Message{plainMsg("m", "h2", 2)}, clk.Now()) // received again meanwhile
	clk.Advance(90 * time.Minute)                                  // 12.5 h after the first receive
	assert.EqualValues(t, 30, visibilitySeconds(rec, 30*time.Second, clk.Now()), "1.5 h after the newest receive")
}

// Suspicion: the cap's margin must hold after rounding to whole seconds.
func TestVisibilityCapIsNotRoundedPastItsMargin(t *testing.T) {
	clk := clock.NewManual(time.Now())
	d := plainDispatcher(clk)
	received := clk.Now()
	d.dispatch([]types.Message{plainMsg("m", "h1", 1)}, received)
	rec := <-d.work
	clk.Advance(maxVisibility - 60*time.Second + 500*time.Millisecond) // 59.5 s left
	secs := visibilitySeconds(rec, time.Hour, clk.Now())
	until := clk.Now().Add(time.Duration(secs) * time.Second)
	assert.False(t, until.After(received.Add(maxVisibility-time.Second)), "%ds ends %v past the margin", secs, until.Sub(received.Add(maxVisibility-time.Second)))
	assert.Positive(t, secs)
}

// Defect 5: at the cap, the heartbeat has nothing left to extend by, and
// must not send an "extension" of 0, which makes the message visible at once.
func TestHeartbeatNeverSendsAZeroExtension(t *testing.T) {
	clk := clock.NewManual(time.Now())
	d := plainDispatcher(clk)
	d.dispatch([]types.Message{plainMsg("m", "h1", 1)}, clk.Now())
	rec := <-d.work
	cfg := defaultConfig()
	cfg.clock, cfg.deleteLinger = clk, time.Hour
	deq := newDequeuer(context.Background(), &dequeuer{clock: clk, counters: &counters{}, forget: d.forget}, &cfg)
	clk.Advance(maxVisibility)
	deq.extend(rec, 30*time.Second)
	assert.Zero(t, deq.changes.Pending(), "nothing to extend by at the cap")
	require.NoError(t, deq.close(context.Background()))
}

// Defect 9: a stop whose final flush failed does not report success.
func TestShutdownReportsDeletesThatFailedInTheFinalFlush(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(3)
	s := newSeen()
	// The linger never ends on this clock: the deletes wait for the stop.
	p := e.start(s.handler, WithDeleteLinger(time.Hour), WithBatchAttempts(1))
	s.wait(t, 3)
	e.fake.FailNext(sqsfake.OpDeleteMessageBatch, 10, nil) // InternalError
	err := p.Shutdown(context.Background())
	var serr *ShutdownError
	require.ErrorAs(t, err, &serr)
	assert.Equal(t, 3, serr.Unflushed, "three finished messages were not deleted")
	assert.Equal(t, err, p.Wait())
	_, inFlight := e.depth(e.queue)
	assert.Equal(t, 3, inFlight)
}

// Suspicion: a handler that finishes just before the shutdown deadline still
// has its delete flushed, within the flush timeout.
func TestDeleteOfAHandlerFinishingAtTheDeadlineGetsFlushTime(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	started := make(chan struct{})
	finish := make(chan struct{})
	clk := &armClock{Clock: e.clk, armed: make(chan time.Duration, 100)}
	p := e.start(func(context.Context, *order) error {
		close(started)
		<-finish
		return nil
	}, WithClock(clk), WithDeleteLinger(time.Hour), WithReceiveFill(0))
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The first delete reaches SQS as the deadline passes, and fails; it
	// must be tried again, not cut short with the deadline.
	var calls atomic.Int32
	e.fake.SetHook(func(api string, _ any) error {
		if api == sqsfake.OpDeleteMessageBatch && calls.Add(1) == 1 {
			cancel()
			return &smithy.GenericAPIError{Code: "InternalError", Fault: smithy.FaultServer}
		}
		return nil
	})
	errc := make(chan error, 1)
	go func() { errc <- p.Shutdown(ctx) }()
	require.Eventually(t, func() bool { return !p.Health().Polling }, 10*time.Second, time.Millisecond)
	close(finish)
	stopped := make(chan struct{})
	var err error
	go func() {
		err = <-errc
		close(stopped)
	}()
	for backoff := false; !backoff; {
		select {
		case d := <-clk.armed:
			backoff = d < time.Second // not the watchdog's tick, nor the linger
		case <-stopped:
			backoff = true
		}
	}
	e.clk.Advance(time.Second)
	<-stopped
	require.NoError(t, err)
	assert.EqualValues(t, 1, p.Stats().Deleted)
	assert.EqualValues(t, 2, calls.Load())
}
