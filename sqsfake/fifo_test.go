package sqsfake_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/sqsfake"
)

func fifoQueue(f *sqsfake.Fake, attrs map[string]string) string {
	all := map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"}
	for k, v := range attrs {
		all[k] = v
	}
	return f.MustCreateQueue("jobs.fifo", all)
}

func sendFIFO(t *testing.T, f *sqsfake.Fake, url, group, body string) *sqs.SendMessageOutput {
	t.Helper()
	out, err := f.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &url, MessageGroupId: &group, MessageBody: &body})
	require.NoError(t, err)
	return out
}

func bodies(msgs []types.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, *m.Body)
	}
	return out
}

func TestFIFOGroupOrderAndLock(t *testing.T) {
	f, clk := newFake()
	url := fifoQueue(f, nil)
	for _, b := range []string{"a1", "a2", "a3"} {
		sendFIFO(t, f, url, "a", b)
	}
	sendFIFO(t, f, url, "b", "b1")

	first := receive(t, f, url, 1)
	assert.Equal(t, []string{"a1"}, bodies(first))
	// Group a is locked while a1 is in flight: only group b delivers.
	b := receive(t, f, url, 10)
	assert.Equal(t, []string{"b1"}, bodies(b))
	assert.Empty(t, receive(t, f, url, 10))
	deleteMessage(t, f, url, *b[0].ReceiptHandle)

	deleteMessage(t, f, url, *first[0].ReceiptHandle)
	next := receive(t, f, url, 10)
	assert.Equal(t, []string{"a2", "a3"}, bodies(next), "as many of one group as fit")

	// a2 and a3 come back, in order, when their timeout ends.
	clk.Advance(30 * time.Second)
	again := receive(t, f, url, 1)
	assert.Equal(t, []string{"a2"}, bodies(again))
	assert.Empty(t, receive(t, f, url, 10), "a3 waits behind a2")

	// Releasing a2 at once makes the group deliver a2 before a3.
	require.NoError(t, changeVisibility(f, url, *again[0].ReceiptHandle, 0))
	assert.Equal(t, []string{"a2", "a3"}, bodies(receive(t, f, url, 10)))
}

func TestFIFOGroupStaysLockedWhileAnyMessageInFlight(t *testing.T) {
	f, _ := newFake()
	url := fifoQueue(f, nil)
	for _, b := range []string{"1", "2", "3"} {
		sendFIFO(t, f, url, "g", b)
	}
	msgs := receive(t, f, url, 2)
	require.Equal(t, []string{"1", "2"}, bodies(msgs))
	deleteMessage(t, f, url, *msgs[1].ReceiptHandle)
	assert.Empty(t, receive(t, f, url, 10), "1 is still in flight")
	deleteMessage(t, f, url, *msgs[0].ReceiptHandle)
	assert.Equal(t, []string{"3"}, bodies(receive(t, f, url, 10)))
}

func TestFIFODeduplication(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("orders.fifo", map[string]string{"FifoQueue": "true"})
	send := func(group, dedup, body string) *sqs.SendMessageOutput {
		out, err := f.SendMessage(context.Background(), &sqs.SendMessageInput{
			QueueUrl: &url, MessageGroupId: &group, MessageDeduplicationId: &dedup, MessageBody: &body,
		})
		require.NoError(t, err)
		return out
	}
	first := send("g", "d1", "one")
	dup := send("g", "d1", "one again")
	assert.Equal(t, *first.MessageId, *dup.MessageId)
	assert.Equal(t, *first.SequenceNumber, *dup.SequenceNumber)
	second := send("g", "d2", "two")
	assert.Less(t, *first.SequenceNumber, *second.SequenceNumber)
	assert.Len(t, *first.SequenceNumber, 20)

	s := f.Stats(url)
	assert.EqualValues(t, 2, s.Sent)
	assert.EqualValues(t, 1, s.Deduplicated)

	// Deleting does not end the window; time does.
	for _, m := range receive(t, f, url, 10) {
		deleteMessage(t, f, url, *m.ReceiptHandle)
	}
	clk.Advance(5*time.Minute - time.Second)
	assert.Equal(t, *first.MessageId, *send("g", "d1", "x").MessageId)
	clk.Advance(time.Second)
	assert.NotEqual(t, *first.MessageId, *send("g", "d1", "x").MessageId)
}

func TestFIFOContentBasedDeduplication(t *testing.T) {
	f, _ := newFake()
	url := fifoQueue(f, nil)
	a := sendFIFO(t, f, url, "g1", "same")
	b := sendFIFO(t, f, url, "g2", "same")
	assert.Equal(t, *a.MessageId, *b.MessageId, "the queue scope dedups across groups")
	c := sendFIFO(t, f, url, "g1", "other")
	assert.NotEqual(t, *a.MessageId, *c.MessageId)

	m := receive(t, f, url, 10)
	require.Len(t, m, 2)
}

func TestFIFODeduplicationScopeMessageGroup(t *testing.T) {
	f, _ := newFake()
	url := fifoQueue(f, map[string]string{"DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId"})
	a := sendFIFO(t, f, url, "g1", "same")
	b := sendFIFO(t, f, url, "g2", "same")
	assert.NotEqual(t, *a.MessageId, *b.MessageId)
}

func TestFIFOSendRules(t *testing.T) {
	f, _ := newFake()
	plain := f.MustCreateQueue("plain.fifo", map[string]string{"FifoQueue": "true"})
	url := fifoQueue(f, nil)
	ctx := context.Background()

	_, err := f.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("x")})
	requireCode(t, err, sqsfake.CodeMissingParameter)
	_, err = f.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &plain, MessageBody: str("x"), MessageGroupId: str("g")})
	requireCode(t, err, sqsfake.CodeInvalidParameterValue)
	_, err = f.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("x"), MessageGroupId: str("g"), DelaySeconds: 5})
	requireCode(t, err, sqsfake.CodeInvalidParameterValue)
	_, err = f.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("x"), MessageGroupId: str("bad group")})
	requireCode(t, err, sqsfake.CodeInvalidParameterValue)

	std := f.MustCreateQueue("std", nil)
	_, err = f.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &std, MessageBody: str("x"), MessageDeduplicationId: str("d")})
	requireCode(t, err, sqsfake.CodeInvalidParameterValue)
	// Standard queues accept a MessageGroupId (fair queues) and return it.
	_, err = f.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &std, MessageBody: str("x"), MessageGroupId: str("tenant-1")})
	require.NoError(t, err)
	out, err := f.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &std, MessageSystemAttributeNames: []types.MessageSystemAttributeName{"MessageGroupId"}})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"MessageGroupId": "tenant-1"}, out.Messages[0].Attributes)
}

func TestFIFOSystemAttributes(t *testing.T) {
	f, _ := newFake()
	url := fifoQueue(f, nil)
	sent := sendFIFO(t, f, url, "g", "body")
	out, err := f.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl:                    &url,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{"MessageGroupId", "MessageDeduplicationId", "SequenceNumber"},
	})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{
		"MessageGroupId":         "g",
		"MessageDeduplicationId": "230d8358dc8e8890b4c58deeb62912ee2f20357ae92a5cc861b98e68fe31acb5", // sha256("body")
		"SequenceNumber":         *sent.SequenceNumber,
	}, out.Messages[0].Attributes)
}

func TestFIFOSendMessageBatchKeepsOrder(t *testing.T) {
	f, _ := newFake()
	url := fifoQueue(f, nil)
	var entries []types.SendMessageBatchRequestEntry
	for i := range 10 {
		entries = append(entries, types.SendMessageBatchRequestEntry{Id: str("e" + itoa(i)), MessageBody: str(itoa(i)), MessageGroupId: str("g")})
	}
	out, err := f.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
	require.NoError(t, err)
	require.Len(t, out.Successful, 10)
	assert.Equal(t, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, bodies(receive(t, f, url, 10)))
}

func TestFIFORedriveKeepsGroupOrder(t *testing.T) {
	f, clk := newFake()
	dlq := f.MustCreateQueue("dead.fifo", map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"})
	url := fifoQueue(f, map[string]string{"RedrivePolicy": sqsfake.RedrivePolicy(f.QueueARN("dead.fifo"), 1)})
	sendFIFO(t, f, url, "g", "poison")
	sendFIFO(t, f, url, "g", "next")

	assert.Equal(t, []string{"poison"}, bodies(receive(t, f, url, 1)))
	clk.Advance(30 * time.Second)
	// poison is over maxReceiveCount: it moves, and next is delivered.
	assert.Equal(t, []string{"next"}, bodies(receive(t, f, url, 10)))
	moved := f.Messages(dlq)
	require.Len(t, moved, 1)
	assert.Equal(t, "poison", moved[0].Body)
	assert.Equal(t, "g", moved[0].GroupID)
	assert.NotEmpty(t, moved[0].SequenceNumber)
}

// A receive takes as many messages of one group as it can, in order, before
// it moves on to the next group; a group that delivered stays locked.
func TestFIFOReceiveFillsFromOneGroupThenOthers(t *testing.T) {
	f, _ := newFake()
	url := fifoQueue(f, nil)
	for _, g := range []struct {
		id string
		n  int
	}{{"a", 3}, {"b", 2}, {"c", 7}} {
		for i := range g.n {
			sendFIFO(t, f, url, g.id, g.id+itoa(i+1))
		}
	}
	got := receive(t, f, url, 10)
	assert.Equal(t, []string{"a1", "a2", "a3", "b1", "b2", "c1", "c2", "c3", "c4", "c5"}, bodies(got))
	assert.Empty(t, receive(t, f, url, 10), "c6 and c7 wait while c1..c5 are in flight")

	for _, m := range got[:3] {
		deleteMessage(t, f, url, *m.ReceiptHandle)
	}
	assert.Empty(t, receive(t, f, url, 10), "a is empty; c is still locked")
	for _, m := range got[5:9] {
		deleteMessage(t, f, url, *m.ReceiptHandle)
	}
	assert.Empty(t, receive(t, f, url, 10), "c5 alone still locks c")
	deleteMessage(t, f, url, *got[9].ReceiptHandle)
	assert.Equal(t, []string{"c6", "c7"}, bodies(receive(t, f, url, 10)))
}

// A group whose head was given back (visibility 0) is still locked while a
// later message of it is in flight, and then delivers the head first.
func TestFIFOHeadGivenBackWaitsForInFlightTail(t *testing.T) {
	f, clk := newFake()
	url := fifoQueue(f, map[string]string{"VisibilityTimeout": "30"})
	for _, b := range []string{"1", "2", "3"} {
		sendFIFO(t, f, url, "g", b)
	}
	msgs := receive(t, f, url, 2)
	require.Equal(t, []string{"1", "2"}, bodies(msgs))
	require.NoError(t, changeVisibility(f, url, *msgs[0].ReceiptHandle, 0))
	assert.Empty(t, receive(t, f, url, 10), "2 is in flight: the group is locked")
	clk.Advance(30 * time.Second)
	assert.Equal(t, []string{"1", "2", "3"}, bodies(receive(t, f, url, 10)))
}

// A long poll on a FIFO queue whose only group is locked wakes when the
// group unlocks, and gets the group's next messages.
func TestFIFOLongPollWakesWhenGroupUnlocks(t *testing.T) {
	f, clk := newFake()
	url := fifoQueue(f, nil)
	sendFIFO(t, f, url, "g", "1")
	sendFIFO(t, f, url, "g", "2")
	first := receive(t, f, url, 1)
	require.Equal(t, []string{"1"}, bodies(first))

	ch := longPoll(context.Background(), f, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 20})
	blockUntilWaiting(t, clk, 1)
	deleteMessage(t, f, url, *first[0].ReceiptHandle)
	r := waitResult(t, ch)
	require.NoError(t, r.err)
	assert.Equal(t, []string{"2"}, bodies(r.out.Messages))
}

// Groups take turns in the order they became ready, so a group that just
// unlocked does not jump ahead of groups that were waiting.
func TestFIFOGroupsTakeTurns(t *testing.T) {
	f, _ := newFake()
	url := fifoQueue(f, nil)
	sendFIFO(t, f, url, "a", "a1")
	sendFIFO(t, f, url, "a", "a2")
	sendFIFO(t, f, url, "b", "b1")
	sendFIFO(t, f, url, "c", "c1")
	a := receive(t, f, url, 1)
	require.Equal(t, []string{"a1"}, bodies(a))
	deleteMessage(t, f, url, *a[0].ReceiptHandle)
	assert.Equal(t, []string{"b1", "c1", "a2"}, bodies(receive(t, f, url, 10)))
}
