package sqspool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func (e *env) startBatch(h BatchHandler[order], more ...Option) *Pool {
	e.t.Helper()
	p, err := StartBatchPool(context.Background(), e.consumer(), h, e.opts(more...)...)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p
}

// batches records each batch handler call: the ids, and the metadata the
// handler read.
type batches struct {
	mu    sync.Mutex
	calls [][]int
	metas [][]*Message
	ch    chan []int
}

func newBatches() *batches { return &batches{ch: make(chan []int, 1000)} }

// record notes a call; fail gives its result.
func (b *batches) record(ctx context.Context, msgs []order, fail func(call int, ids []int) error) error {
	ids := make([]int, len(msgs))
	for i, o := range msgs {
		ids[i] = o.ID
	}
	metas, _ := MessagesFrom(ctx)
	b.mu.Lock()
	b.calls = append(b.calls, ids)
	b.metas = append(b.metas, metas)
	call := len(b.calls)
	b.mu.Unlock()
	b.ch <- ids
	if fail == nil {
		return nil
	}
	return fail(call, ids)
}

func (b *batches) handler(ctx context.Context, msgs []order) error { return b.record(ctx, msgs, nil) }

// failingOnce is a handler whose first call fails msgs[i] alone.
func (b *batches) failingOnce(i int) BatchHandler[order] {
	return func(ctx context.Context, msgs []order) error {
		return b.record(ctx, msgs, func(call int, _ []int) error {
			if call == 1 {
				return BatchErrors{i: errors.New("failed once")}
			}
			return nil
		})
	}
}

// next waits for the next batch handler call and returns its ids.
func (b *batches) next(t *testing.T) []int {
	t.Helper()
	timeout := time.NewTimer(30 * time.Second) // a hang guard
	defer timeout.Stop()
	select {
	case ids := <-b.ch:
		return ids
	case <-timeout.C:
		t.Fatal("no batch handler call")
		return nil
	}
}

// nextLingering waits for the next batch handler call, ending each linger
// a gatherer reports on holding (a report from a gathering that ended
// already only moves the clock on by a linger).
func (b *batches) nextLingering(t *testing.T, e *env, holding chan int, linger time.Duration) []int {
	t.Helper()
	timeout := time.NewTimer(30 * time.Second) // a hang guard
	defer timeout.Stop()
	for {
		select {
		case ids := <-b.ch:
			return ids
		case <-holding:
			e.clk.Advance(linger)
		case <-timeout.C:
			t.Fatal("no batch handler call")
			return nil
		}
	}
}

// lingerForever: a batch leaves only when full (or at a stop).
var lingerForever = WithBatchLinger(time.Hour)

// constantBackoff makes a failed message's delay exact.
func constantBackoff(d time.Duration) Option {
	return WithRetryBackoff(func(int) time.Duration { return d })
}

// visibleAt returns when each message of the queue (by its order's id) is
// visible next.
func (e *env) visibleAt() map[int]time.Time {
	out := map[int]time.Time{}
	for _, m := range e.fake.Messages(e.queue) {
		var o order
		_, _ = fmt.Sscanf(m.Body, `{"id":%d`, &o.ID)
		out[o.ID] = m.VisibleAt
	}
	return out
}

func TestBatchGathersAcrossReceivesAndDeletesEveryMessage(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(20)
	b := newBatches()
	// Receives of 5 fill batches of 10.
	p := e.startBatch(b.handler, WithBatchSize(10), lingerForever, WithMaxMessages(5), WithWorkers(2))
	got := append(b.next(t), b.next(t)...)
	e.shutdown(p)
	slices.Sort(got)
	for i, id := range got {
		require.Equal(t, i, id)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	require.Len(t, b.calls, 2)
	for c, ids := range b.calls {
		assert.Len(t, ids, 10)
		require.Len(t, b.metas[c], 10, "MessagesFrom gives every message's metadata")
		for i, m := range b.metas[c] {
			assert.Equal(t, fmt.Sprintf(`{"id":%d}`, ids[i]), m.Body, "index for index")
			assert.Equal(t, 1, m.ReceiveCount)
		}
	}
	st := p.Stats()
	assert.EqualValues(t, 20, st.Processed)
	assert.EqualValues(t, 20, st.Deleted)
	assert.GreaterOrEqual(t, st.Calls["ReceiveMessage"], int64(4))
	visible, inFlight := e.depth(e.queue)
	assert.Zero(t, visible+inFlight)
	assert.Zero(t, inflightLen(p))
}

func TestBatchHandlerHasNoSingleMessage(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	got := make(chan bool, 1)
	p := e.startBatch(func(ctx context.Context, _ []order) error {
		_, ok := MessageFrom(ctx)
		got <- ok
		return nil
	}, WithBatchSize(1))
	assert.False(t, <-got)
	e.shutdown(p)
}

func TestBatchPartialFailureSettlesEachMessage(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(5)
	b := newBatches()
	errs := newErrorLog()
	holding := make(chan int, 100)
	p := e.startBatch(func(ctx context.Context, msgs []order) error {
		return b.record(ctx, msgs, func(call int, ids []int) error {
			if call > 1 {
				return nil
			}
			out := BatchErrors{}
			for i, id := range ids {
				switch id {
				case 1:
					out[i] = errors.New("one failed")
				case 2:
					out[i] = RetryAfter(time.Minute, errors.New("two later"))
				case 3:
					out[i] = NoRetry(errors.New("three never"))
				case 4:
					out[i] = nil // an entry without an error succeeded
				}
			}
			return fmt.Errorf("saving: %w", out) // wrapped, still found
		})
	}, WithBatchSize(5), WithBatchLinger(time.Second), constantBackoff(5*time.Second), WithErrorHook(errs.hook),
		func(c *config) { c.batch.waiting = func(n int) { holding <- n } })
	assert.Len(t, b.next(t), 5)
	for range 3 {
		errs.next(t)
	}
	now := e.clk.Now()
	require.Eventually(t, func() bool {
		vis := e.visibleAt()
		return len(vis) == 2 && vis[1].Equal(now.Add(5*time.Second)) && vis[2].Equal(now.Add(time.Minute))
	}, 10*time.Second, time.Millisecond, "0, 3 and 4 deleted; 1 after the backoff, 2 after its RetryAfter")
	st := p.Stats()
	assert.EqualValues(t, 2, st.Processed)
	assert.EqualValues(t, 3, st.Failed)
	assert.EqualValues(t, 2, st.Retried)
	assert.EqualValues(t, 1, st.Dropped)

	// Each comes back alone, and runs once the linger ends.
	e.clk.Advance(5 * time.Second)
	assert.Equal(t, []int{1}, b.nextLingering(t, e, holding, time.Second), "the failed message alone comes back")
	require.Eventually(t, func() bool { return len(e.visibleAt()) == 1 }, 10*time.Second, time.Millisecond,
		"1 deleted before the clock moves past its visibility timeout")
	e.clk.Advance(time.Minute - 5*time.Second)
	assert.Equal(t, []int{2}, b.nextLingering(t, e, holding, time.Second))
	e.shutdown(p)
	visible, inFlight := e.depth(e.queue)
	assert.Zero(t, visible+inFlight)
}

func TestBatchOneErrorFailsEveryMessage(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(3)
	b := newBatches()
	errs := newErrorLog()
	p := e.startBatch(func(ctx context.Context, msgs []order) error {
		return b.record(ctx, msgs, func(int, []int) error { return RetryAfter(time.Minute, errors.New("database down")) })
	}, WithBatchSize(3), lingerForever, WithErrorHook(errs.hook))
	assert.Len(t, b.next(t), 3)
	for range 3 {
		assert.ErrorContains(t, errs.next(t), "database down")
	}
	now := e.clk.Now()
	require.Eventually(t, func() bool {
		vis := e.visibleAt()
		return len(vis) == 3 && vis[0].Equal(now.Add(time.Minute)) && vis[1].Equal(vis[0]) && vis[2].Equal(vis[0])
	}, 10*time.Second, time.Millisecond)
	e.shutdown(p)
	st := p.Stats()
	assert.EqualValues(t, 3, st.Failed)
	assert.EqualValues(t, 3, st.Retried)
	assert.Zero(t, st.Processed)
	assert.Zero(t, st.Deleted)
}

func TestBatchEmptyBatchErrorsIsSuccess(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(2)
	b := newBatches()
	p := e.startBatch(func(ctx context.Context, msgs []order) error {
		return b.record(ctx, msgs, func(int, []int) error {
			var none BatchErrors
			return none
		})
	}, WithBatchSize(2), lingerForever)
	b.next(t)
	e.shutdown(p)
	assert.EqualValues(t, 2, p.Stats().Deleted)
}

func TestBatchPanicFailsEveryMessage(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(3)
	errs := newErrorLog()
	p := e.startBatch(func(context.Context, []order) error { panic("boom") },
		WithBatchSize(3), lingerForever, WithErrorHook(errs.hook), WithRetryBackoff(nil))
	for range 3 {
		var perr *PanicError
		require.ErrorAs(t, errs.next(t), &perr)
		assert.Equal(t, "boom", perr.Value)
		assert.Contains(t, string(perr.Stack), "batch_test.go", "the stack points at the panic")
	}
	e.shutdown(p)
	st := p.Stats()
	assert.EqualValues(t, 3, st.Panics)
	assert.EqualValues(t, 3, st.Failed)
	_, inFlight := e.depth(e.queue)
	assert.Equal(t, 3, inFlight, "no panicking message was deleted")
}

func TestBatchMalformedBodyNeverEntersABatch(t *testing.T) {
	e := newEnv(t, nil)
	e.send(`{"id":0}`, `not json`, `{"id":2}`)
	b := newBatches()
	errs := newErrorLog()
	p := e.startBatch(b.handler, WithBatchSize(3), lingerForever, WithErrorHook(errs.hook))
	assert.Equal(t, []int{0, 2}, b.next(t))
	var derr *DecodeError
	require.ErrorAs(t, errs.next(t), &derr)
	e.shutdown(p)
	b.mu.Lock()
	assert.Len(t, b.metas[0], 2, "metadata for the decoded messages only")
	b.mu.Unlock()
	st := p.Stats()
	assert.EqualValues(t, 1, st.DecodeErrors)
	assert.EqualValues(t, 2, st.Deleted)
	_, inFlight := e.depth(e.queue)
	assert.Equal(t, 1, inFlight, "left for the redrive policy")
}

func TestBatchLingerCallsTheHandlerWithAPartialBatch(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(3)
	b := newBatches()
	holding := make(chan int, 100)
	linger := 5 * time.Second
	p := e.startBatch(b.handler, WithBatchSize(10), WithBatchLinger(linger),
		func(c *config) { c.batch.waiting = func(n int) { holding <- n } })
	for n := range holding {
		if n == 3 {
			break
		}
	}
	e.clk.Advance(linger - time.Millisecond)
	e.clk.Advance(time.Millisecond)
	assert.Equal(t, []int{0, 1, 2}, b.next(t))
	e.shutdown(p)
	assert.EqualValues(t, 3, p.Stats().Deleted)
}

func TestBatchZeroLingerTakesWhatIsReady(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	b := newBatches()
	p := e.startBatch(b.handler, WithBatchSize(10), WithBatchLinger(0))
	assert.Equal(t, []int{0}, b.next(t), "no clock moved")
	e.shutdown(p)
}

func TestBatchShutdownGivesBackAGatheringBatch(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(3)
	holding := make(chan int, 100)
	p := e.startBatch(func(context.Context, []order) error {
		t.Error("a batch that was still gathering ran")
		return nil
	}, WithBatchSize(10), lingerForever, func(c *config) { c.batch.waiting = func(n int) { holding <- n } })
	for n := range holding {
		if n == 3 {
			break
		}
	}
	e.shutdown(p)
	st := p.Stats()
	assert.EqualValues(t, 3, st.Returned)
	visible, _ := e.depth(e.queue)
	assert.Equal(t, 3, visible, "given back at once")
}

func TestBatchShutdownWaitsForARunningBatch(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(3)
	started := make(chan struct{})
	finish := make(chan struct{})
	p := e.startBatch(func(context.Context, []order) error {
		close(started)
		<-finish
		return nil
	}, WithBatchSize(3), lingerForever)
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- p.Shutdown(context.Background()) }()
	<-p.stopBegun
	close(finish)
	require.NoError(t, <-stopped)
	assert.EqualValues(t, 3, p.Stats().Deleted, "the batch finished and its deletes were flushed")
	visible, inFlight := e.depth(e.queue)
	assert.Zero(t, visible+inFlight)
}

func TestBatchShutdownDeadlineCancelsTheBatch(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(3)
	started := make(chan struct{})
	p := e.startBatch(func(ctx context.Context, _ []order) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}, WithBatchSize(3), lingerForever)
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Shutdown(ctx)
	var serr *ShutdownError
	require.ErrorAs(t, err, &serr)
	assert.Equal(t, 3, serr.Cancelled, "counted per message")
	assert.Zero(t, serr.Abandoned)
	_, inFlight := e.depth(e.queue)
	assert.Equal(t, 3, inFlight, "a cancelled batch's messages are not deleted")
	assert.Zero(t, p.Stats().Deleted)
}

func TestBatchHeartbeatKeepsARunningBatchInvisible(t *testing.T) {
	e := newEnv(t, nil) // visibility 30 s
	e.sendOrders(3)
	started := make(chan struct{})
	finish := make(chan struct{})
	clk := &armClock{Clock: e.clk, armed: make(chan time.Duration, 1000)}
	p := e.startBatch(func(context.Context, []order) error {
		close(started)
		<-finish
		return nil
	}, withClock(clk), WithBatchSize(3), lingerForever)
	<-started
	for i := 1; i <= 6; i++ {
		for d := range clk.armed {
			if d == 10*time.Second {
				break
			}
		}
		e.clk.Advance(10 * time.Second)
		require.Eventually(t, func() bool { return p.Stats().Extended == int64(3*i) }, 10*time.Second, time.Millisecond)
	}
	fs := e.fake.Stats(e.queue)
	assert.EqualValues(t, 3, fs.Received, "never delivered again while the batch ran")
	close(finish)
	e.shutdown(p)
	fs = e.fake.Stats(e.queue)
	assert.EqualValues(t, 3, fs.Deleted)
	assert.Zero(t, fs.StaleDeletes)
}

func TestBatchContextEndsAtTheHandlerTimeout(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(2)
	clk := &armClock{Clock: e.clk, armed: make(chan time.Duration, 1000)}
	started := make(chan struct{})
	got := make(chan error, 1)
	p := e.startBatch(func(ctx context.Context, _ []order) error {
		close(started)
		<-ctx.Done()
		got <- ctx.Err()
		return ctx.Err()
	}, withClock(clk), WithBatchSize(2), lingerForever, WithHandlerTimeout(20*time.Second), WithRetryBackoff(nil))
	<-started
	tick := watchTick(30*time.Second, 20*time.Second)
	for d := range clk.armed {
		if d == tick {
			break
		}
	}
	e.clk.Advance(21 * time.Second)
	assert.ErrorIs(t, <-got, context.DeadlineExceeded)
	e.shutdown(p)
	assert.EqualValues(t, 2, p.Stats().Failed)
}

func TestBatchFIFOFailureRetriesInPlaceWithTheRestOfItsGroupInOrder(t *testing.T) {
	e, _ := fifoEnv(t, 0)
	e.sendFIFO("g", 1, 2, 3, 4, 5)
	b := newBatches()
	p := e.startBatch(b.failingOnce(1), WithBatchSize(4), lingerForever)
	assert.Equal(t, []int{1, 2, 3, 4}, b.next(t))
	// 3 and 4 succeeded, but behind 2 they wait for it: 2 runs again here
	// at once, with the rest of the group behind it.
	assert.Equal(t, []int{2, 3, 4, 5}, b.next(t))
	e.shutdown(p)
	fs := e.fake.Stats(e.queue)
	assert.EqualValues(t, 5, fs.Received, "no message was received twice")
	assert.EqualValues(t, 5, fs.Deleted)
	st := p.Stats()
	assert.EqualValues(t, 5, st.Processed)
	assert.EqualValues(t, 1, st.Failed)
}

func TestBatchFIFOFailureGivesBackTheRestOfItsGroup(t *testing.T) {
	e, _ := fifoEnv(t, 0)
	e.sendFIFO("g", 1, 2, 3, 4, 5)
	b := newBatches()
	p := e.startBatch(b.failingOnce(1), WithBatchSize(4), lingerForever, WithHeartbeat(false), constantBackoff(5*time.Second), WithWorkers(1))
	assert.Equal(t, []int{1, 2, 3, 4}, b.next(t), "a batch holds a group's messages in order")
	now := e.clk.Now()
	require.Eventually(t, func() bool {
		vis := e.visibleAt()
		return len(vis) == 4 && vis[2].Equal(now.Add(5*time.Second)) && vis[3].Equal(vis[2]) && vis[4].Equal(vis[2])
	}, 10*time.Second, time.Millisecond, "3 and 4 went back with 2, whatever the handler said of them")
	assert.EqualValues(t, 2, p.Stats().Returned)
	// The group comes back after 2's delay, in order.
	e.clk.Advance(5 * time.Second)
	assert.Equal(t, []int{2, 3, 4, 5}, b.next(t))
	e.shutdown(p)
	fs := e.fake.Stats(e.queue)
	assert.EqualValues(t, 5, fs.Deleted)
	st := p.Stats()
	assert.EqualValues(t, 5, st.Processed)
	assert.EqualValues(t, 1, st.Failed)
}

func TestStartBatchPoolOptions(t *testing.T) {
	e := newEnv(t, nil)
	h := func(context.Context, []order) error { return nil }
	_, err := StartPool(context.Background(), e.consumer(), func(context.Context, *order) error { return nil }, WithBatchSize(5))
	assert.ErrorContains(t, err, "StartBatchPool only")
	_, err = StartBatchPool(context.Background(), e.consumer(), h, WithBatchSize(0))
	assert.ErrorContains(t, err, "batch size")
	_, err = StartBatchPool(context.Background(), e.consumer(), h, WithBatchLinger(-time.Second))
	assert.ErrorContains(t, err, "linger")
	_, err = StartBatchPool(context.Background(), e.consumer(), h, WithAdaptiveConcurrency(AdaptiveConcurrency{}))
	assert.ErrorContains(t, err, "batch pool")
	_, err = StartBatchPool[order](context.Background(), e.consumer(), nil)
	assert.Error(t, err)
}

func TestBatchErrorsMessage(t *testing.T) {
	err := error(BatchErrors{3: errors.New("c"), 1: errors.New("a"), 2: nil})
	assert.Equal(t, "sqspool: 2 messages of the batch failed: [1] a; [3] c", err.Error())
}

// A batch ends at its earliest message's deadline, and so does each of its
// messages' own (which the heartbeat follows): the later one's deadline
// does not keep it while a batch that ignores its context runs on. Without
// the heartbeat a deadline counts from arrival, so two messages gathered
// 10 s apart have different ones; with it, a message that waited here has
// its whole timeout from the batch's start (see
// TestHeldFIFOMessageHasItsWholeHandlerTimeout), and both share that.
func TestBatchMessagesShareTheEarliestDeadline(t *testing.T) {
	for _, heartbeat := range []bool{false, true} {
		t.Run(fmt.Sprintf("heartbeat %v", heartbeat), func(t *testing.T) {
			e := newEnv(t, nil)
			e.sendOrders(1)
			holding := make(chan int, 100)
			started := make(chan struct{})
			finish := make(chan struct{})
			p := e.startBatch(func(ctx context.Context, _ []order) error {
				close(started)
				<-finish
				return nil
			}, WithBatchSize(2), lingerForever, WithHandlerTimeout(20*time.Second), WithWorkers(1), WithHeartbeat(heartbeat),
				// The second receive must not wait for a fill timer on this clock.
				func(c *config) { c.receiveFill, c.batch.waiting = 0, func(n int) { holding <- n } })
			<-holding // the first message waits for a second
			first := e.clk.Now()
			e.clk.Advance(10 * time.Second)
			e.send(`{"id":1}`)
			<-started
			want := first.Add(20 * time.Second) // the first message's, from its arrival
			if heartbeat {
				want = first.Add(30 * time.Second) // from the batch's start, 10 s later
			}
			recs := p.disp.inFlight()
			require.Len(t, recs, 2)
			for _, rec := range recs {
				assert.Equal(t, want, rec.deadlineAt(true), "message %s", rec.msg.Body)
			}
			close(finish)
			e.shutdown(p)
			assert.EqualValues(t, 2, p.Stats().Deleted)
		})
	}
}

// On a FIFO queue a malformed message never enters a batch, and the
// messages behind it in its group do not run before it: they go back with
// it, and the group waits for it.
func TestBatchFIFOMalformedMessageHoldsItsGroup(t *testing.T) {
	e, _ := fifoEnv(t, 0)
	e.sendFIFO("g", 1)
	_, err := e.fake.SendMessage(context.Background(), &sqs.SendMessageInput{
		QueueUrl: &e.queue, MessageBody: aws.String("not json"),
		MessageGroupId: aws.String("g"), MessageDeduplicationId: aws.String("g-bad"),
	})
	require.NoError(t, err)
	e.sendFIFO("g", 3)
	b := newBatches()
	errs := newErrorLog()
	p := e.startBatch(b.handler, WithBatchSize(3), lingerForever, WithWorkers(1), WithErrorHook(errs.hook))
	assert.Equal(t, []int{1}, b.next(t))
	var derr *DecodeError
	require.ErrorAs(t, errs.next(t), &derr)
	require.Eventually(t, func() bool { return p.Stats().Returned == 1 }, 10*time.Second, time.Millisecond,
		"3 went back behind the malformed message")
	e.shutdown(p)
	b.mu.Lock()
	assert.Len(t, b.calls, 1, "3 did not run")
	b.mu.Unlock()
	st := p.Stats()
	assert.EqualValues(t, 1, st.DecodeErrors)
	assert.EqualValues(t, 1, st.Deleted)
}

// A batch handler may stop its pool with its own context, as a single
// handler may: the stop waits for the batch, so Shutdown must not wait for
// the stop, and the batch's messages end by its result.
func TestBatchShutdownFromInsideTheBatchHandler(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(3)
	var p *Pool
	shutdownErr := make(chan error, 1)
	ready := make(chan struct{})
	p = e.startBatch(func(ctx context.Context, msgs []order) error {
		<-ready
		shutdownErr <- p.Shutdown(ctx)
		return nil
	}, WithBatchSize(3), lingerForever)
	close(ready)
	waited := make(chan error, 1)
	go func() { waited <- p.Wait() }()
	require.NoError(t, within(t, waited, "Shutdown from a batch handler deadlocked the pool"))
	require.NoError(t, <-shutdownErr)
	assert.EqualValues(t, 3, p.Stats().Deleted, "the batch succeeded: its messages were deleted")
	visible, inFlight := e.depth(e.queue)
	assert.Zero(t, visible+inFlight)
}
