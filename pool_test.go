package sqspool

import (
	"context"
	"errors"
	"fmt"
	"sort"
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

func TestProcessesEveryMessageOnceAndDeletesInBatches(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(100)
	s := newSeen()
	// The linger never ends on this clock: batches leave only when full, and
	// the rest at Shutdown.
	p := e.start(s.handler, WithWorkers(10), WithDeleteLinger(time.Hour))
	got := s.wait(t, 100)
	e.shutdown(p)

	sort.Ints(got)
	for i, id := range got {
		require.Equal(t, i, id)
	}
	visible, inFlight := e.depth(e.queue)
	assert.Zero(t, visible+inFlight, "every processed message was deleted")
	st := p.Stats()
	assert.EqualValues(t, 100, st.Received)
	assert.EqualValues(t, 100, st.Processed)
	assert.EqualValues(t, 100, st.Deleted)
	assert.Zero(t, st.InFlight)
	assert.EqualValues(t, 10, st.Calls["DeleteMessageBatch"], "deletes travel in full batches")
	assert.Equal(t, 0, inflightLen(p), "no record outlives its delete")
}

func TestHandlerReadsMetadataFromContext(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.fake.SendMessage(context.Background(), &sqs.SendMessageInput{
		QueueUrl: &e.queue, MessageBody: aws.String(`{"id":7}`),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"tenant": {DataType: aws.String("String"), StringValue: aws.String("acme")},
		},
	})
	require.NoError(t, err)
	s := newSeen()
	p := e.start(s.handler)
	s.wait(t, 1)
	e.shutdown(p)

	m := s.msgs[0]
	require.NotNil(t, m)
	assert.NotEmpty(t, m.ID)
	assert.Equal(t, `{"id":7}`, m.Body)
	assert.Equal(t, e.queue, m.QueueURL)
	assert.Equal(t, 1, m.ReceiveCount)
	assert.False(t, m.SentAt.IsZero())
	assert.False(t, m.FirstReceivedAt.IsZero())
	assert.Equal(t, "acme", aws.ToString(m.MessageAttributes["tenant"].StringValue))
	assert.Equal(t, "1", m.Attributes["ApproximateReceiveCount"])
}

func TestFailedMessageIsNotDeletedAndComesBack(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	var calls atomic.Int32
	counts := make(chan int, 2)
	errs := newErrorLog()
	p := e.start(func(ctx context.Context, o *order) error {
		m, _ := MessageFrom(ctx)
		counts <- m.ReceiveCount
		if calls.Add(1) == 1 {
			return errors.New("downstream said no")
		}
		return nil
	}, WithErrorHook(errs.hook))
	assert.Equal(t, 1, <-counts)
	assert.EqualError(t, errs.next(t), "downstream said no")
	// The error is reported once the retry delay (ExponentialBackoff: 2 s
	// for the first receive) is on its way: it must land before the clock
	// moves, or the message comes back first and the delay, made with a
	// stale handle, is refused.
	require.Eventually(t, func() bool {
		msgs := e.fake.Messages(e.queue)
		return len(msgs) == 1 && msgs[0].VisibleAt.Equal(e.clk.Now().Add(2*time.Second))
	}, 10*time.Second, time.Millisecond)
	_, inFlight := e.depth(e.queue)
	assert.Equal(t, 1, inFlight, "a failed message is left in flight, not deleted")

	e.clk.Advance(31 * time.Second) // past the visibility timeout
	assert.Equal(t, 2, <-counts)
	e.shutdown(p)
	visible, inFlight := e.depth(e.queue)
	assert.Zero(t, visible+inFlight)
	assert.EqualValues(t, 1, p.Stats().Failed)
	assert.EqualValues(t, 1, p.Stats().Processed)
}

func TestPanicIsRecoveredAndCountedAsFailure(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(2)
	errs := newErrorLog()
	s := newSeen()
	p := e.start(func(ctx context.Context, o *order) error {
		if o.ID == 0 {
			panic("boom")
		}
		return s.handler(ctx, o)
	}, WithErrorHook(errs.hook), WithWorkers(1))
	var perr *PanicError
	require.ErrorAs(t, errs.next(t), &perr)
	assert.Equal(t, "boom", perr.Value)
	assert.Contains(t, string(perr.Stack), "pool_test.go", "the stack points at the panic")
	s.wait(t, 1) // the pool carried on
	e.shutdown(p)
	st := p.Stats()
	assert.EqualValues(t, 1, st.Panics)
	assert.EqualValues(t, 1, st.Failed)
	_, inFlight := e.depth(e.queue)
	assert.Equal(t, 1, inFlight, "the panicking message was not deleted")
}

func TestMalformedBodyNeverReachesHandlerAndGoesToDLQ(t *testing.T) {
	e := newEnv(t, nil)
	dlq := e.fake.MustCreateQueue("orders-dlq", nil)
	e.queue = e.fake.MustCreateQueue("orders-redriven", map[string]string{
		"VisibilityTimeout": "30",
		"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"2"}`, e.fake.QueueARN("orders-dlq")),
	})
	e.send(`{"id":`)
	errs := newErrorLog()
	var handled atomic.Int32
	p := e.start(func(context.Context, *order) error { handled.Add(1); return nil }, WithErrorHook(errs.hook))
	for range 2 {
		var derr *DecodeError
		require.ErrorAs(t, errs.next(t), &derr)
		assert.NotEmpty(t, derr.MessageID)
		e.clk.Advance(31 * time.Second)
	}
	// The third receive finds the message moved to the DLQ by the redrive policy.
	require.Eventually(t, func() bool { v, _ := e.depth(dlq); return v == 1 }, 10*time.Second, time.Millisecond)
	e.shutdown(p)
	assert.Zero(t, handled.Load())
	assert.EqualValues(t, 2, p.Stats().DecodeErrors)
}

func TestDeleteMalformedPolicy(t *testing.T) {
	e := newEnv(t, nil)
	e.send("not json")
	errs := newErrorLog()
	p := e.start(func(context.Context, *order) error { return nil },
		WithErrorHook(errs.hook), WithDecodeFailure(DeleteMalformed))
	var derr *DecodeError
	require.ErrorAs(t, errs.next(t), &derr)
	e.shutdown(p)
	visible, inFlight := e.depth(e.queue)
	assert.Zero(t, visible+inFlight, "the malformed message was deleted after the hook saw it")
	assert.EqualValues(t, 1, p.Stats().Deleted)
}

func TestDuplicateDeliveryIsDroppedAndNewestHandleDeletes(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	// Every delivery also leaves the message visible: the next receive gets
	// it again, with a new receipt handle, while the first is in flight.
	e.fake.SetFaults(sqsfake.Faults{sqsfake.OpReceiveMessage: {DuplicateRate: 1}})
	release := make(chan struct{})
	s := newSeen()
	p := e.start(func(ctx context.Context, o *order) error {
		<-release
		return s.handler(ctx, o)
	}, WithWorkers(4), WithMaxMessages(1))
	require.Eventually(t, func() bool { return p.Stats().Duplicates >= 1 }, 10*time.Second, time.Millisecond)
	e.fake.ClearFaults()
	// Wait for the delivery that takes the message in flight for good, and
	// for the pool to have stored the handle of every delivery: each one
	// after the first was dropped as a duplicate, and Duplicates is counted
	// once the newer handle is stored (so is Received, now, but Received
	// used to be counted before, which made this test flaky).
	require.Eventually(t, func() bool {
		fs := e.fake.Stats(e.queue)
		return fs.Visible == 0 && fs.InFlight == 1 && p.Stats().Duplicates == fs.Received-1
	}, 10*time.Second, time.Millisecond)
	close(release)
	s.wait(t, 1)
	e.shutdown(p)
	assert.Len(t, s.snapshot(), 1, "the handler ran once")
	fs := e.fake.Stats(e.queue)
	// The fake deletes only with the newest handle.
	assert.EqualValues(t, 1, fs.Deleted)
	assert.Zero(t, fs.StaleDeletes)
	assert.Zero(t, fs.Visible+fs.InFlight)
}

func TestInFlightRecordsStayBoundedOverManyMessages(t *testing.T) {
	e := newEnv(t, nil)
	const n = 20000
	for i := 0; i < n; i += 10 {
		entries := make([]types.SendMessageBatchRequestEntry, 10)
		for j := range entries {
			entries[j] = types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(j)), MessageBody: aws.String(fmt.Sprintf(`{"id":%d}`, i+j))}
		}
		_, err := e.fake.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: &e.queue, Entries: entries})
		require.NoError(t, err)
	}
	var peak atomic.Int64
	var p *Pool
	ready := make(chan struct{})
	done := make(chan struct{})
	var count atomic.Int64
	p = e.start(func(ctx context.Context, o *order) error {
		<-ready
		if c := int64(inflightLen(p)); c > peak.Load() {
			peak.Store(c)
		}
		if count.Add(1) == n {
			close(done)
		}
		return nil
	}, WithWorkers(16))
	close(ready)
	<-done
	e.shutdown(p)
	assert.Equal(t, 0, inflightLen(p))
	// Workers and their slots (32), read-ahead (about a hundred at most),
	// and deletes: a pending batch, 8 calls in flight and 8 batches
	// waiting for a call (170), beyond which workers wait. Without that
	// bound on waiting deletes the peak reached 568.
	assert.Less(t, peak.Load(), int64(300))
}

// mangler corrupts the receipt handle of chosen messages on delete, so that
// SQS refuses those entries for good.
type mangler struct {
	*sqsfake.Fake
	bad func(handle string) bool
}

func (m *mangler) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, o ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	cp := *in
	cp.Entries = append([]types.DeleteMessageBatchRequestEntry(nil), in.Entries...)
	for i := range cp.Entries {
		if m.bad(aws.ToString(cp.Entries[i].ReceiptHandle)) {
			cp.Entries[i].ReceiptHandle = aws.String("garbage")
		}
	}
	return m.Fake.DeleteMessageBatch(ctx, &cp, o...)
}

func TestPermanentDeleteFailureIsCountedNotRetried(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(5)
	var first sync.Once
	var badHandle string
	client := &mangler{Fake: e.fake, bad: func(h string) bool {
		first.Do(func() { badHandle = h })
		return h == badHandle
	}}
	s := newSeen()
	errs := newErrorLog()
	p, err := StartPool(context.Background(), &Consumer{Client: client, Queue: e.queue}, s.handler,
		e.opts(WithWorkers(1), WithMaxMessages(1), WithErrorHook(errs.hook))...)
	require.NoError(t, err)
	s.wait(t, 5)
	// The refusal is reported before the stop: one that came during the
	// final flush would (rightly) make Shutdown report it as not flushed.
	var aerr *APIError
	require.ErrorAs(t, errs.next(t), &aerr)
	assert.Equal(t, "ReceiptHandleIsInvalid", aerr.EntryCode)
	require.NoError(t, p.Shutdown(context.Background()))

	st := p.Stats()
	assert.EqualValues(t, 1, st.DeleteErrors)
	assert.EqualValues(t, 4, st.Deleted, "one bad entry stopped nothing else")
	assert.EqualValues(t, 5, st.Calls["DeleteMessageBatch"], "the permanent failure was not retried")
}

func TestTransientDeleteFailuresAreRetried(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(50)
	e.fake.SetFaults(sqsfake.Faults{sqsfake.OpDeleteMessageBatch: {PartialFailureRate: 0.3}})
	s := newSeen()
	// Backoffs between attempts run on the real clock here.
	p, err := StartPool(context.Background(), e.consumer(), s.handler,
		withClock(clock.Real), WithLogger(quietLogger()), WithBatchAttempts(20))
	require.NoError(t, err)
	s.wait(t, 50)
	require.NoError(t, p.Shutdown(context.Background()))
	visible, inFlight := e.depth(e.queue)
	assert.Zero(t, visible+inFlight, "every entry was deleted in the end")
	assert.EqualValues(t, 50, p.Stats().Deleted)
	assert.Zero(t, p.Stats().DeleteErrors)
}

func TestReceiveErrorsBackOffAndRecover(t *testing.T) {
	e := newEnv(t, nil)
	throttle := &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}
	e.fake.FailNext(sqsfake.OpReceiveMessage, 2, throttle)
	errs := newErrorLog()
	s := newSeen()
	clk := &armClock{Clock: e.clk, armed: make(chan time.Duration, 100)}
	p := e.start(s.handler, WithErrorHook(errs.hook), WithWorkers(1), withClock(clk), WithHeartbeat(false))
	for i := range 2 {
		var aerr *APIError
		require.ErrorAs(t, errs.next(t), &aerr)
		assert.Equal(t, "ReceiveMessage", aerr.API)
		assert.ErrorIs(t, aerr, throttle)
		d := <-clk.armed // the poller waits on a backoff timer (the watchdog's is 1.35 s)
		for d >= time.Second {
			d = <-clk.armed
		}
		assert.LessOrEqual(t, d, time.Duration(100<<i)*time.Millisecond+time.Millisecond, "jittered exponential backoff")
		assert.Equal(t, i+1, e.fake.Calls(sqsfake.OpReceiveMessage), "no hot loop while backing off")
		e.clk.Advance(time.Minute)
	}
	e.sendOrders(1)
	s.wait(t, 1)
	e.shutdown(p)
	assert.EqualValues(t, 2, p.Stats().CallErrors["ReceiveMessage"])
}

func TestPollerAsksOnlyForFreeWorkers(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(10)
	var mu sync.Mutex
	var asked []int32
	e.fake.SetHook(func(api string, in any) error {
		if r, ok := in.(*sqs.ReceiveMessageInput); ok {
			mu.Lock()
			asked = append(asked, r.MaxNumberOfMessages)
			mu.Unlock()
		}
		return nil
	})
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	p := e.start(func(ctx context.Context, o *order) error {
		started <- struct{}{}
		<-release
		return nil
	}, WithWorkers(3))
	for range 3 {
		<-started
	}
	mu.Lock()
	assert.Equal(t, []int32{3}, asked, "one receive for the three free workers, none while all are busy")
	mu.Unlock()
	visible, _ := e.depth(e.queue)
	assert.Equal(t, 7, visible, "nothing is received ahead of a free worker")
	close(release)
	e.shutdown(p)
}

func TestHandlerContextEndsBeforeVisibilityTimeout(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	deadlines := make(chan time.Duration, 1)
	p := e.start(func(ctx context.Context, o *order) error {
		d, ok := ctx.Deadline()
		require.True(t, ok)
		deadlines <- time.Until(d)
		return nil
	}, WithHeartbeat(false))
	left := <-deadlines
	e.shutdown(p)
	assert.Greater(t, left, 20*time.Second)
	assert.Less(t, left, 30*time.Second, "without a heartbeat, cancelled before SQS would hand the message to another consumer")
}

func TestShutdownCancelsTheLongPoll(t *testing.T) {
	e := newEnv(t, nil)
	entered := make(chan struct{})
	var once sync.Once
	e.fake.SetHook(func(api string, _ any) error {
		if api == sqsfake.OpReceiveMessage {
			once.Do(func() { close(entered) })
		}
		return nil
	})
	p := e.start(func(context.Context, *order) error { return nil })
	// The poller waits in a 20 s long poll on the test's clock, which never
	// moves: Shutdown can only return by cancelling it. (The other timer is
	// the watchdog's.)
	<-entered
	require.True(t, e.clk.BlockUntil(2, nil))
	e.shutdown(p)
	assert.EqualValues(t, 1, p.Stats().Calls["ReceiveMessage"])
}

func TestShutdownFlushesPendingDeletes(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(3)
	s := newSeen()
	// The linger never ends on this clock: only Shutdown can flush.
	p := e.start(s.handler, WithDeleteLinger(time.Hour))
	s.wait(t, 3)
	e.shutdown(p)
	visible, inFlight := e.depth(e.queue)
	assert.Zero(t, visible+inFlight)
	assert.EqualValues(t, 3, p.Stats().Deleted)
	assert.EqualValues(t, 1, p.Stats().Calls["DeleteMessageBatch"], "three deletes, one call")
}

func TestShutdownDeadlineCancelsHandlersAndSaysSo(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	started := make(chan struct{})
	p := e.start(func(ctx context.Context, o *order) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Shutdown(ctx)
	var serr *ShutdownError
	require.ErrorAs(t, err, &serr)
	assert.Equal(t, 1, serr.Cancelled)
	assert.Zero(t, serr.Abandoned)
	assert.ErrorIs(t, err, context.Canceled)
	_, inFlight := e.depth(e.queue)
	assert.Equal(t, 1, inFlight, "a cancelled handler's message is not deleted")
	require.Equal(t, err, p.Wait(), "Wait reports the same stop")
}

func TestShutdownGivesUpOnAHungHandler(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	started := make(chan struct{})
	unblock := make(chan struct{})
	clk := &armClock{Clock: e.clk, armed: make(chan time.Duration, 100)}
	p := e.start(func(ctx context.Context, o *order) error {
		close(started)
		<-unblock // ignores its context
		return nil
	}, withClock(clk))
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errc := make(chan error, 1)
	go func() { errc <- p.Shutdown(ctx) }()
	for d := range clk.armed {
		if d == abandonGrace { // the stop waits a grace period for cancelled handlers
			break
		}
	}
	e.clk.Advance(abandonGrace)
	var serr *ShutdownError
	require.ErrorAs(t, <-errc, &serr)
	assert.Equal(t, 1, serr.Abandoned)
	close(unblock)
	require.Error(t, p.Wait(), "Wait returns once the hung handler does")
}

func TestCancellingStartContextStopsGracefully(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	finish := make(chan struct{})
	handlerErr := make(chan error, 1)
	p, err := StartPool(ctx, e.consumer(), func(hctx context.Context, o *order) error {
		close(started)
		<-finish
		handlerErr <- hctx.Err()
		return nil
	}, e.opts()...)
	require.NoError(t, err)
	<-started
	cancel()
	close(finish)
	require.NoError(t, p.Wait())
	assert.NoError(t, <-handlerErr, "the handler finished under a live context")
	visible, inFlight := e.depth(e.queue)
	assert.Zero(t, visible+inFlight, "its delete was flushed")
}

func TestFIFOKeepsGroupOrderAndReturnsWaitingOnShutdown(t *testing.T) {
	e := newEnvNamed(t, "orders.fifo", map[string]string{"FifoQueue": "true"})
	e.sendFIFO("a", 1, 2, 3)
	e.sendFIFO("b", 1, 2, 3)
	var mu sync.Mutex
	byGroup := map[string][]int{}
	s := newSeen()
	p := e.start(func(ctx context.Context, o *order) error {
		mu.Lock()
		byGroup[o.Group] = append(byGroup[o.Group], o.ID)
		mu.Unlock()
		return s.handler(ctx, o)
	}, WithWorkers(4))
	s.wait(t, 6)
	e.shutdown(p)
	assert.Equal(t, []int{1, 2, 3}, byGroup["a"])
	assert.Equal(t, []int{1, 2, 3}, byGroup["b"])
}

func TestFIFOShutdownReturnsMessagesWaitingBehindTheirGroup(t *testing.T) {
	e := newEnvNamed(t, "jobs.fifo", map[string]string{"FifoQueue": "true"})
	e.sendFIFO("g", 1, 2, 3, 4)
	started := make(chan struct{})
	finish := make(chan struct{})
	p := e.start(func(ctx context.Context, o *order) error {
		close(started)
		<-finish
		return nil
	}, WithWorkers(4))
	<-started
	require.Eventually(t, func() bool { return p.Stats().Received == 4 }, 10*time.Second, time.Millisecond)
	errc := make(chan error, 1)
	go func() { errc <- p.Shutdown(context.Background()) }()
	// The three waiting messages go back at once, before the running one ends.
	require.Eventually(t, func() bool { v, _ := e.depth(e.queue); return v == 3 }, 10*time.Second, time.Millisecond)
	close(finish)
	require.NoError(t, <-errc)
	assert.EqualValues(t, 3, p.Stats().Returned)
	assert.EqualValues(t, 1, p.Stats().Deleted)
}

func TestStartPoolResolvesNamesAndReportsBadQueues(t *testing.T) {
	e := newEnv(t, nil)
	p, err := StartPool(context.Background(), &Consumer{Client: e.fake, Queue: "orders"},
		func(context.Context, *order) error { return nil }, e.opts()...)
	require.NoError(t, err)
	assert.Equal(t, e.queue, p.QueueURL())
	e.shutdown(p)

	_, err = StartPool(context.Background(), &Consumer{Client: e.fake, Queue: "missing"},
		func(context.Context, *order) error { return nil }, e.opts()...)
	var qerr *types.QueueDoesNotExist
	assert.ErrorAs(t, err, &qerr)

	_, err = StartPool(context.Background(), nil, func(context.Context, *order) error { return nil })
	assert.ErrorContains(t, err, "needs a Consumer")
	_, err = StartPool(context.Background(), &Consumer{Client: e.fake}, func(context.Context, *order) error { return nil })
	assert.ErrorContains(t, err, "needs a Queue")
	_, err = StartPool(context.Background(), e.consumer(), func(context.Context, *order) error { return nil }, WithMaxMessages(11))
	assert.ErrorContains(t, err, "1..10")
}

func TestStringPoolGetsRawBody(t *testing.T) {
	e := newEnv(t, nil)
	e.send("plain text, not JSON")
	got := make(chan string, 1)
	p, err := StartPool(context.Background(), e.consumer(), func(ctx context.Context, s *string) error {
		got <- *s
		return nil
	}, e.opts()...)
	require.NoError(t, err)
	assert.Equal(t, "plain text, not JSON", <-got)
	e.shutdown(p)
}

func TestSNSEnvelopeIsUnwrapped(t *testing.T) {
	e := newEnv(t, nil)
	e.send(`{"Type":"Notification","MessageId":"m-1","TopicArn":"arn:aws:sns:us-east-1:0:t","Message":"{\"id\":42}"}`)
	s := newSeen()
	p := e.start(s.handler, WithSNSEnvelope())
	assert.Equal(t, []int{42}, s.wait(t, 1))
	e.shutdown(p)
}

// idLine is a message type with its own body format, "id=N".
type idLine struct{ ID int }

func (o *idLine) DecodeBody(body string) error {
	if body == "panic" {
		panic("idLine: " + body)
	}
	_, err := fmt.Sscanf(body, "id=%d", &o.ID)
	return err
}

// A type that implements BodyDecoder decodes its own bodies; one it rejects
// (by an error or a panic) is a decode error under the decode policy.
func TestBodyDecoder(t *testing.T) {
	e := newEnv(t, nil)
	e.send("id=5", "not an id", "panic")
	got := make(chan int, 1)
	errs := newErrorLog()
	p, err := StartPool(context.Background(), e.consumer(), func(_ context.Context, o *idLine) error {
		got <- o.ID
		return nil
	}, e.opts(WithErrorHook(errs.hook), WithDecodeFailure(DeleteMalformed))...)
	require.NoError(t, err)
	assert.Equal(t, 5, <-got)
	var derr *DecodeError
	require.ErrorAs(t, errs.next(t), &derr)
	require.ErrorAs(t, errs.next(t), &derr)
	e.shutdown(p)
	assert.EqualValues(t, 2, p.Stats().DecodeErrors)
	assert.EqualValues(t, 1, p.Stats().Processed)
}

// armClock reports each timer armed through it.
type armClock struct {
	clock.Clock
	armed chan time.Duration
}

func (c *armClock) NewTimer(d time.Duration) clock.Timer {
	t := c.Clock.NewTimer(d)
	c.armed <- d // after arming, so that an Advance the test makes fires it
	return t
}
