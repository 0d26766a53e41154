package sqsfake_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sqsfake"
)

func TestReceiptHandleIsNewOnEveryReceive(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", map[string]string{"VisibilityTimeout": "30"})
	id := f.MustSend(url, "hello")

	first := receiveOne(t, f, url)
	clk.Advance(30 * time.Second)
	second := receiveOne(t, f, url)

	assert.Equal(t, id, *first.MessageId)
	assert.Equal(t, id, *second.MessageId, "MessageId stays across redeliveries")
	assert.NotEqual(t, *first.ReceiptHandle, *second.ReceiptHandle)
}

func TestDeleteWithStaleHandleDeletesNothing(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", nil)
	f.MustSend(url, "hello")
	stale := *receiveOne(t, f, url).ReceiptHandle
	clk.Advance(30 * time.Second)
	fresh := *receiveOne(t, f, url).ReceiptHandle

	deleteMessage(t, f, url, stale)
	s := f.Stats(url)
	assert.Equal(t, 1, s.InFlight, "a stale handle must not delete")
	assert.EqualValues(t, 1, s.StaleDeletes)
	assert.Zero(t, s.Deleted)

	deleteMessage(t, f, url, fresh)
	s = f.Stats(url)
	assert.Zero(t, s.InFlight+s.Visible)
	assert.EqualValues(t, 1, s.Deleted)

	// Deleting again succeeds.
	deleteMessage(t, f, url, fresh)
	assert.EqualValues(t, 1, f.Stats(url).RedundantDeletes)
}

func TestDeleteWithNewestHandleAfterVisibilityExpired(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", nil)
	f.MustSend(url, "hello")
	h := *receiveOne(t, f, url).ReceiptHandle
	clk.Advance(time.Minute)
	require.Equal(t, 1, f.Stats(url).Visible)

	deleteMessage(t, f, url, h)
	assert.Empty(t, receive(t, f, url, 10), "the newest handle still deletes a message that became visible")
	assert.EqualValues(t, 1, f.Stats(url).Deleted)
}

func TestInvalidReceiptHandle(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	other := f.MustCreateQueue("other", nil)
	f.MustSend(other, "x")
	foreign := *receiveOne(t, f, other).ReceiptHandle

	for _, h := range []string{"garbage", "", "AQEB" + strings.Repeat("A", 32), foreign, foreign[:len(foreign)-2] + "xx"} {
		_, err := f.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: &h})
		var invalid *types.ReceiptHandleIsInvalid
		require.ErrorAs(t, err, &invalid, "handle %q", h)
		requireCode(t, err, "ReceiptHandleIsInvalid")
	}

	out, err := f.DeleteMessageBatch(context.Background(), &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: []types.DeleteMessageBatchRequestEntry{
		{Id: str("a"), ReceiptHandle: str("garbage")},
	}})
	require.NoError(t, err)
	requireOneFailure(t, out.Failed, "a", "ReceiptHandleIsInvalid", true)
}

func TestHandleOfRecreatedQueueIsInvalid(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	f.MustSend(url, "x")
	h := *receiveOne(t, f, url).ReceiptHandle
	_, err := f.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: &url})
	require.NoError(t, err)

	err = changeVisibility(f, url, h, 10)
	var gone *types.QueueDoesNotExist
	require.ErrorAs(t, err, &gone)

	f.MustCreateQueue("q", nil)
	_, err = f.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: &h})
	requireCode(t, err, "ReceiptHandleIsInvalid")
}

func TestVisibilityTimeoutRunsOnTheClock(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", map[string]string{"VisibilityTimeout": "30"})
	f.MustSend(url, "hello")

	receiveOne(t, f, url)
	clk.Advance(29 * time.Second)
	assert.Empty(t, receive(t, f, url, 10))
	assert.Equal(t, sqsfake.Stats{InFlight: 1, Sent: 1, Received: 1}, f.Stats(url))
	clk.Advance(time.Second)
	m := receiveOne(t, f, url)

	// A per-receive override replaces the queue's timeout.
	out, err := f.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, VisibilityTimeout: 100})
	require.NoError(t, err)
	require.Empty(t, out.Messages)
	clk.Advance(30 * time.Second)
	out, err = f.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, VisibilityTimeout: 100})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	assert.Equal(t, *m.MessageId, *out.Messages[0].MessageId)
	clk.Advance(99 * time.Second)
	assert.Empty(t, receive(t, f, url, 1))
	clk.Advance(time.Second)
	receiveOne(t, f, url)
}

func TestReceiveCountAndSystemAttributes(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", nil)
	f.MustSend(url, "hello")

	for i := 1; i <= 3; i++ {
		out, err := f.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl:       &url,
			AttributeNames: []types.QueueAttributeName{"ApproximateReceiveCount"},
		})
		require.NoError(t, err)
		require.Len(t, out.Messages, 1)
		assert.Equal(t, map[string]string{"ApproximateReceiveCount": itoa(i)}, out.Messages[0].Attributes)
		clk.Advance(time.Minute)
	}
}

func TestSystemAttributeSelection(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", nil)
	f.MustSendMessage(&sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("b"), MessageSystemAttributes: map[string]types.MessageSystemAttributeValue{
		"AWSTraceHeader": {DataType: str("String"), StringValue: str("Root=1-5759e988-bd862e3fe1be46a994272793")},
	}})
	sentAt := epoch.UnixMilli()
	clk.Advance(time.Second)
	firstAt := clk.Now().UnixMilli()

	get := func(in *sqs.ReceiveMessageInput) map[string]string {
		in.QueueUrl = &url
		out, err := f.ReceiveMessage(context.Background(), in)
		require.NoError(t, err)
		require.Len(t, out.Messages, 1)
		require.NoError(t, changeVisibility(f, url, *out.Messages[0].ReceiptHandle, 0))
		return out.Messages[0].Attributes
	}

	all := map[string]string{
		"SenderId": sqsfake.DefaultAccount, "SentTimestamp": itoa64(sentAt), "ApproximateReceiveCount": "1",
		"ApproximateFirstReceiveTimestamp": itoa64(firstAt), "AWSTraceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793",
	}
	assert.Equal(t, all, get(&sqs.ReceiveMessageInput{MessageSystemAttributeNames: []types.MessageSystemAttributeName{"All"}}))
	all["ApproximateReceiveCount"] = "2"
	assert.Equal(t, all, get(&sqs.ReceiveMessageInput{AttributeNames: []types.QueueAttributeName{"All"}}), "deprecated AttributeNames")
	assert.Equal(t, map[string]string{"SentTimestamp": itoa64(sentAt), "ApproximateReceiveCount": "3"}, get(&sqs.ReceiveMessageInput{
		AttributeNames:              []types.QueueAttributeName{"SentTimestamp"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{"ApproximateReceiveCount"},
	}), "both parameters combine")
	assert.Nil(t, get(&sqs.ReceiveMessageInput{}), "none unless asked for")
}

func TestMessageAttributeSelectionAndDigests(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	out := f.MustSendMessage(&sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("derp"), MessageAttributes: map[string]types.MessageAttributeValue{
		"timestamp": {DataType: str("Number"), StringValue: str("1493147359900")},
	}})
	// Digests pinned by moto's tests as what AWS returns.
	assert.Equal(t, "58fd9edd83341c29f1aebba81c31e257", *out.MD5OfMessageBody)
	assert.Equal(t, "235c5c510d26fb653d073faed50ae77c", *out.MD5OfMessageAttributes)

	m := f.MustSendMessage(&sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("x"), MessageAttributes: map[string]types.MessageAttributeValue{
		"trace.id":   {DataType: str("String"), StringValue: str("t1")},
		"trace.span": {DataType: str("String"), StringValue: str("s1")},
		"tenant":     {DataType: str("String.custom"), StringValue: str("acme")},
		"blob":       {DataType: str("Binary"), BinaryValue: []byte{0, 1, 2}},
	}})
	_ = receiveOne(t, f, url) // the first message
	cases := []struct {
		names []string
		want  []string
	}{
		{nil, nil},
		{[]string{"All"}, []string{"blob", "tenant", "trace.id", "trace.span"}},
		{[]string{".*"}, []string{"blob", "tenant", "trace.id", "trace.span"}},
		{[]string{"tenant"}, []string{"tenant"}},
		{[]string{"trace.*"}, []string{"trace.id", "trace.span"}},
		{[]string{"tenant", "trace.id", "missing"}, []string{"tenant", "trace.id"}},
	}
	for _, c := range cases {
		out, err := f.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, MessageAttributeNames: c.names})
		require.NoError(t, err)
		require.Len(t, out.Messages, 1)
		got := out.Messages[0]
		assert.Equal(t, *m.MessageId, *got.MessageId)
		var names []string
		for name := range got.MessageAttributes {
			names = append(names, name)
		}
		assert.ElementsMatch(t, c.want, names, "%v", c.names)
		if c.want == nil {
			assert.Nil(t, got.MD5OfMessageAttributes)
		} else {
			assert.NotEmpty(t, *got.MD5OfMessageAttributes)
		}
		require.NoError(t, changeVisibility(f, url, *got.ReceiptHandle, 0))
	}

	// Received attributes are copies.
	all := &sqs.ReceiveMessageInput{QueueUrl: &url, MessageAttributeNames: []string{"All"}}
	out1, err := f.ReceiveMessage(context.Background(), all)
	require.NoError(t, err)
	out1.Messages[0].MessageAttributes["blob"].BinaryValue[0] = 9
	require.NoError(t, changeVisibility(f, url, *out1.Messages[0].ReceiptHandle, 0))
	out2, err := f.ReceiveMessage(context.Background(), all)
	require.NoError(t, err)
	assert.Equal(t, []byte{0, 1, 2}, out2.Messages[0].MessageAttributes["blob"].BinaryValue)
}

func TestMD5OfBody(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	f.MustSend(url, "This is a test message")
	assert.Equal(t, "fafb00f5732ab283681e124bf8747ed1", *receiveOne(t, f, url).MD5OfBody)
}

func TestReceiveParameters(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	for i := range 12 {
		f.MustSend(url, itoa(i))
	}
	assert.Len(t, receive(t, f, url, 0), 1, "default is one message")
	assert.Len(t, receive(t, f, url, 10), 10)

	for _, in := range []*sqs.ReceiveMessageInput{
		{MaxNumberOfMessages: 11}, {MaxNumberOfMessages: -1}, {WaitTimeSeconds: 21}, {WaitTimeSeconds: -1},
		{VisibilityTimeout: 43201}, {VisibilityTimeout: -1},
	} {
		in.QueueUrl = &url
		_, err := f.ReceiveMessage(context.Background(), in)
		requireCode(t, err, sqsfake.CodeInvalidParameterValue)
	}
	_, err := f.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: str(f.QueueURL("nope"))})
	var gone *types.QueueDoesNotExist
	require.ErrorAs(t, err, &gone)
	requireCode(t, err, "AWS.SimpleQueueService.NonExistentQueue")

	_, err = f.ReceiveMessage(context.Background(), nil)
	require.ErrorContains(t, err, "missing required field, ReceiveMessageInput.QueueUrl")
}

func TestStandardQueueDeliversInSendOrder(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	for i := range 25 {
		f.MustSend(url, itoa(i))
	}
	var bodies []string
	for range 3 {
		for _, m := range receive(t, f, url, 10) {
			bodies = append(bodies, *m.Body)
		}
	}
	require.Len(t, bodies, 25)
	for i, b := range bodies {
		assert.Equal(t, itoa(i), b)
	}
}

func TestLongPollWakesOnSend(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", nil)
	ch := longPoll(context.Background(), f, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 20})
	blockUntilWaiting(t, clk, 1)
	f.MustSend(url, "hello")
	r := waitResult(t, ch)
	require.NoError(t, r.err)
	require.Len(t, r.out.Messages, 1)
	assert.Equal(t, "hello", *r.out.Messages[0].Body)
	assert.Zero(t, clk.Timers(), "the receive stops its timer")
}

func TestLongPollWakesWhenTheClockPassesADeadline(t *testing.T) {
	cases := map[string]struct {
		attrs map[string]string
		after time.Duration
	}{
		"visibility timeout": {map[string]string{"VisibilityTimeout": "10"}, 10 * time.Second},
		"delay":              {map[string]string{"DelaySeconds": "5"}, 5 * time.Second},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f, clk := newFake()
			url := f.MustCreateQueue("q", c.attrs)
			f.MustSend(url, "hello")
			receive(t, f, url, 1) // puts the message in flight, unless delayed

			ch := longPoll(context.Background(), f, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 20})
			blockUntilWaiting(t, clk, 1)
			clk.Advance(c.after)
			r := waitResult(t, ch)
			require.NoError(t, r.err)
			require.Len(t, r.out.Messages, 1)
		})
	}
}

func TestLongPollWakesOnVisibilityChange(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", nil)
	f.MustSend(url, "hello")
	h := *receiveOne(t, f, url).ReceiptHandle

	ch := longPoll(context.Background(), f, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 20})
	blockUntilWaiting(t, clk, 1)
	require.NoError(t, changeVisibility(f, url, h, 0))
	r := waitResult(t, ch)
	require.NoError(t, r.err)
	require.Len(t, r.out.Messages, 1)

	// A shortened timeout wakes a receiver that waits for a later deadline.
	ch = longPoll(context.Background(), f, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 20})
	blockUntilWaiting(t, clk, 1)
	require.NoError(t, changeVisibility(f, url, *r.out.Messages[0].ReceiptHandle, 2))
	clk.Advance(2 * time.Second)
	r = waitResult(t, ch)
	require.NoError(t, r.err)
	require.Len(t, r.out.Messages, 1)
}

func TestLongPollTimesOutOnTheClock(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", map[string]string{"ReceiveMessageWaitTimeSeconds": "20"})
	// WaitTimeSeconds 0 means "not given": the queue's 20 s apply.
	ch := longPoll(context.Background(), f, &sqs.ReceiveMessageInput{QueueUrl: &url})
	blockUntilWaiting(t, clk, 1)
	clk.Advance(19 * time.Second)
	select {
	case <-ch:
		t.Fatal("returned before the wait elapsed")
	default:
	}
	blockUntilWaiting(t, clk, 1)
	clk.Advance(time.Second)
	r := waitResult(t, ch)
	require.NoError(t, r.err)
	assert.Empty(t, r.out.Messages)
}

func TestLongPollContextCancel(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", nil)
	ctx, cancel := context.WithCancel(context.Background())
	ch := longPoll(ctx, f, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 20})
	blockUntilWaiting(t, clk, 1)
	cancel()
	r := waitResult(t, ch)
	require.ErrorIs(t, r.err, context.Canceled)
	assert.Zero(t, clk.Timers())
	assert.Equal(t, 0, f.Stats(url).InFlight)
}

func TestLongPollDeletedQueue(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", nil)
	ch := longPoll(context.Background(), f, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 20})
	blockUntilWaiting(t, clk, 1)
	_, err := f.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: &url})
	require.NoError(t, err)
	r := waitResult(t, ch)
	var gone *types.QueueDoesNotExist
	require.ErrorAs(t, r.err, &gone)
}

func TestLongPollManyReceiversOneMessage(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var chans []<-chan result
	for range 5 {
		chans = append(chans, longPoll(ctx, f, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 20}))
	}
	blockUntilWaiting(t, clk, 5)
	f.MustSend(url, "only")
	clk.Advance(20 * time.Second)
	got := 0
	for _, ch := range chans {
		r := waitResult(t, ch)
		require.NoError(t, r.err)
		got += len(r.out.Messages)
	}
	assert.Equal(t, 1, got, "one message goes to one receiver")
}

func TestChangeMessageVisibility(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", map[string]string{"VisibilityTimeout": "30"})
	f.MustSend(url, "hello")
	h := *receiveOne(t, f, url).ReceiptHandle

	require.NoError(t, changeVisibility(f, url, h, 120))
	clk.Advance(119 * time.Second)
	assert.Empty(t, receive(t, f, url, 1))
	clk.Advance(time.Second)
	m := receiveOne(t, f, url)

	// The old handle is stale now.
	var notInflight *types.MessageNotInflight
	require.ErrorAs(t, changeVisibility(f, url, h, 10), &notInflight)
	requireCode(t, changeVisibility(f, url, h, 10), "AWS.SimpleQueueService.MessageNotInflight")

	// The extension did not carry over: this receive has the queue's 30 s.
	clk.Advance(30 * time.Second)
	require.ErrorAs(t, changeVisibility(f, url, *m.ReceiptHandle, 10), &notInflight, "visible again: not in flight")
	m = receiveOne(t, f, url)

	requireCode(t, changeVisibility(f, url, *m.ReceiptHandle, -1), sqsfake.CodeInvalidParameterValue)
	requireCode(t, changeVisibility(f, url, *m.ReceiptHandle, 43201), sqsfake.CodeInvalidParameterValue)
	require.NoError(t, changeVisibility(f, url, *m.ReceiptHandle, 43200))
	clk.Advance(time.Hour)
	requireCode(t, changeVisibility(f, url, *m.ReceiptHandle, 43200), sqsfake.CodeInvalidParameterValue)
	require.NoError(t, changeVisibility(f, url, *m.ReceiptHandle, 43200-3600), "exactly 12 h after the receive")

	deleteMessage(t, f, url, *m.ReceiptHandle)
	err := changeVisibility(f, url, *m.ReceiptHandle, 10)
	requireCode(t, err, sqsfake.CodeInvalidParameterValue)
	assert.ErrorContains(t, err, "Message does not exist")
	requireCode(t, changeVisibility(f, url, "bogus", 10), "ReceiptHandleIsInvalid")
}

func TestChangeMessageVisibilityBatch(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", nil)
	f.MustSend(url, "a")
	f.MustSend(url, "b")
	msgs := receive(t, f, url, 10)
	require.Len(t, msgs, 2)

	out, err := f.ChangeMessageVisibilityBatch(context.Background(), &sqs.ChangeMessageVisibilityBatchInput{
		QueueUrl: &url,
		Entries: []types.ChangeMessageVisibilityBatchRequestEntry{
			{Id: str("a"), ReceiptHandle: msgs[0].ReceiptHandle, VisibilityTimeout: 0},
			{Id: str("b"), ReceiptHandle: msgs[1].ReceiptHandle, VisibilityTimeout: 600},
			{Id: str("c"), ReceiptHandle: str("nope"), VisibilityTimeout: 1},
		},
	})
	require.NoError(t, err)
	require.Len(t, out.Successful, 2)
	requireOneFailure(t, out.Failed, "c", "ReceiptHandleIsInvalid", true)
	a := receiveOne(t, f, url)
	assert.Equal(t, "a", *a.Body)
	deleteMessage(t, f, url, *a.ReceiptHandle)
	clk.Advance(599 * time.Second)
	assert.Empty(t, receive(t, f, url, 10))
	clk.Advance(time.Second)
	assert.Equal(t, "b", *receiveOne(t, f, url).Body)
}

func TestDelayedMessages(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", nil)
	_, err := f.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("x"), DelaySeconds: 60})
	require.NoError(t, err)
	f.MustSend(url, "now")

	attrs := queueAttributes(t, f, url, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed")
	assert.Equal(t, map[string]string{"ApproximateNumberOfMessages": "1", "ApproximateNumberOfMessagesDelayed": "1"}, attrs)
	now := receiveOne(t, f, url)
	assert.Equal(t, "now", *now.Body)
	deleteMessage(t, f, url, *now.ReceiptHandle)
	assert.Empty(t, receive(t, f, url, 10))
	clk.Advance(time.Minute)
	assert.Equal(t, "x", *receiveOne(t, f, url).Body)

	_, err = f.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("x"), DelaySeconds: 901})
	requireCode(t, err, sqsfake.CodeInvalidParameterValue)
}

func TestInFlightLimit(t *testing.T) {
	f, clk := newFake(sqsfake.WithInFlightLimit(2))
	url := f.MustCreateQueue("q", nil)
	for range 3 {
		f.MustSend(url, "m")
	}
	msgs := receive(t, f, url, 10)
	require.Len(t, msgs, 2)
	_, err := f.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url})
	var over *types.OverLimit
	require.ErrorAs(t, err, &over, "a short poll at the limit fails")

	ch := longPoll(context.Background(), f, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 20})
	blockUntilWaiting(t, clk, 1)
	deleteMessage(t, f, url, *msgs[0].ReceiptHandle)
	r := waitResult(t, ch)
	require.NoError(t, r.err, "a long poll at the limit waits")
	require.Len(t, r.out.Messages, 1)
}

func TestMessagesSnapshot(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", nil)
	a := f.MustSend(url, "a")
	b := f.MustSend(url, "b")
	_, err := f.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("c"), DelaySeconds: 10})
	require.NoError(t, err)
	receiveOne(t, f, url)

	got := f.Messages("q")
	require.Len(t, got, 3)
	assert.Equal(t, a, got[0].MessageID)
	assert.Equal(t, sqsfake.StateInFlight, got[0].State)
	assert.Equal(t, 1, got[0].ReceiveCount)
	assert.Equal(t, epoch.Add(30*time.Second), got[0].VisibleAt)
	assert.Equal(t, b, got[1].MessageID)
	assert.Equal(t, sqsfake.StateVisible, got[1].State)
	assert.Equal(t, sqsfake.StateDelayed, got[2].State)
	assert.Equal(t, epoch, got[2].SentAt)

	clk.Advance(30 * time.Second)
	assert.Equal(t, sqsfake.StateVisible, f.Messages(url)[0].State)
	assert.Panics(t, func() { f.Messages("missing") })
}

func TestErrorsLookLikeTheSDKs(t *testing.T) {
	f, _ := newFake()
	_, err := f.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: str("missing")})

	var opErr interface{ Operation() string }
	require.ErrorAs(t, err, &opErr)
	assert.Equal(t, "GetQueueUrl", opErr.Operation())
	var status interface{ HTTPStatusCode() int }
	require.ErrorAs(t, err, &status)
	assert.Equal(t, 400, status.HTTPStatusCode())
	var gone *types.QueueDoesNotExist
	require.ErrorAs(t, err, &gone)
	assert.Equal(t, "The specified queue does not exist.", gone.ErrorMessage())
	assert.True(t, strings.HasPrefix(err.Error(), "operation error SQS: GetQueueUrl, https response error StatusCode: 400"), err.Error())
	assert.False(t, errors.Is(err, context.Canceled))
}

func queueAttributes(t *testing.T, f *sqsfake.Fake, url string, names ...string) map[string]string {
	t.Helper()
	var qn []types.QueueAttributeName
	for _, n := range names {
		qn = append(qn, types.QueueAttributeName(n))
	}
	out, err := f.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: qn})
	require.NoError(t, err)
	return out.Attributes
}

// cancelWaitingPoll starts a 20 s long poll of up to 10 messages, waits
// until it waits, and cancels it.
func cancelWaitingPoll(t *testing.T, f *sqsfake.Fake, clk *clock.Manual, url string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := longPoll(ctx, f, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 20})
	blockUntilWaiting(t, clk, 1)
	cancel()
	require.ErrorIs(t, waitResult(t, ch).err, context.Canceled)
}

func sendBody(t *testing.T, f *sqsfake.Fake, url, body string) {
	t.Helper()
	_, err := f.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &url, MessageBody: str(body)})
	require.NoError(t, err)
}

// With WithAbandonedPolls a long poll cancelled by its caller keeps waiting
// on the server: the next message sent before its wait ends goes in flight
// for its visibility timeout, delivered to nobody.
func TestAbandonedPollTakesTheNextMessage(t *testing.T) {
	f, clk := newFake(sqsfake.WithAbandonedPolls())
	url := f.MustCreateQueue("q", map[string]string{"VisibilityTimeout": "30"})
	cancelWaitingPoll(t, f, clk, url)
	sendBody(t, f, url, "lost")
	sendBody(t, f, url, "also lost")
	assert.Empty(t, receive(t, f, url, 10), "the abandoned poll took both")
	s := f.Stats(url)
	assert.EqualValues(t, 2, s.Abandoned)
	assert.Equal(t, 2, s.InFlight)
	clk.Advance(30 * time.Second)
	assert.Len(t, receive(t, f, url, 10), 2, "back after the visibility timeout")
}

// An abandoned poll ends when its wait would have: then it takes nothing.
func TestAbandonedPollEndsWithItsWait(t *testing.T) {
	f, clk := newFake(sqsfake.WithAbandonedPolls())
	url := f.MustCreateQueue("q", nil)
	cancelWaitingPoll(t, f, clk, url)
	clk.Advance(20 * time.Second)
	sendBody(t, f, url, "x")
	assert.Len(t, receive(t, f, url, 10), 1)
	assert.Zero(t, f.Stats(url).Abandoned)
}

// Without the option a cancelled long poll takes nothing.
func TestCancelledPollTakesNothingByDefault(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", nil)
	cancelWaitingPoll(t, f, clk, url)
	sendBody(t, f, url, "x")
	assert.Len(t, receive(t, f, url, 10), 1)
}
