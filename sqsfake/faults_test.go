package sqsfake_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/sqsfake"
)

func TestErrorRate(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	f.SetFaults(sqsfake.Faults{sqsfake.OpSendMessage: {ErrorRate: 1}})

	_, err := f.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("x")})
	requireCode(t, err, sqsfake.CodeInternalError)
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, smithy.FaultServer, apiErr.ErrorFault())
	var status interface{ HTTPStatusCode() int }
	require.ErrorAs(t, err, &status)
	assert.Equal(t, 500, status.HTTPStatusCode())
	assert.Equal(t, aws.TrueTernary, retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err), "the SDK's retryer retries it")
	assert.Zero(t, f.Stats(url).Sent, "the call did not take effect")
	assert.Equal(t, 1, f.Calls(sqsfake.OpSendMessage))

	// Other APIs are unaffected.
	_, err = f.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: str("q")})
	require.NoError(t, err)
}

func TestThrottleRate(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	f.SetFaults(sqsfake.Faults{sqsfake.AllOps: {ThrottleRate: 1}})
	_, err := f.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url})
	var throttled *types.RequestThrottled
	require.ErrorAs(t, err, &throttled)
	assert.Equal(t, "RequestThrottled", throttled.ErrorCode())
	assert.Equal(t, aws.TrueTernary, retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err))
}

func TestLostReplyRate(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	f.MustSend(url, "x")
	f.SetFaults(sqsfake.Faults{sqsfake.OpReceiveMessage: {LostReplyRate: 1}, sqsfake.OpDeleteMessage: {LostReplyRate: 1}})

	_, err := f.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url})
	requireCode(t, err, sqsfake.CodeInternalError)
	assert.Equal(t, 1, f.Stats(url).InFlight, "the receive took effect")
	assert.Equal(t, 1, f.Messages(url)[0].ReceiveCount)

	f.SetFaults(sqsfake.Faults{sqsfake.OpDeleteMessage: {LostReplyRate: 1}})
	f.MustSend(url, "y")
	h := *receiveOne(t, f, url).ReceiptHandle
	_, err = f.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: &h})
	requireCode(t, err, sqsfake.CodeInternalError)
	assert.EqualValues(t, 1, f.Stats(url).Deleted, "the delete took effect")
}

func TestPartialFailureRate(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	for range 4 {
		f.MustSend(url, "x")
	}
	msgs := receive(t, f, url, 10)
	f.SetFaults(sqsfake.Faults{sqsfake.OpDeleteMessageBatch: {PartialFailureRate: 1}})
	var entries []types.DeleteMessageBatchRequestEntry
	for i, m := range msgs {
		entries = append(entries, types.DeleteMessageBatchRequestEntry{Id: str(itoa(i)), ReceiptHandle: m.ReceiptHandle})
	}
	out, err := f.DeleteMessageBatch(context.Background(), &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: entries})
	require.NoError(t, err)
	assert.Empty(t, out.Successful)
	require.Len(t, out.Failed, 4)
	for _, e := range out.Failed {
		assert.Equal(t, "InternalError", *e.Code)
		assert.False(t, e.SenderFault)
	}
	assert.Equal(t, 4, f.Stats(url).InFlight, "failed entries did not take effect")

	// Half the entries, deterministically for a seed.
	counts := func(seed int64) []int {
		f, _ := newFake(sqsfake.WithSeed(seed))
		url := f.MustCreateQueue("q", nil)
		f.SetFaults(sqsfake.Faults{sqsfake.OpSendMessageBatch: {PartialFailureRate: 0.5}})
		var failed []int
		for range 20 {
			var entries []types.SendMessageBatchRequestEntry
			for i := range 10 {
				entries = append(entries, types.SendMessageBatchRequestEntry{Id: str(itoa(i)), MessageBody: str("b")})
			}
			out, err := f.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
			require.NoError(t, err)
			failed = append(failed, len(out.Failed))
		}
		return failed
	}
	a, b := counts(7), counts(7)
	assert.Equal(t, a, b, "the same seed fails the same entries")
	total := 0
	for _, n := range a {
		total += n
	}
	assert.InDelta(t, 100, total, 35)
}

func TestDuplicateRate(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	id := f.MustSend(url, "x")
	f.SetFaults(sqsfake.Faults{sqsfake.OpReceiveMessage: {DuplicateRate: 1}})

	first := receive(t, f, url, 10)
	require.Len(t, first, 1, "never twice in one response")
	assert.Equal(t, 1, f.Stats(url).Visible, "delivered and left visible")
	f.SetFaults(nil)
	second := receiveOne(t, f, url)
	assert.Equal(t, id, *first[0].MessageId)
	assert.Equal(t, id, *second.MessageId)
	assert.NotEqual(t, *first[0].ReceiptHandle, *second.ReceiptHandle)
	assert.Equal(t, 2, f.Messages(url)[0].ReceiveCount)

	// Only the newest handle deletes.
	deleteMessage(t, f, url, *first[0].ReceiptHandle)
	s := f.Stats(url)
	assert.EqualValues(t, 1, s.StaleDeletes)
	assert.Equal(t, 1, s.InFlight)
	deleteMessage(t, f, url, *second.ReceiptHandle)
	s = f.Stats(url)
	assert.EqualValues(t, 1, s.Deleted)
	assert.EqualValues(t, 1, s.Duplicates)
	assert.Zero(t, s.InFlight+s.Visible)

	fifo := fifoQueue(f, nil)
	f.SetFaults(sqsfake.Faults{sqsfake.OpReceiveMessage: {DuplicateRate: 1}})
	sendFIFO(t, f, fifo, "g", "once")
	receiveOne(t, f, fifo)
	assert.Zero(t, f.Stats(fifo).Duplicates, "FIFO queues deliver exactly once")
}

func TestLatency(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	f.SetFaults(sqsfake.Faults{sqsfake.OpGetQueueAttributes: {Latency: 20 * time.Millisecond, Jitter: 5 * time.Millisecond}})
	start := time.Now()
	queueAttributes(t, f, url, "QueueArn")
	assert.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)

	// A done context ends the wait.
	f.SetFaults(sqsfake.Faults{sqsfake.OpGetQueueAttributes: {Latency: time.Hour}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := f.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &url})
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
		var canceled *smithy.CanceledError
		require.ErrorAs(t, err, &canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("latency ignored the context")
	}
}

func TestSeedMakesFaultsDeterministic(t *testing.T) {
	pattern := func(seed int64) []bool {
		f, _ := newFake(sqsfake.WithSeed(seed))
		f.MustCreateQueue("q", nil)
		f.SetFaults(sqsfake.Faults{sqsfake.AllOps: {ErrorRate: 0.3, ThrottleRate: 0.2}})
		var failed []bool
		for range 200 {
			_, err := f.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: str("q")})
			failed = append(failed, err != nil)
		}
		return failed
	}
	assert.Equal(t, pattern(42), pattern(42))
	assert.NotEqual(t, pattern(42), pattern(43))
}

func TestFailNext(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	boom := errors.New("boom")
	f.FailNext(sqsfake.OpSendMessage, 2, boom)
	f.FailNext(sqsfake.OpSendMessage, 1, nil)
	send := func() error {
		_, err := f.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("x")})
		return err
	}
	for range 2 {
		err := send()
		require.ErrorIs(t, err, boom)
		var opErr *smithy.OperationError
		require.ErrorAs(t, err, &opErr, "wrapped as the SDK does")
	}
	requireCode(t, send(), sqsfake.CodeInternalError)
	require.NoError(t, send())
	assert.EqualValues(t, 1, f.Stats(url).Sent)

	f.FailNext(sqsfake.OpReceiveMessage, 1, &types.QueueDoesNotExist{})
	_, err := f.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url})
	var gone *types.QueueDoesNotExist
	require.ErrorAs(t, err, &gone)

	f.FailNext(sqsfake.OpReceiveMessage, 5, nil)
	f.ClearFaults()
	receiveOne(t, f, url)
	assert.Panics(t, func() { f.FailNext("Nope", 1, nil) })
}

func TestHook(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	var mu sync.Mutex
	var seen []string
	deny := errors.New("denied")
	f.SetHook(func(api string, in any) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, api)
		if in, ok := in.(*sqs.SendMessageInput); ok && *in.MessageBody == "forbidden" {
			return deny
		}
		return nil
	})
	_, err := f.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("forbidden")})
	require.ErrorIs(t, err, deny)
	_, err = f.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("fine")})
	require.NoError(t, err)
	receiveOne(t, f, url)
	f.SetHook(nil)
	receive(t, f, url, 1)
	assert.Equal(t, []string{"SendMessage", "SendMessage", "ReceiveMessage"}, seen)
}

func TestHookCanHoldACall(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	f.MustSend(url, "x")
	entered, release := make(chan struct{}), make(chan struct{})
	f.SetHook(func(api string, _ any) error {
		if api == sqsfake.OpReceiveMessage {
			close(entered)
			<-release
		}
		return nil
	})
	ch := longPoll(context.Background(), f, &sqs.ReceiveMessageInput{QueueUrl: &url})
	<-entered
	assert.Equal(t, 1, f.Stats(url).Visible, "held before it takes effect")
	close(release)
	r := waitResult(t, ch)
	require.NoError(t, r.err)
	assert.Len(t, r.out.Messages, 1)
}

func TestSetFaultsValidates(t *testing.T) {
	f, _ := newFake()
	assert.Panics(t, func() { f.SetFaults(sqsfake.Faults{"NoSuchAPI": {ErrorRate: 1}}) })
	assert.Panics(t, func() { f.SetFaults(sqsfake.Faults{sqsfake.OpReceiveMessage: {ErrorRate: 1.5}}) })
	assert.Panics(t, func() { f.SetFaults(sqsfake.Faults{sqsfake.OpDeleteMessage: {PartialFailureRate: 0.1}}) })
	assert.Panics(t, func() { f.SetFaults(sqsfake.Faults{sqsfake.OpSendMessage: {DuplicateRate: 0.1}}) })
	assert.Panics(t, func() { f.SetFaults(sqsfake.Faults{sqsfake.AllOps: {Latency: -1}}) })
	assert.NotPanics(t, func() { f.SetFaults(sqsfake.Faults{sqsfake.AllOps: {PartialFailureRate: 0.1, DuplicateRate: 0.1}}) })
}

func TestAllOpsAndOverride(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	f.SetFaults(sqsfake.Faults{sqsfake.AllOps: {ErrorRate: 1}, sqsfake.OpGetQueueUrl: {}})
	_, err := f.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: str("q")})
	require.NoError(t, err, "an API's own entry replaces AllOps")
	_, err = f.ListQueues(context.Background(), &sqs.ListQueuesInput{})
	requireCode(t, err, sqsfake.CodeInternalError)
	// Test helpers bypass faults.
	f.MustSend(url, "x")
	assert.Equal(t, 1, f.Stats(url).Visible)
}

func TestCallCounters(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	f.MustSend(url, "x")
	assert.Empty(t, f.CallCounts(), "helpers are not counted")
	receive(t, f, url, 1)
	receive(t, f, url, 1)
	_, _ = f.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: &url}) // fails validation, still counted
	assert.Equal(t, map[string]int{"ReceiveMessage": 2, "DeleteMessage": 1}, f.CallCounts())
	assert.Equal(t, 2, f.Calls(sqsfake.OpReceiveMessage))
	f.ResetCalls()
	assert.Zero(t, f.Calls(sqsfake.OpReceiveMessage))
	assert.Panics(t, func() { f.Calls("Nope") })
}
