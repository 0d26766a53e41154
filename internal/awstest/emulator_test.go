package awstest_test

// These tests drive the SQS endpoint through the real AWS SDK.
// With ./scripts/test they run against the local emulators
// (local-aws-sqs 2.0.2 and dynalite 4.0.0) and document, in code, what those
// emulators do. They hold on real AWS too; where an emulator differs from
// AWS, the test logs what it saw instead of failing, and the comment says
// what AWS does.
//
// Differences from AWS seen through the SDK. Tests that run on the emulators
// must not rely on AWS behaviour listed here.
//
// local-aws-sqs 2.0.2:
//   - ReceiveMessage ignores MessageSystemAttributeNames and only honours the
//     deprecated AttributeNames field: set both.
//   - A long poll stays open until it has MaxNumberOfMessages messages or
//     WaitTimeSeconds is over; AWS returns as soon as it has any. If a
//     visibility timeout expires meanwhile, one response can hold the same
//     message twice.
//   - A FIFO message made visible again by ChangeMessageVisibility is queued
//     by when it became visible, not by its sequence number, so a group's
//     order does not survive a released message (seen by test/faults).
//   - A cancelled long poll keeps running on the server until its wait ends
//     and can take messages that were given back meanwhile.
//   - Every ChangeMessageVisibility (extension or release) adds 1 to
//     ApproximateReceiveCount, as a receive would; with a RedrivePolicy the
//     message goes to the DLQ when its visibility timeout expires with
//     ApproximateReceiveCount >= maxReceiveCount, so heartbeats can dead-letter
//     a message early. AWS counts receives only and moves the message on the
//     receive after the last allowed one.
//   - A FIFO message group is not locked while one of its messages is in
//     flight: the next receive returns the group's next message. AWS returns
//     nothing from that group until the first one is deleted or visible again.
//   - In a standard queue, a delete with an older receipt handle of the
//     message deletes it (AWS: succeeds, but the message may stay).
//   - Observed, not checked against AWS: in the DLQ, ApproximateReceiveCount
//     starts again from 0.
//
// dynalite 4.0.0: see internal/ddbtest/emulator_test.go.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/internal/awstest"
)

// testCtx bounds one test's AWS calls.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// check reports err as a fatal test failure.
func check(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// equal reports a non-fatal failure when got != want.
func equal[T comparable](t *testing.T, got, want T, what string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// receiveInput asks for all system attributes in both the current field and
// the deprecated one: local-aws-sqs 2.0.2 only reads AttributeNames.
func receiveInput(url string, maxMessages int32) *sqs.ReceiveMessageInput {
	return &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(url),
		MaxNumberOfMessages:         maxMessages,
		WaitTimeSeconds:             1,
		AttributeNames:              []types.QueueAttributeName{"All"}, //nolint:staticcheck // deprecated, but local-aws-sqs needs it
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{"All"},
		MessageAttributeNames:       []string{"All"},
	}
}

// receiveN receives until it has n messages or 10 s pass. A standard queue
// may return fewer messages than available in one call. It asks for just the
// missing number: local-aws-sqs holds a long poll open until it has
// MaxNumberOfMessages (see TestEmulatorSQSLongPollReturnsEarly).
func receiveN(ctx context.Context, t *testing.T, c *sqs.Client, url string, n int) []types.Message {
	t.Helper()
	var got []types.Message
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		out, err := c.ReceiveMessage(ctx, receiveInput(url, int32(min(n-len(got), 10))))
		check(t, err, "ReceiveMessage")
		got = append(got, out.Messages...)
	}
	if len(got) != n {
		t.Fatalf("received %d messages from %s, want %d", len(got), url, n)
	}
	return got
}

// receiveNone checks that a 1 s long poll comes back empty.
func receiveNone(ctx context.Context, t *testing.T, c *sqs.Client, url string) {
	t.Helper()
	out, err := c.ReceiveMessage(ctx, receiveInput(url, 10))
	check(t, err, "ReceiveMessage")
	if len(out.Messages) != 0 {
		t.Fatalf("queue %s: received %d messages, want none", url, len(out.Messages))
	}
}

func TestEmulatorSQSBatchRoundTrip(t *testing.T) {
	t.Parallel()
	c := awstest.SQS(t)
	ctx := testCtx(t)
	url := awstest.NewQueue(t, c, "emu-batch", map[string]string{"VisibilityTimeout": "30"})

	// SendMessageBatch: three entries, one with a message attribute (the SDK
	// checks the MD5 digests of bodies and attributes the server returns).
	var entries []types.SendMessageBatchRequestEntry
	for i := range 3 {
		e := types.SendMessageBatchRequestEntry{
			Id:          aws.String(fmt.Sprintf("m%d", i)),
			MessageBody: aws.String(fmt.Sprintf("body-%d", i)),
		}
		if i == 0 {
			e.MessageAttributes = map[string]types.MessageAttributeValue{
				"trace": {DataType: aws.String("String"), StringValue: aws.String("abc")},
			}
		}
		entries = append(entries, e)
	}
	sent, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
	check(t, err, "SendMessageBatch")
	if len(sent.Successful) != 3 || len(sent.Failed) != 0 {
		t.Fatalf("SendMessageBatch: %d successful, %d failed; want 3, 0", len(sent.Successful), len(sent.Failed))
	}
	idByBody := map[string]string{} // body -> MessageId
	for _, s := range sent.Successful {
		idByBody["body-"+aws.ToString(s.Id)[1:]] = aws.ToString(s.MessageId)
	}

	// ReceiveMessage: every message once, with its system attributes.
	byBody := map[string]types.Message{}
	for _, m := range receiveN(ctx, t, c, url, 3) {
		body := aws.ToString(m.Body)
		byBody[body] = m
		equal(t, aws.ToString(m.MessageId), idByBody[body], body+" MessageId")
		equal(t, m.Attributes["ApproximateReceiveCount"], "1", body+" ApproximateReceiveCount")
		for _, a := range []string{"SentTimestamp", "ApproximateFirstReceiveTimestamp"} {
			if m.Attributes[a] == "" {
				t.Errorf("%s: system attribute %s missing", body, a)
			}
		}
	}
	if len(byBody) != 3 {
		t.Fatalf("received bodies %v, want 3 distinct ones", byBody)
	}
	equal(t, aws.ToString(byBody["body-0"].MessageAttributes["trace"].StringValue), "abc", "message attribute trace")

	// DeleteMessageBatch answers 200 with a per-entry Failed list: the
	// garbage receipt handle fails alone, the other two are deleted.
	del, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{
		QueueUrl: aws.String(url),
		Entries: []types.DeleteMessageBatchRequestEntry{
			{Id: aws.String("d0"), ReceiptHandle: byBody["body-0"].ReceiptHandle},
			{Id: aws.String("bad"), ReceiptHandle: aws.String("garbage-receipt-handle")},
			{Id: aws.String("d1"), ReceiptHandle: byBody["body-1"].ReceiptHandle},
		},
	})
	check(t, err, "DeleteMessageBatch")
	var okIDs []string
	for _, s := range del.Successful {
		okIDs = append(okIDs, aws.ToString(s.Id))
	}
	slices.Sort(okIDs)
	if !slices.Equal(okIDs, []string{"d0", "d1"}) {
		t.Errorf("DeleteMessageBatch successful ids = %v, want [d0 d1]", okIDs)
	}
	if len(del.Failed) != 1 {
		t.Fatalf("DeleteMessageBatch: %d failed entries, want 1", len(del.Failed))
	}
	f := del.Failed[0]
	equal(t, aws.ToString(f.Id), "bad", "failed entry Id")
	equal(t, aws.ToString(f.Code), "ReceiptHandleIsInvalid", "failed entry Code")
	equal(t, f.SenderFault, true, "failed entry SenderFault")
	t.Logf("DeleteMessageBatch failed entry: Code=%s SenderFault=%v Message=%q",
		aws.ToString(f.Code), f.SenderFault, aws.ToString(f.Message))

	// ChangeMessageVisibilityBatch to 0 makes the last message visible again;
	// the next receive counts 2, keeps the MessageId and gives a new handle.
	last := byBody["body-2"]
	vis, err := c.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{
		QueueUrl: aws.String(url),
		Entries: []types.ChangeMessageVisibilityBatchRequestEntry{
			{Id: aws.String("v2"), ReceiptHandle: last.ReceiptHandle, VisibilityTimeout: 0},
		},
	})
	check(t, err, "ChangeMessageVisibilityBatch")
	if len(vis.Successful) != 1 || len(vis.Failed) != 0 {
		t.Fatalf("ChangeMessageVisibilityBatch: %d successful, %d failed; want 1, 0", len(vis.Successful), len(vis.Failed))
	}

	again := receiveN(ctx, t, c, url, 1)[0]
	equal(t, aws.ToString(again.Body), "body-2", "redelivered body")
	equal(t, aws.ToString(again.MessageId), aws.ToString(last.MessageId), "MessageId after redelivery")
	// AWS counts receives only: 2. local-aws-sqs 2.0.2 also counts every
	// ChangeMessageVisibility: 3 (see TestEmulatorSQSChangeVisibilityCount).
	switch rc := again.Attributes["ApproximateReceiveCount"]; rc {
	case "2":
	case "3":
		t.Logf("ApproximateReceiveCount after redelivery = 3: the visibility change counted as a receive (local-aws-sqs quirk; AWS says 2)")
	default:
		t.Errorf("ApproximateReceiveCount after redelivery = %s, want 2", rc)
	}
	if aws.ToString(again.ReceiptHandle) == aws.ToString(last.ReceiptHandle) {
		t.Errorf("redelivery kept the receipt handle; each receive must give a new one")
	}

	_, err = c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: again.ReceiptHandle})
	check(t, err, "DeleteMessage")
	receiveNone(ctx, t, c, url)
}

// Entry ids must be distinct within one batch call; unlike a bad entry this
// fails the whole call.
func TestEmulatorSQSBatchEntryIdsNotDistinct(t *testing.T) {
	t.Parallel()
	c := awstest.SQS(t)
	ctx := testCtx(t)
	url := awstest.NewQueue(t, c, "emu-dupids", nil)

	_, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{
		QueueUrl: aws.String(url),
		Entries: []types.SendMessageBatchRequestEntry{
			{Id: aws.String("same"), MessageBody: aws.String("a")},
			{Id: aws.String("same"), MessageBody: aws.String("b")},
		},
	})
	var notDistinct *types.BatchEntryIdsNotDistinct
	if !errors.As(err, &notDistinct) {
		t.Fatalf("SendMessageBatch with duplicate ids: err = %v, want BatchEntryIdsNotDistinct", err)
	}
	receiveNone(ctx, t, c, url)
}

// A delete with a receipt handle from an earlier receive: AWS documents that
// it succeeds but the message may stay. This test logs what the endpoint does.
func TestEmulatorSQSStaleReceiptHandle(t *testing.T) {
	t.Parallel()
	c := awstest.SQS(t)
	ctx := testCtx(t)
	url := awstest.NewQueue(t, c, "emu-stale", map[string]string{"VisibilityTimeout": "30"})
	_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("x")})
	check(t, err, "SendMessage")

	first := receiveN(ctx, t, c, url, 1)[0]
	_, err = c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(url), ReceiptHandle: first.ReceiptHandle, VisibilityTimeout: 0,
	})
	check(t, err, "ChangeMessageVisibility")
	second := receiveN(ctx, t, c, url, 1)[0]

	del, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{
		QueueUrl: aws.String(url),
		Entries:  []types.DeleteMessageBatchRequestEntry{{Id: aws.String("old"), ReceiptHandle: first.ReceiptHandle}},
	})
	check(t, err, "DeleteMessageBatch")
	outcome := "succeeded"
	if len(del.Failed) > 0 {
		outcome = "failed with " + aws.ToString(del.Failed[0].Code)
	}
	// Is the message still there? Make it visible with the newest handle.
	_, err = c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(url), ReceiptHandle: second.ReceiptHandle, VisibilityTimeout: 0,
	})
	still := "deleted"
	if err == nil {
		out, rerr := c.ReceiveMessage(ctx, receiveInput(url, 10))
		check(t, rerr, "ReceiveMessage")
		if len(out.Messages) > 0 {
			still = "still in the queue"
		}
	}
	t.Logf("delete with the stale receipt handle %s; message %s", outcome, still)
}

// local-aws-sqs 2.0.2 ignores MessageSystemAttributeNames (AWS honours it),
// which is why receiveInput sets both fields. This test only logs what the
// endpoint does with the new field alone.
func TestEmulatorSQSMessageSystemAttributeNamesAlone(t *testing.T) {
	t.Parallel()
	c := awstest.SQS(t)
	ctx := testCtx(t)
	url := awstest.NewQueue(t, c, "emu-sysattrs", nil)
	_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("x")})
	check(t, err, "SendMessage")

	var msgs []types.Message
	deadline := time.Now().Add(10 * time.Second)
	for len(msgs) == 0 && time.Now().Before(deadline) {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(url),
			WaitTimeSeconds:             1,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{"All"},
		})
		check(t, err, "ReceiveMessage")
		msgs = out.Messages
	}
	if len(msgs) != 1 {
		t.Fatalf("received %d messages, want 1", len(msgs))
	}
	if rc := msgs[0].Attributes["ApproximateReceiveCount"]; rc == "" {
		t.Logf("endpoint ignores MessageSystemAttributeNames: no system attributes returned (local-aws-sqs quirk; AWS returns them)")
	} else {
		t.Logf("endpoint honours MessageSystemAttributeNames: ApproximateReceiveCount=%s", rc)
	}
}

// AWS ends a long poll as soon as it has any message to return.
// local-aws-sqs 2.0.2 keeps it open until it has MaxNumberOfMessages or
// WaitTimeSeconds is over, so a consumer polling with WaitTimeSeconds=20 and
// 10 messages waits 20 s for each smaller batch; tests against it should use
// short waits. (While it waits, a message whose visibility timeout expires
// can even be returned twice in one response.) This test logs which
// behaviour the endpoint has.
func TestEmulatorSQSLongPollReturnsEarly(t *testing.T) {
	t.Parallel()
	c := awstest.SQS(t)
	ctx := testCtx(t)
	url := awstest.NewQueue(t, c, "emu-longpoll", nil)
	_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("x")})
	check(t, err, "SendMessage")

	in := receiveInput(url, 10)
	in.WaitTimeSeconds = 2
	start := time.Now()
	out, err := c.ReceiveMessage(ctx, in)
	check(t, err, "ReceiveMessage")
	took := time.Since(start)
	if len(out.Messages) != 1 {
		t.Fatalf("received %d messages, want 1", len(out.Messages))
	}
	if took < 1500*time.Millisecond {
		t.Logf("long poll returned after %v with 1 of 10 messages (AWS behaviour)", took.Round(time.Millisecond))
	} else {
		t.Logf("long poll returned after %v, the whole WaitTimeSeconds, with 1 of 10 messages (local-aws-sqs quirk)", took.Round(time.Millisecond))
	}
}

// local-aws-sqs 2.0.2 counts every ChangeMessageVisibility as a receive
// (it bumps ApproximateReceiveCount); AWS counts only receives. So on the
// emulator, visibility extensions (heartbeats) inflate the receive count and,
// with a RedrivePolicy, can send a message to the DLQ early. This test logs
// which behaviour the endpoint has.
func TestEmulatorSQSChangeVisibilityCount(t *testing.T) {
	t.Parallel()
	c := awstest.SQS(t)
	ctx := testCtx(t)
	url := awstest.NewQueue(t, c, "emu-viscount", map[string]string{"VisibilityTimeout": "30"})
	_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("x")})
	check(t, err, "SendMessage")

	m := receiveN(ctx, t, c, url, 1)[0]
	for _, timeout := range []int32{60, 0} { // a heartbeat, then a release
		_, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: timeout,
		})
		check(t, err, "ChangeMessageVisibility")
	}
	again := receiveN(ctx, t, c, url, 1)[0]
	switch rc := again.Attributes["ApproximateReceiveCount"]; rc {
	case "2":
		t.Logf("ApproximateReceiveCount = 2 after receive, extend, release, receive (AWS behaviour)")
	case "4":
		t.Logf("ApproximateReceiveCount = 4 after receive, extend, release, receive: each visibility change counted (local-aws-sqs quirk)")
	default:
		t.Errorf("ApproximateReceiveCount = %s after receive, extend, release, receive; want 2 (AWS) or 4 (local-aws-sqs)", rc)
	}
}

// A RedrivePolicy moves a message to the DLQ once it has been received
// maxReceiveCount times without being deleted; the MessageId stays the same.
// The message is left to time out (VisibilityTimeout 1 s) rather than
// released with ChangeMessageVisibility, which local-aws-sqs would count as
// a receive. AWS moves the message on the receive after the last allowed
// one; local-aws-sqs when the last visibility timeout expires.
func TestEmulatorSQSRedriveToDLQ(t *testing.T) {
	t.Parallel()
	c := awstest.SQS(t)
	ctx := testCtx(t)
	const maxReceiveCount = 2
	url, dlqURL := awstest.NewQueueWithDLQ(t, c, maxReceiveCount, map[string]string{"VisibilityTimeout": "1"})

	sent, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("poison")})
	check(t, err, "SendMessage")

	for i := 1; i <= maxReceiveCount; i++ {
		m := receiveN(ctx, t, c, url, 1)[0] // waits out the previous visibility timeout
		equal(t, m.Attributes["ApproximateReceiveCount"], strconv.Itoa(i), "ApproximateReceiveCount")
	}

	receiveNone(ctx, t, c, url) // on AWS, this receive moves the message
	dead := receiveN(ctx, t, c, dlqURL, 1)[0]
	equal(t, aws.ToString(dead.Body), "poison", "DLQ message body")
	equal(t, aws.ToString(dead.MessageId), aws.ToString(sent.MessageId), "DLQ message MessageId")
	t.Logf("in the DLQ: ApproximateReceiveCount=%s DeadLetterQueueSourceArn=%q",
		dead.Attributes["ApproximateReceiveCount"], dead.Attributes["DeadLetterQueueSourceArn"])
}

// FIFO order holds within a group. AWS also locks the group while a message
// of it is in flight; local-aws-sqs 2.0.2 does not, so this test logs which
// of the two it saw rather than failing.
func TestEmulatorSQSFIFOGroupOrder(t *testing.T) {
	t.Parallel()
	c := awstest.SQS(t)
	ctx := testCtx(t)
	// With a DLQ (FIFO too), which the group-order check does not touch.
	url, _ := awstest.NewQueueWithDLQ(t, c, 5, map[string]string{
		"FifoQueue":                 "true",
		"ContentBasedDeduplication": "true",
		"VisibilityTimeout":         "30",
	})
	var entries []types.SendMessageBatchRequestEntry
	for i := range 3 {
		entries = append(entries, types.SendMessageBatchRequestEntry{
			Id:             aws.String(fmt.Sprintf("f%d", i)),
			MessageBody:    aws.String(fmt.Sprintf("g1-%d", i)),
			MessageGroupId: aws.String("g1"),
		})
	}
	sent, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
	check(t, err, "SendMessageBatch")
	if len(sent.Successful) != 3 || len(sent.Failed) != 0 {
		t.Fatalf("SendMessageBatch: %d successful, %d failed; want 3, 0", len(sent.Successful), len(sent.Failed))
	}
	for _, s := range sent.Successful {
		if aws.ToString(s.SequenceNumber) == "" {
			t.Errorf("FIFO send of %s returned no SequenceNumber", aws.ToString(s.Id))
		}
	}

	out, err := c.ReceiveMessage(ctx, receiveInput(url, 1))
	check(t, err, "ReceiveMessage")
	if len(out.Messages) != 1 {
		t.Fatalf("received %d messages, want 1", len(out.Messages))
	}
	equal(t, aws.ToString(out.Messages[0].Body), "g1-0", "first FIFO message")
	equal(t, out.Messages[0].Attributes["MessageGroupId"], "g1", "MessageGroupId attribute")

	// g1-0 is in flight now.
	out, err = c.ReceiveMessage(ctx, receiveInput(url, 1))
	check(t, err, "ReceiveMessage")
	if len(out.Messages) == 0 {
		t.Logf("group g1 locked while g1-0 is in flight (AWS behaviour)")
	} else {
		equal(t, aws.ToString(out.Messages[0].Body), "g1-1", "next message of the group")
		t.Logf("group g1 NOT locked while g1-0 is in flight: got %s (local-aws-sqs quirk)", aws.ToString(out.Messages[0].Body))
	}
}
