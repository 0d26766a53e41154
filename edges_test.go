package sqspool

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/clock"
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
			withDecoder(func(body string, o *order) error {
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
	}, withClock(clk), WithWorkers(1), WithHandlerTimeout(15*time.Second), WithDeleteLinger(time.Hour), WithRetryBackoff(nil))
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

// A FIFO message retried in place keeps its record; when a newer delivery
// of it reaches the pool (its visibility ran out while its group waited),
// the next attempt has its handler timeout from that delivery, not from the
// first: it used to start past its deadline and be cancelled at once.
func TestRetryInPlaceAfterANewerDeliveryHasAFreshDeadline(t *testing.T) {
	clk := clock.NewManual(time.Now())
	d, _ := fifoDispatcher(clk) // deadline: a minute after arrival
	first := clk.Now()
	d.dispatch([]types.Message{plainMsg("m", "h1", 1)}, first)
	rec := <-d.work
	assert.Equal(t, first.Add(time.Minute), rec.beginAttempt(clk.Now(), nil, 0), "the first attempt")
	clk.Advance(2 * time.Minute) // the attempt failed; the group waited
	again := clk.Now()
	d.dispatch([]types.Message{plainMsg("m", "h2", 2)}, again)
	assert.Equal(t, again.Add(time.Minute), rec.deadlineAt(false), "the heartbeat keeps the waiting record for the next attempt")
	assert.Equal(t, again.Add(time.Minute), rec.beginAttempt(clk.Now(), nil, 0), "the next attempt has the newer delivery's timeout")
	clk.Advance(time.Second)
	d.dispatch([]types.Message{plainMsg("m", "h1", 1)}, clk.Now()) // an older delivery, late
	assert.Equal(t, again.Add(time.Minute), rec.beginAttempt(clk.Now(), nil, 0), "an older delivery changes nothing")
}

// Suspicion: the cap's margin must hold after rounding to whole seconds.
func TestVisibilityCapIsNotRoundedPastItsMargin(t *testing.T) {
	clk := clock.NewManual(time.Now())
	d := plainDispatcher(clk)
	received := clk.Now()
	d.dispatch([]types.Message{plainMsg("m", "h1", 1)}, received)
	rec := <-d.work
	clk.Advance(maxVisibility - visibilityMargin - 60*time.Second + 500*time.Millisecond) // 59.5 s left
	secs := visibilitySeconds(rec, time.Hour, clk.Now())
	until := clk.Now().Add(time.Duration(secs) * time.Second)
	margin := received.Add(maxVisibility - visibilityMargin)
	assert.False(t, until.After(margin), "%ds ends %v past the margin", secs, until.Sub(margin))
	assert.Positive(t, secs)
}

// The cap counts from SQS's receive, earlier than the response reached the
// pool, and an extension counts from when its request reaches SQS: with
// both calls slow (10 s each), the extension still ends inside the cap,
// which SQS would otherwise refuse.
func TestVisibilityCapLeavesRoomForSlowCalls(t *testing.T) {
	const transit = 10 * time.Second
	clk := clock.NewManual(time.Now())
	d := plainDispatcher(clk)
	sqsReceived := clk.Now()
	clk.Advance(transit)
	d.dispatch([]types.Message{plainMsg("m", "h1", 1)}, clk.Now())
	rec := <-d.work
	clk.Advance(maxVisibility - 90*time.Second)
	secs := visibilitySeconds(rec, time.Hour, clk.Now())
	applied := clk.Now().Add(transit)
	until := applied.Add(time.Duration(secs) * time.Second)
	limit := sqsReceived.Add(maxVisibility)
	assert.False(t, until.After(limit), "%ds ends %v past SQS's cap", secs, until.Sub(limit))
	assert.Positive(t, secs, "there is still time left to extend by")
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

// A delete that fails for good after the stop began, while Shutdown still
// waits for a handler (before the final flush), is a finished message the
// stop leaves undeleted: Shutdown counts it, as it counts the final flush's.
func TestShutdownReportsADeleteThatFailedWhileHandlersFinished(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(2)
	started := make(chan int, 2)
	release := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	h := func(_ context.Context, o *order) error {
		started <- o.ID
		<-release[o.ID]
		return nil
	}
	errs := newErrorLog()
	p := e.start(h, WithWorkers(2), WithBatchAttempts(1), WithErrorHook(errs.hook))
	<-started
	<-started
	e.fake.FailNext(sqsfake.OpDeleteMessageBatch, 1, nil) // InternalError
	stopped := make(chan error, 1)
	go func() { stopped <- p.Shutdown(context.Background()) }()
	<-p.stopBegun
	close(release[1])
	var aerr *APIError
	require.ErrorAs(t, errs.next(t), &aerr, "message 1's delete failed for good, with message 0 still running")
	close(release[0])
	err := <-stopped
	var serr *ShutdownError
	require.ErrorAs(t, err, &serr)
	assert.Equal(t, 1, serr.Unflushed, "message 1 finished and was not deleted")
	assert.Equal(t, err, p.Wait())
	_, inFlight := e.depth(e.queue)
	assert.Equal(t, 1, inFlight)
}

// A retry delay that reaches SQS only in the final flush, after the message
// came back, was received again and succeeded, is refused (the message is
// not in flight under the old handle, or is deleted): nothing is left
// undone, and the stop reports success.
func TestShutdownDoesNotCountAMootRetryDelayAsUnflushed(t *testing.T) {
	e := newEnv(t, nil) // visibility 30 s
	e.sendOrders(1)
	client := &heldExtension{Fake: e.fake, timeout: 2, held: make(chan struct{}), release: make(chan struct{})}
	s := newSeen()
	var calls atomic.Int32
	p, err := StartPool(context.Background(), &Consumer{Client: client, Queue: e.queue}, func(ctx context.Context, o *order) error {
		if calls.Add(1) == 1 {
			return errors.New("once") // retry in 2 s: the change is held
		}
		return s.handler(ctx, o)
	}, e.opts()...)
	require.NoError(t, err)
	<-client.held
	e.clk.Advance(31 * time.Second) // the message's visibility timeout lapses
	s.wait(t, 1)
	stopped := make(chan error, 1)
	go func() { stopped <- p.Shutdown(context.Background()) }()
	require.Eventually(t, p.deq.closing.Load, 10*time.Second, time.Millisecond, "the final flush begins")
	close(client.release)
	require.NoError(t, <-stopped)
	fs := e.fake.Stats(e.queue)
	assert.Zero(t, fs.Visible+fs.InFlight, "the second delivery's delete went through")
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
	}, withClock(clk), WithDeleteLinger(time.Hour), withReceiveFill(0))
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

// downstream is a handler whose downstream can be taken down: while it is,
// every message fails and asks to come back only in an hour, so that the
// test decides what the queue holds next.
type downstream struct {
	down atomic.Bool
	s    *seen
}

// retriesApplied waits until n messages are in flight for an hour or more
// (their RetryAfter reached the queue), so that advancing the clock by less
// does not bring them back.
func retriesApplied(t *testing.T, e *env, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		held := 0
		for _, m := range e.fake.Messages(e.queue) {
			if m.State == sqsfake.StateInFlight && !m.VisibleAt.Before(e.clk.Now().Add(time.Hour)) {
				held++
			}
		}
		return held == n
	}, 10*time.Second, time.Millisecond)
}

func (d *downstream) handler(ctx context.Context, o *order) error {
	if d.down.Load() {
		return RetryAfter(time.Hour, errors.New("downstream down"))
	}
	return d.s.handler(ctx, o)
}

// Defect 2: a probe that never reaches the handler (here an undecodable
// body) gives its admission back, and the breaker can still close.
func TestBreakerProbeThatIsNotHandledGivesItsAdmissionBack(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(2)
	d := &downstream{s: newSeen()}
	d.down.Store(true)
	changes := make(chan BreakerState, 10)
	errs := newErrorLog()
	p := e.start(d.handler, WithWorkers(1), WithMaxMessages(1), WithErrorHook(errs.hook),
		WithCircuitBreaker(CircuitBreaker{
			MinRequests: 2, CoolDown: time.Minute, Probes: 1,
			OnStateChange: func(_, to BreakerState) { changes <- to },
		}))
	require.Equal(t, BreakerOpen, <-changes)
	retriesApplied(t, e, 2)
	// The poller is parked: waiting out the cool-down, or in a long poll
	// let in before the breaker opened. Timers: the watchdog's, and the
	// cool-down's or the long poll's.
	require.True(t, e.clk.BlockUntil(2, nil))
	e.clk.Advance(20 * time.Second) // such a long poll ends, empty
	require.True(t, e.clk.BlockUntil(2, nil))
	e.send("not json") // the only message the probe can get
	e.clk.Advance(40 * time.Second)
	require.Equal(t, BreakerHalfOpen, <-changes)
	for {
		var derr *DecodeError
		if errors.As(errs.next(t), &derr) {
			break
		}
	}
	assert.Zero(t, p.Stats().Returned, "the probe's receive brought it, not one let in before the breaker opened")
	d.down.Store(false)
	e.send(`{"id":7}`)
	assert.Equal(t, []int{7}, d.s.wait(t, 1), "a second probe was let in")
	require.Equal(t, BreakerClosed, <-changes)
	e.shutdown(p)
}

// Suspicion: a handler that started before the breaker opened is not a probe:
// its success, once half-open, says nothing of whether the downstream is back.
func TestHandlerStartedBeforeTheBreakerOpenedIsNotAProbe(t *testing.T) {
	e := newEnv(t, nil)
	e.send(`{"id":1}`)
	release := make(chan struct{})
	started := make(chan struct{})
	changes := make(chan BreakerState, 10)
	p := e.start(func(ctx context.Context, o *order) error {
		if o.ID == 1 {
			close(started)
			<-release
			return nil
		}
		return RetryAfter(time.Hour, errors.New("downstream down"))
	}, WithWorkers(3), withReceiveFill(0), WithCircuitBreaker(CircuitBreaker{
		MinRequests: 2, CoolDown: time.Minute, Probes: 1,
		OnStateChange: func(_, to BreakerState) { changes <- to },
	}))
	<-started
	e.send(`{"id":2}`, `{"id":3}`)
	require.Equal(t, BreakerOpen, <-changes)
	retriesApplied(t, e, 2)
	e.clk.Advance(time.Minute)
	require.Equal(t, BreakerHalfOpen, <-changes)
	close(release)
	// Processed is counted after the breaker heard the outcome.
	require.Eventually(t, func() bool { return p.Stats().Processed == 1 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, BreakerHalfOpen, p.Stats().Breaker, "no probe has run yet")
	e.shutdown(p)
}

// halfOpenBreaker returns a breaker (Probes: 2) that opened and cooled down,
// and the probe admission of its two probes, both taken.
func halfOpenBreaker(t *testing.T) (*breaker, *clock.Manual, uint64) {
	clk := clock.NewManual(time.Now())
	b := newTestBreaker(clk, nil)
	for range 4 {
		b.record(errors.New("x"), 0)
	}
	clk.Advance(30 * time.Second)
	n, probe, err := b.admit(context.Background(), 10)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	return b, clk, probe
}

// Defect 2: giving an admission back wakes a poller waiting for one.
func TestBreakerUnadmitWakesWaitingPollers(t *testing.T) {
	b, _, probe := halfOpenBreaker(t)
	got := make(chan int, 1)
	go func() {
		n, _, err := b.admit(context.Background(), 10)
		assert.NoError(t, err)
		got <- n
	}()
	b.unadmit(probe, 1) // a probe that did not reach a handler
	assert.Equal(t, 1, <-got)
	b.unadmit(probe, 2)
}

// Defect 2: a probe delivered twice holds one admission; the duplicate's is
// given back at once.
func TestDuplicateProbeGivesItsAdmissionBack(t *testing.T) {
	b, clk, probe := halfOpenBreaker(t)
	d := plainDispatcher(clk)
	d.breaker = b
	d.dispatchProbes([]types.Message{plainMsg("m", "h1", 1), plainMsg("m", "h2", 2)}, clk.Now(), probe, 0)
	rec := <-d.work
	n, _, err := b.admit(context.Background(), 10)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the duplicate's admission came back")
	b.record(nil, rec.takeProbe())
	b.record(nil, probe)
	state, _ := b.snapshot()
	assert.Equal(t, BreakerClosed, state)
}

// staleRefuser is SQS refusing a delete made with a receipt handle that a
// newer delivery has replaced (ReceiptHandleIsInvalid, as FIFO queues always
// do): the entries whose handle is stale fail for good. It holds such a call
// until the test lets it go, and tells the test each receipt handle it
// hands out.
type staleRefuser struct {
	*sqsfake.Fake
	handles  chan string
	holding  chan struct{} // a delete with the stale handle has arrived
	proceed  chan struct{}
	stale    atomic.Pointer[string]
	refusals atomic.Int32
}

func (c *staleRefuser) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, o ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := c.Fake.ReceiveMessage(ctx, in, o...)
	if err == nil {
		for _, m := range out.Messages {
			c.handles <- aws.ToString(m.ReceiptHandle)
		}
	}
	return out, err
}

func (c *staleRefuser) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, o ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	cp := *in
	cp.Entries = append([]types.DeleteMessageBatchRequestEntry(nil), in.Entries...)
	for i := range cp.Entries {
		if s := c.stale.Load(); s != nil && aws.ToString(cp.Entries[i].ReceiptHandle) == *s {
			c.holding <- struct{}{}
			<-c.proceed
			c.refusals.Add(1)
			cp.Entries[i].ReceiptHandle = aws.String("refused")
		}
	}
	return c.Fake.DeleteMessageBatch(ctx, &cp, o...)
}

// Defect 3: a delete refused because its handle went stale meanwhile is made
// again with the newest handle.
func TestRefusedDeleteIsRetriedWithTheNewerHandle(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	client := &staleRefuser{Fake: e.fake, handles: make(chan string, 10), holding: make(chan struct{}, 1), proceed: make(chan struct{})}
	s := newSeen()
	armed := make(chan struct{})
	p, err := StartPool(context.Background(), &Consumer{Client: client, Queue: e.queue}, func(ctx context.Context, o *order) error {
		<-armed
		return s.handler(ctx, o)
	}, e.opts(WithWorkers(1), WithMaxMessages(1))...)
	require.NoError(t, err)
	h1 := <-client.handles
	client.stale.Store(&h1)
	close(armed)
	s.wait(t, 1)
	<-client.holding // the delete with h1 is on its way
	// SQS delivers the message again meanwhile (its visibility ended, say).
	_, err = e.fake.ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{
		QueueUrl: &e.queue, ReceiptHandle: &h1, VisibilityTimeout: 0,
	})
	require.NoError(t, err)
	<-client.handles
	// Duplicates is counted after the record took the newer handle.
	require.Eventually(t, func() bool { return p.Stats().Duplicates == 1 }, 10*time.Second, time.Millisecond)
	close(client.proceed) // h1 is refused
	require.NoError(t, p.Shutdown(context.Background()))
	assert.EqualValues(t, 1, client.refusals.Load())
	fs := e.fake.Stats(e.queue)
	assert.EqualValues(t, 1, fs.Deleted, "deleted with the newer handle")
	assert.Zero(t, fs.Visible+fs.InFlight)
	st := p.Stats()
	assert.EqualValues(t, 1, st.Deleted)
	assert.Zero(t, st.DeleteErrors)
}

// heldExtension holds the first heartbeat extension's call (VisibilityTimeout
// as given) until the test lets it go, as a slow network would.
type heldExtension struct {
	*sqsfake.Fake
	timeout int32
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

func (c *heldExtension) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, o ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	for _, en := range in.Entries {
		if en.VisibilityTimeout == c.timeout {
			c.once.Do(func() {
				close(c.held)
				<-c.release
			})
		}
	}
	return c.Fake.ChangeMessageVisibilityBatch(ctx, in, o...)
}

// Defect 6 (bbc sqs-consumer #303): a heartbeat extension already on its
// way when the handler fails must not override the retry delay the failure
// asked for: the last visibility change SQS applies is the outcome's.
func TestInFlightExtensionDoesNotOverrideTheRetryDelay(t *testing.T) {
	e := newEnv(t, nil) // visibility 30 s
	e.sendOrders(1)
	client := &heldExtension{Fake: e.fake, timeout: 30, held: make(chan struct{}), release: make(chan struct{})}
	clk := &armClock{Clock: e.clk, armed: make(chan time.Duration, 1000)}
	started, finish := make(chan struct{}), make(chan struct{})
	reported := make(chan struct{})
	p, err := StartPool(context.Background(), &Consumer{Client: client, Queue: e.queue}, func(ctx context.Context, o *order) error {
		close(started)
		<-finish
		return RetryAfter(2*time.Second, errors.New("busy"))
	}, e.opts(withClock(clk), WithWorkers(1), WithErrorHook(func(context.Context, *Message, error) { close(reported) }))...)
	require.NoError(t, err)
	<-started
	for d := range clk.armed { // the watchdog's tick
		if d == 10*time.Second {
			break
		}
	}
	e.clk.Advance(10 * time.Second) // the heartbeat extends: 20 s left is within a tick and a third
	<-client.held
	close(finish)
	<-reported // the retry delay has been asked for
	errc := make(chan error, 1)
	go func() { errc <- p.Shutdown(context.Background()) }()
	require.Eventually(t, func() bool { return !p.Health().Polling }, 10*time.Second, time.Millisecond)
	close(client.release) // the extension lands now
	require.NoError(t, <-errc)
	msgs := e.fake.Messages(e.queue)
	require.Len(t, msgs, 1)
	assert.Equal(t, e.clk.Now().Add(2*time.Second), msgs[0].VisibleAt, "the retry delay is the last change applied")
}

// Defect 4: a handler may stop its own pool, passing its context (or one
// derived from it, also from a goroutine it starts and waits for): the
// context tells Shutdown that the stop waits for its caller. Shutdown must
// not wait for the handler that called it, and that handler's message ends
// by its result.
func TestShutdownFromInsideAHandler(t *testing.T) {
	for _, tc := range []struct {
		name     string
		shutdown func(ctx context.Context, p *Pool) error
	}{
		{"its own context", func(ctx context.Context, p *Pool) error { return p.Shutdown(ctx) }},
		{"a derived context", func(ctx context.Context, p *Pool) error {
			type key struct{}
			ctx, cancel := context.WithCancel(context.WithValue(ctx, key{}, 1))
			defer cancel()
			return p.Shutdown(ctx)
		}},
		{"a goroutine the handler waits for", func(ctx context.Context, p *Pool) error {
			var err error
			var wg sync.WaitGroup
			wg.Go(func() { err = p.Shutdown(ctx) })
			wg.Wait()
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.sendOrders(1)
			var p *Pool
			shutdownErr := make(chan error, 1)
			ready := make(chan struct{})
			p = e.start(func(ctx context.Context, o *order) error {
				<-ready
				shutdownErr <- tc.shutdown(ctx, p)
				return nil
			})
			close(ready)
			waited := make(chan error, 1)
			go func() { waited <- p.Wait() }()
			require.NoError(t, within(t, waited, "Shutdown from a handler deadlocked the pool"))
			require.NoError(t, <-shutdownErr)
			fs := e.fake.Stats(e.queue)
			assert.EqualValues(t, 1, fs.Deleted, "the handler succeeded: its message was deleted")
			assert.Zero(t, fs.Visible+fs.InFlight)
			assert.EqualValues(t, 1, p.Stats().Processed)
		})
	}
}

// Only a handler of the pool itself is its caller: a context from another
// pool's handler does not make Shutdown return before the stop has ended.
func TestShutdownWithAnotherPoolsHandlerContextWaits(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	started, release := make(chan struct{}), make(chan struct{})
	var returned atomic.Bool
	p := e.start(func(context.Context, *order) error {
		close(started)
		<-release
		returned.Store(true)
		return nil
	})
	<-started
	other := newEnvNamed(t, "other", nil)
	other.sendOrders(1)
	stopped := make(chan bool, 1)
	o := other.start(func(ctx context.Context, _ *order) error {
		err := p.Shutdown(ctx)
		stopped <- returned.Load() // the stop waited for p's handler
		return err
	})
	require.Eventually(t, func() bool { return !p.Health().Polling }, 10*time.Second, time.Millisecond)
	close(release)
	assert.True(t, <-stopped, "Shutdown returned before the stop it began had ended")
	other.shutdown(o)
}

// Defect 1: the stop and the workers both take unstarted records from the
// work queue; a worker taking the last one as the stop looks must not leave
// the stop waiting for ever. Each record is given back once, by whoever took
// it.
func TestShutdownAsWorkersTakeTheLastUnstartedRecords(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(5)
	release := make(chan struct{})
	started := make(chan struct{}, 5)
	s := newSeen()
	p := e.start(func(ctx context.Context, o *order) error {
		started <- struct{}{}
		<-release
		return s.handler(ctx, o)
	}, WithWorkers(2), withReceiveFill(0))
	// A read-ahead of three (the sizer keeps it: on this clock its next turn
	// never comes), so that three records wait for the two busy workers.
	p.sizer.mu.Lock()
	p.sizer.lastAt = e.clk.Now()
	p.sizer.mu.Unlock()
	p.readAhead.Store(3)
	p.credits.release(3)
	<-started
	<-started
	require.Eventually(t, func() bool { return len(p.work) == 3 }, 10*time.Second, time.Millisecond)
	errc := make(chan error, 1)
	go func() { errc <- p.Shutdown(context.Background()) }()
	require.Eventually(t, func() bool { return !p.Health().Polling }, 10*time.Second, time.Millisecond)
	// The workers finish and race the stop for the waiting records.
	close(release)
	require.NoError(t, within(t, errc, "Shutdown hung"))
	assert.Len(t, s.snapshot(), 2, "only the two started messages ran")
	st := p.Stats()
	assert.EqualValues(t, 3, st.Returned, "each unstarted message was given back once: %+v %+v", st, e.fake.Stats(e.queue))
	assert.EqualValues(t, 2, st.Deleted)
	assert.Zero(t, st.InFlight)
	fs := e.fake.Stats(e.queue)
	assert.Equal(t, 3, fs.Visible)
	assert.Zero(t, fs.InFlight)
}

// Suspicion: deliveries handed over out of order. A delivery with a lower
// receive count than the one held is older and never takes over. With equal
// counts nothing tells which is newer (ApproximateReceiveCount is
// approximate, and concurrent polls overlap): the record keeps both handles
// (see TestEqualReceiveCountsUseBothHandles), and the timing of the earlier
// delivery, so that the heartbeat and the 12 h cap suit both. A higher
// count replaces them all.
func TestOlderDeliveryArrivingLateDoesNotTakeOver(t *testing.T) {
	clk := clock.NewManual(time.Now())
	d := plainDispatcher(clk)
	first := clk.Now()
	clk.Advance(time.Second)
	d.dispatch([]types.Message{plainMsg("m", "h3", 3)}, clk.Now())
	rec := <-d.work
	d.dispatch([]types.Message{plainMsg("m", "h2", 2)}, first) // an older delivery, late
	hs, gen := rec.receipt()
	assert.Equal(t, []string{"h3"}, hs)
	assert.Zero(t, gen)
	visible := rec.visibleAt()
	d.dispatch([]types.Message{plainMsg("m", "h3b", 3)}, first) // equal counts, polled earlier
	hs, gen = rec.receipt()
	assert.Equal(t, []string{"h3", "h3b"}, hs, "equal counts: both")
	assert.EqualValues(t, 1, gen)
	assert.Equal(t, visible.Add(-time.Second), rec.visibleAt(), "the earlier delivery's visibility")
	assert.Equal(t, first.Add(maxVisibility-visibilityMargin), rec.capAt(), "the earlier delivery's cap")
	d.dispatch([]types.Message{plainMsg("m", "h3b", 3)}, clk.Now()) // the same delivery again
	_, gen = rec.receipt()
	assert.EqualValues(t, 1, gen)
	d.dispatch([]types.Message{plainMsg("m", "h4", 4)}, clk.Now())
	hs, gen = rec.receipt()
	assert.Equal(t, []string{"h4"}, hs)
	assert.EqualValues(t, 2, gen)
}

// lateTwin is two receive responses arriving in the opposite order of SQS's
// receives, both with the same (approximate) receive count: the first
// receive's delivery (h1) is held back while the message is received again
// (h2), and handed over only in the next response. Nothing tells the pool
// which of the two handles is the newer one.
type lateTwin struct {
	*sqsfake.Fake
	calls   atomic.Int32
	held    atomic.Pointer[types.Message]
	changed chan struct{} // a visibility change has its answer
}

func (c *lateTwin) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, o ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	defer func() { c.changed <- struct{}{} }()
	return c.Fake.ChangeMessageVisibilityBatch(ctx, in, o...)
}

func (c *lateTwin) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, o ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	switch c.calls.Add(1) {
	case 1:
		out, err := c.Fake.ReceiveMessage(ctx, in, o...)
		if err != nil || len(out.Messages) != 1 {
			return out, err
		}
		first := out.Messages[0]
		c.held.Store(&first)
		// Visible again (its visibility ended, say): received again.
		if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: in.QueueUrl, ReceiptHandle: first.ReceiptHandle,
		}); err != nil {
			return nil, err
		}
		if out, err = c.Fake.ReceiveMessage(ctx, in, o...); err != nil {
			return out, err
		}
		for i := range out.Messages {
			out.Messages[i].Attributes = withReceiveCount(out.Messages[i].Attributes, first.Attributes["ApproximateReceiveCount"])
		}
		return out, nil
	case 2:
		return &sqs.ReceiveMessageOutput{Messages: []types.Message{*c.held.Load()}}, nil
	}
	return c.Fake.ReceiveMessage(ctx, in, o...)
}

func withReceiveCount(attrs map[string]string, count string) map[string]string {
	cp := make(map[string]string, len(attrs))
	for k, v := range attrs {
		cp[k] = v
	}
	cp["ApproximateReceiveCount"] = count
	return cp
}

// deletions counts the Observer's Deleted calls.
type deletions struct {
	NopObserver
	n atomic.Int32
}

func (o *deletions) Deleted(*Message) { o.n.Add(1) }

// Suspicion: two deliveries of a message in flight with equal receive
// counts. Keeping one handle loses when it is the stale one: the delete
// "succeeds" and deletes nothing, and a visibility change (a retry delay, a
// heartbeat) is refused. Both handles are used; the stale one's refusal is
// not a failure, and the message counts as deleted (or extended) once.
func TestEqualReceiveCountsUseBothHandles(t *testing.T) {
	for _, tc := range []struct {
		name      string
		result    error
		heartbeat bool
	}{
		{"delete", nil, false},
		{"retry delay", RetryAfter(5*time.Second, errors.New("busy")), false},
		{"heartbeat", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil) // visibility 30 s
			e.sendOrders(1)
			client := &lateTwin{Fake: e.fake, changed: make(chan struct{}, 10)}
			clk := &armClock{Clock: e.clk, armed: make(chan time.Duration, 1000)}
			obs := &deletions{}
			errs := newErrorLog()
			started, finish := make(chan struct{}), make(chan struct{})
			p, err := StartPool(context.Background(), &Consumer{Client: client, Queue: e.queue}, func(ctx context.Context, o *order) error {
				close(started)
				<-finish
				return tc.result
			}, e.opts(withClock(clk), WithWorkers(2), WithMaxMessages(1), WithPollers(1), WithObserver(obs), WithErrorHook(errs.hook))...)
			require.NoError(t, err)
			<-started
			// Duplicates is counted after the record took the other handle.
			require.Eventually(t, func() bool { return p.Stats().Duplicates == 1 }, 10*time.Second, time.Millisecond)
			if tc.heartbeat {
				for d := range clk.armed { // the watchdog's tick
					if d == 10*time.Second {
						break
					}
				}
				e.clk.Advance(10 * time.Second) // 20 s left: the heartbeat extends
				<-client.changed
			}
			close(finish)
			if tc.result != nil {
				assert.Equal(t, tc.result, errs.next(t))
			}
			require.NoError(t, p.Shutdown(context.Background()))
			assert.Zero(t, len(errs.ch), "no failure reported for the stale handle")
			fs := e.fake.Stats(e.queue)
			st := p.Stats()
			if tc.heartbeat {
				assert.EqualValues(t, 1, st.Extended)
			}
			if tc.result == nil {
				assert.EqualValues(t, 1, fs.Deleted, "deleted with the newer handle: %+v", fs)
				assert.Zero(t, fs.Visible+fs.InFlight)
				assert.EqualValues(t, 1, st.Deleted)
				assert.EqualValues(t, 1, obs.n.Load())
				assert.Zero(t, st.DeleteErrors)
				return
			}
			msgs := e.fake.Messages(e.queue)
			require.Len(t, msgs, 1)
			assert.Equal(t, e.clk.Now().Add(5*time.Second), msgs[0].VisibleAt, "the retry delay was applied")
			assert.Zero(t, st.Deleted)
		})
	}
}

// flakyHandle fails, once, the delete entry made with one receipt handle,
// transiently (InternalError), and records each call's entry ids.
type flakyHandle struct {
	*sqsfake.Fake
	fail  atomic.Pointer[string]
	mu    sync.Mutex
	calls [][]string
}

func (c *flakyHandle) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, o ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	cp := *in
	cp.Entries = nil
	var ids []string
	var failed []types.BatchResultErrorEntry
	for _, en := range in.Entries {
		ids = append(ids, aws.ToString(en.Id))
		if f := c.fail.Load(); f != nil && *f == aws.ToString(en.ReceiptHandle) && c.fail.CompareAndSwap(f, nil) {
			failed = append(failed, types.BatchResultErrorEntry{Id: en.Id, Code: aws.String("InternalError"), Message: aws.String("injected")})
			continue
		}
		cp.Entries = append(cp.Entries, en)
	}
	c.mu.Lock()
	c.calls = append(c.calls, ids)
	c.mu.Unlock()
	out, err := c.Fake.DeleteMessageBatch(ctx, &cp, o...)
	if err == nil {
		out.Failed = append(out.Failed, failed...)
	}
	return out, err
}

// A message with two handles takes two of a call's ten entries; what does
// not fit goes in the next call. The stale handle's delete "succeeding" is
// not enough while the other's failed transiently: the message is deleted
// again, with both, and counted once.
func TestTiedHandlesShareBatchesAndAStaleSuccessIsNotEnough(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(maxBatch)
	ctx := context.Background()
	out, err := e.fake.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &e.queue, MaxNumberOfMessages: maxBatch})
	require.NoError(t, err)
	require.Len(t, out.Messages, maxBatch)
	recs := make([]*record, maxBatch)
	for i, m := range out.Messages {
		recs[i] = &record{handles: []string{aws.ToString(m.ReceiptHandle)}}
		recs[i].m.ID = aws.ToString(m.MessageId)
		recs[i].msg = &recs[i].m
	}
	// The first message is received again: its first handle is stale now.
	_, err = e.fake.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &e.queue, ReceiptHandle: &recs[0].handles[0]})
	require.NoError(t, err)
	again, err := e.fake.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &e.queue})
	require.NoError(t, err)
	require.Len(t, again.Messages, 1)
	newer := aws.ToString(again.Messages[0].ReceiptHandle)
	recs[0].handles = append(recs[0].handles, newer)
	client := &flakyHandle{Fake: e.fake}
	client.fail.Store(&newer)
	var deleted atomic.Int32
	deq := &dequeuer{
		client: client, queueURL: e.queue, attempts: 3, clock: e.clk, counters: &counters{}, log: quietLogger(),
		onError: func(_ *Message, err error) { t.Errorf("reported: %v", err) },
		forget:  func(*record) {}, gone: func(*record) {},
		observe: func(api, int, time.Time, error) {},
		deleted: func(*Message) { deleted.Add(1) },
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		deq.flushDeletes(ctx, recs)
	}()
	require.True(t, e.clk.BlockUntil(1, done), "the transient failure is retried after a backoff")
	e.clk.Advance(time.Second)
	<-done
	require.Len(t, client.calls, 2)
	assert.Len(t, client.calls[0], maxBatch, "the first call is full")
	assert.Len(t, client.calls[1], 3, "the last message, and the first with both handles again")
	for _, ids := range client.calls {
		seen := map[string]bool{}
		for _, id := range ids {
			assert.False(t, seen[id], "entry ids distinct in a call: %v", ids)
			seen[id] = true
		}
	}
	fs := e.fake.Stats(e.queue)
	assert.EqualValues(t, maxBatch, fs.Deleted)
	assert.EqualValues(t, 2, fs.StaleDeletes, "the stale handle, in each call")
	assert.Zero(t, fs.Visible+fs.InFlight)
	assert.EqualValues(t, maxBatch, deleted.Load())
	assert.EqualValues(t, maxBatch, deq.counters.deleted.Load())
	assert.Zero(t, deq.counters.deleteErrors.Load())
}

// A message's result from its entries' (see layout.results).
func TestTiedHandleResults(t *testing.T) {
	const (
		ok        = "ok"
		refused   = "refused"
		transient = "transient"
		none      = "none"
	)
	for _, tc := range []struct {
		entries []string
		want    string
	}{
		{[]string{ok}, ok},
		{[]string{refused}, refused},
		{[]string{ok, refused}, ok},
		{[]string{refused, ok}, ok},
		{[]string{refused, refused}, refused},
		{[]string{ok, transient}, transient},
		{[]string{refused, transient}, transient},
		{[]string{ok, none}, none},
		{[]string{transient, none}, none},
	} {
		var l layout
		hs := make([]string, len(tc.entries))
		later := l.reset([]int{0}, func(int) []string { return hs })
		require.Empty(t, later)
		var succeeded []string
		var failed []types.BatchResultErrorEntry
		for j, r := range tc.entries {
			switch r {
			case ok:
				succeeded = append(succeeded, entryIDs[j])
			case refused, transient:
				failed = append(failed, types.BatchResultErrorEntry{Id: &entryIDs[j], Code: aws.String(r), SenderFault: r == refused})
			}
		}
		okIDs, fails := l.results(succeeded, failed)
		got := none
		switch {
		case len(okIDs)+len(fails) > 1:
			got = "several results"
		case len(okIDs) == 1:
			got = ok
		case len(fails) == 1:
			got = aws.ToString(fails[0].Code)
			assert.Equal(t, entryIDs[0], aws.ToString(fails[0].Id), "named after the message")
		}
		assert.Equal(t, tc.want, got, "%v", tc.entries)
	}
}

// stuckReceive makes every receive after the first wait, whatever its
// context, until the test lets it go: a stop cannot get past its receives.
type stuckReceive struct {
	*sqsfake.Fake
	calls   atomic.Int32
	stuck   chan struct{} // closed as the second receive begins to wait
	release chan struct{}
}

func (c *stuckReceive) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, o ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	if n := c.calls.Add(1); n > 1 {
		if n == 2 {
			close(c.stuck)
		}
		<-c.release
		return &sqs.ReceiveMessageOutput{}, nil
	}
	return c.Fake.ReceiveMessage(ctx, in, o...)
}

// A handler's context is its record's, made live again for the next
// attempt of a FIFO retry in place: a stop the handler began must take what
// it needs from that context (its deadline) before Shutdown returns, never
// read it later, as the next attempt runs (a data race under -race).
func TestShutdownFromAHandlerDoesNotReadItsContextLater(t *testing.T) {
	e := newEnvNamed(t, "orders.fifo", map[string]string{"FifoQueue": "true"})
	e.sendFIFO("g", 1)
	client := &stuckReceive{Fake: e.fake, stuck: make(chan struct{}), release: make(chan struct{})}
	var p atomic.Pointer[Pool]
	started, second := make(chan struct{}), make(chan struct{})
	attempts := 0 // one worker
	pool, err := StartPool(context.Background(), &Consumer{Client: client, Queue: e.queue}, func(ctx context.Context, o *order) error {
		if attempts++; attempts == 1 {
			<-started
			<-client.stuck // so the stop waits for that receive
			assert.NoError(t, p.Load().Shutdown(ctx))
			return errors.New("fails once") // retried in place at once: the stop is still ending its receives
		}
		close(second)
		return nil
	}, e.opts(WithWorkers(1), withReceiveFill(0))...)
	require.NoError(t, err)
	p.Store(pool)
	close(started)
	<-second
	close(client.release)
	require.NoError(t, pool.Wait())
	assert.EqualValues(t, 1, e.fake.Stats(e.queue).Deleted)
}

// A FIFO message that waited here behind its group has its whole handler
// timeout when its turn comes, as long as SQS still keeps it invisible: it
// used to count from its arrival, so that with ten messages of a group in
// one receive, 1 s handlers and a 3 s timeout, every fourth message started
// with no time left, failed its local attempts at once, and sent its group
// back to the queue, spending a receive (found by the simulator, seed
// 738445).
func TestHeldFIFOMessageHasItsWholeHandlerTimeout(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		f := sqsfake.New(sqsfake.WithSeed(1))
		url := f.MustCreateQueue("held.fifo", map[string]string{"FifoQueue": "true", "VisibilityTimeout": "30"})
		entries := make([]types.SendMessageBatchRequestEntry, 10)
		for i := range entries {
			id := strconv.Itoa(i)
			entries[i] = types.SendMessageBatchRequestEntry{
				Id: aws.String(id), MessageBody: aws.String(`{"id":` + id + `}`),
				MessageGroupId: aws.String("g"), MessageDeduplicationId: aws.String(id),
			}
		}
		_, err := f.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
		require.NoError(t, err)
		const timeout = 3 * time.Second
		var mu sync.Mutex
		var short []string // runs that began with less than the timeout left, or a second receive
		done := make(chan struct{})
		ran := 0
		p, err := StartPool(context.Background(), &Consumer{Client: f, Queue: url},
			func(ctx context.Context, o *order) error {
				dl, _ := ctx.Deadline()
				m, _ := MessageFrom(ctx)
				mu.Lock()
				if left := time.Until(dl); left < timeout-time.Second/10 || ctx.Err() != nil || m.ReceiveCount != 1 {
					short = append(short, fmt.Sprintf("%d: %v left, err %v, receive %d", o.ID, left, ctx.Err(), m.ReceiveCount))
				}
				mu.Unlock()
				select {
				case <-time.After(time.Second):
				case <-ctx.Done():
					return ctx.Err()
				}
				mu.Lock()
				if ran++; ran == len(entries) {
					close(done)
				}
				mu.Unlock()
				return nil
			}, WithWorkers(4), WithHandlerTimeout(timeout), WithLogger(quietLogger()))
		require.NoError(t, err)
		<-done
		require.NoError(t, p.Shutdown(context.Background()))
		mu.Lock()
		defer mu.Unlock()
		assert.Empty(t, short)
		assert.Zero(t, p.Stats().Failed)
	})
}

// The fresh timeout of a message that waited needs SQS to keep it
// invisible long enough for the heartbeat to take it on; otherwise the
// attempt keeps the deadline it had.
func TestWaitingMessageGetsAFreshDeadlineOnlyWhileInvisible(t *testing.T) {
	now := time.Now()
	fresh := func(_, at time.Time) time.Time { return at.Add(time.Minute) }
	rec := &record{deadline: now.Add(-time.Second), visibleUntil: now.Add(20 * time.Second)}
	assert.Equal(t, now.Add(time.Minute), rec.beginAttempt(now, fresh, 10*time.Second), "invisible for 20 s more")
	rec = &record{deadline: now.Add(-time.Second), visibleUntil: now.Add(5 * time.Second)}
	assert.Equal(t, now.Add(-time.Second), rec.beginAttempt(now, fresh, 10*time.Second), "visible again too soon")
	assert.Equal(t, now.Add(-time.Second), rec.beginAttempt(now, nil, 0), "no heartbeat")
}
