package sqsfake_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/sqsfake"
)

func TestRedriveToDeadLetterQueue(t *testing.T) {
	f, clk := newFake()
	dlq := f.MustCreateQueue("dlq", nil)
	url := f.MustCreateQueue("work", map[string]string{
		"VisibilityTimeout": "10",
		"RedrivePolicy":     sqsfake.RedrivePolicy(f.QueueARN("dlq"), 2),
	})
	id := f.MustSend(url, "poison")
	f.MustSendMessage(&sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("fine")})

	for range 2 {
		for _, m := range receive(t, f, url, 10) {
			if *m.Body == "fine" {
				deleteMessage(t, f, url, *m.ReceiptHandle)
			}
		}
		clk.Advance(10 * time.Second)
	}
	// The third receive would exceed maxReceiveCount 2: the message moves.
	assert.Empty(t, receive(t, f, url, 10))
	s := f.Stats(url)
	assert.EqualValues(t, 1, s.MovedToDLQ)
	assert.Zero(t, s.Visible+s.InFlight)

	moved := f.Messages(dlq)
	require.Len(t, moved, 1)
	assert.Equal(t, id, moved[0].MessageID, "MessageId is kept")
	assert.Equal(t, "poison", moved[0].Body)
	assert.Zero(t, moved[0].ReceiveCount)
	assert.Equal(t, f.QueueARN("work"), moved[0].SourceQueueARN)
	assert.EqualValues(t, 1, f.Stats(dlq).MovedIn)

	out, err := f.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: &dlq, MessageSystemAttributeNames: []types.MessageSystemAttributeName{"DeadLetterQueueSourceArn", "ApproximateReceiveCount"},
	})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	assert.Equal(t, map[string]string{"DeadLetterQueueSourceArn": f.QueueARN("work"), "ApproximateReceiveCount": "1"}, out.Messages[0].Attributes)
}

func TestRedriveDuringLongPoll(t *testing.T) {
	f, clk := newFake()
	dlq := f.MustCreateQueue("dlq", nil)
	url := f.MustCreateQueue("work", map[string]string{
		"VisibilityTimeout": "10",
		"RedrivePolicy":     sqsfake.RedrivePolicy(f.QueueARN("dlq"), 1),
	})
	f.MustSend(url, "poison")
	receiveOne(t, f, url)

	ch := longPoll(context.Background(), f, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 20})
	blockUntilWaiting(t, clk, 1)
	clk.Advance(10 * time.Second) // the message becomes visible and is moved out, not delivered
	blockUntilWaiting(t, clk, 1)
	assert.Len(t, f.Messages(dlq), 1)
	clk.Advance(10 * time.Second)
	r := waitResult(t, ch)
	require.NoError(t, r.err)
	assert.Empty(t, r.out.Messages)
}

func TestRedrivePolicyValidation(t *testing.T) {
	f, _ := newFake()
	f.MustCreateQueue("dlq", nil)
	f.MustCreateQueue("dlq.fifo", map[string]string{"FifoQueue": "true"})
	for _, policy := range []string{
		`not json`,
		`{"deadLetterTargetArn":"` + f.QueueARN("dlq") + `","maxReceiveCount":0}`,
		`{"deadLetterTargetArn":"` + f.QueueARN("dlq") + `","maxReceiveCount":1001}`,
		`{"maxReceiveCount":3}`,
	} {
		_, err := f.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: str("q"), Attributes: map[string]string{"RedrivePolicy": policy}})
		var bad *types.InvalidAttributeValue
		require.ErrorAs(t, err, &bad, policy)
	}
	for _, target := range []string{"missing", "dlq.fifo", "q"} {
		_, err := f.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: str("q"), Attributes: map[string]string{
			"RedrivePolicy": sqsfake.RedrivePolicy(f.QueueARN(target), 3),
		}})
		requireCode(t, err, sqsfake.CodeInvalidParameterValue)
	}
	// maxReceiveCount may come as a string.
	_, err := f.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: str("q"), Attributes: map[string]string{
		"RedrivePolicy": `{"deadLetterTargetArn":"` + f.QueueARN("dlq") + `","maxReceiveCount":"5"}`,
	}})
	require.NoError(t, err)
}

func TestBatchRequestRules(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	ctx := context.Background()
	ids := func(ids ...string) []string { return ids }
	many := make([]string, 11)
	for i := range many {
		many[i] = "id" + itoa(i)
	}
	cases := []struct {
		name string
		ids  []string
		want any
	}{
		{"empty", ids(), &types.EmptyBatchRequest{}},
		{"too many", many, &types.TooManyEntriesInBatchRequest{}},
		{"repeated id", ids("a", "b", "a"), &types.BatchEntryIdsNotDistinct{}},
		{"bad character", ids("a.b"), &types.InvalidBatchEntryId{}},
		{"too long", ids(strings.Repeat("x", 81)), &types.InvalidBatchEntryId{}},
		{"empty id", ids(""), &types.InvalidBatchEntryId{}},
	}
	batchCalls := map[string]func(ids []string) error{
		"SendMessageBatch": func(ids []string) error {
			entries := []types.SendMessageBatchRequestEntry{}
			for _, id := range ids {
				entries = append(entries, types.SendMessageBatchRequestEntry{Id: str(id), MessageBody: str("b")})
			}
			_, err := f.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
			return err
		},
		"DeleteMessageBatch": func(ids []string) error {
			entries := []types.DeleteMessageBatchRequestEntry{}
			for _, id := range ids {
				entries = append(entries, types.DeleteMessageBatchRequestEntry{Id: str(id), ReceiptHandle: str("h")})
			}
			_, err := f.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: entries})
			return err
		},
		"ChangeMessageVisibilityBatch": func(ids []string) error {
			entries := []types.ChangeMessageVisibilityBatchRequestEntry{}
			for _, id := range ids {
				entries = append(entries, types.ChangeMessageVisibilityBatchRequestEntry{Id: str(id), ReceiptHandle: str("h")})
			}
			_, err := f.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: &url, Entries: entries})
			return err
		},
	}
	for api, call := range batchCalls {
		for _, c := range cases {
			t.Run(api+"/"+c.name, func(t *testing.T) {
				err := call(c.ids)
				require.Error(t, err)
				target := c.want
				require.ErrorAs(t, err, &target)
			})
		}
	}
	_, err := f.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url})
	require.ErrorContains(t, err, "missing required field, DeleteMessageBatchInput.Entries")
	for api, call := range batchCalls {
		require.NoError(t, call(append(many[:9], strings.Repeat("a", 80))), "%s: 10 entries, ids up to 80 characters", api)
	}
}

func TestSendLimits(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	ctx := context.Background()
	send := func(in *sqs.SendMessageInput) error {
		in.QueueUrl = &url
		_, err := f.SendMessage(ctx, in)
		return err
	}

	require.NoError(t, send(&sqs.SendMessageInput{MessageBody: str(strings.Repeat("x", 1<<20))}), "exactly 1 MiB")
	requireCode(t, send(&sqs.SendMessageInput{MessageBody: str(strings.Repeat("x", 1<<20+1))}), sqsfake.CodeInvalidParameterValue)
	requireCode(t, send(&sqs.SendMessageInput{MessageBody: str(strings.Repeat("x", 1<<20-10)), MessageAttributes: map[string]types.MessageAttributeValue{
		"attr": {DataType: str("String"), StringValue: str("0123456789")},
	}}), sqsfake.CodeInvalidParameterValue)
	requireCode(t, send(&sqs.SendMessageInput{MessageBody: str("")}), sqsfake.CodeMissingParameter)
	var contents *types.InvalidMessageContents
	require.ErrorAs(t, send(&sqs.SendMessageInput{MessageBody: str("bell\x07")}), &contents)
	require.ErrorAs(t, send(&sqs.SendMessageInput{MessageBody: str("\xff")}), &contents)
	// After runs of printable ASCII that the check skips eight bytes at a time.
	for _, body := range []string{"12345678\x07", "a printable run of some length, then a bell\x07 and more", "0123456789abcdef\xed\xa0\x80"} {
		require.ErrorAs(t, send(&sqs.SendMessageInput{MessageBody: str(body)}), &contents, "%q", body)
	}
	require.NoError(t, send(&sqs.SendMessageInput{MessageBody: str("tab\t nl\n cr\r ünïcødé 🎉")}))
	require.NoError(t, send(&sqs.SendMessageInput{MessageBody: str("a printable run of some length, then ünïcødé 🎉 and \x7f")}))
	require.ErrorContains(t, send(&sqs.SendMessageInput{}), "missing required field, SendMessageInput.MessageBody")

	for name, v := range map[string]types.MessageAttributeValue{
		"nil type":    {StringValue: str("x")},
		"bad type":    {DataType: str("Float"), StringValue: str("1")},
		"no string":   {DataType: str("String")},
		"not number":  {DataType: str("Number"), StringValue: str("abc")},
		"no binary":   {DataType: str("Binary")},
		"bad name ..": {DataType: str("String"), StringValue: str("x")},
	} {
		attrName := "ok"
		if strings.HasPrefix(name, "bad name") {
			attrName = "a..b"
		}
		requireCode(t, send(&sqs.SendMessageInput{MessageBody: str("b"), MessageAttributes: map[string]types.MessageAttributeValue{attrName: v}}), sqsfake.CodeInvalidParameterValue)
	}
	tooMany := map[string]types.MessageAttributeValue{}
	for i := range 11 {
		tooMany["a"+itoa(i)] = types.MessageAttributeValue{DataType: str("String"), StringValue: str("x")}
	}
	requireCode(t, send(&sqs.SendMessageInput{MessageBody: str("b"), MessageAttributes: tooMany}), sqsfake.CodeInvalidParameterValue)
	requireCode(t, send(&sqs.SendMessageInput{MessageBody: str("b"), MessageSystemAttributes: map[string]types.MessageSystemAttributeValue{
		"SenderId": {DataType: str("String"), StringValue: str("x")},
	}}), sqsfake.CodeInvalidParameterValue)
}

func TestSendMessageBatch(t *testing.T) {
	f, _ := newFake()
	url := f.MustCreateQueue("q", nil)
	ctx := context.Background()

	out, err := f.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: []types.SendMessageBatchRequestEntry{
		{Id: str("ok"), MessageBody: str("derp")},
		{Id: str("bad"), MessageBody: str("\x00")},
		{Id: str("delayed"), MessageBody: str("later"), DelaySeconds: 10},
	}})
	require.NoError(t, err)
	require.Len(t, out.Successful, 2)
	assert.Equal(t, "ok", *out.Successful[0].Id)
	assert.Equal(t, "58fd9edd83341c29f1aebba81c31e257", *out.Successful[0].MD5OfMessageBody)
	requireOneFailure(t, out.Failed, "bad", "InvalidMessageContents", true)
	s := f.Stats(url)
	assert.Equal(t, 1, s.Visible)
	assert.Equal(t, 1, s.Delayed)

	// The whole batch is limited to 1 MiB.
	half := strings.Repeat("x", 1<<19)
	_, err = f.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: []types.SendMessageBatchRequestEntry{
		{Id: str("a"), MessageBody: &half}, {Id: str("b"), MessageBody: &half}, {Id: str("c"), MessageBody: str("x")},
	}})
	var tooLong *types.BatchRequestTooLong
	require.ErrorAs(t, err, &tooLong)
	requireCode(t, err, "AWS.SimpleQueueService.BatchRequestTooLong")
}

func TestDeleteMessageBatch(t *testing.T) {
	f, clk := newFake()
	url := f.MustCreateQueue("q", nil)
	for i := range 3 {
		f.MustSend(url, itoa(i))
	}
	msgs := receive(t, f, url, 10)
	require.Len(t, msgs, 3)
	stale := *msgs[2].ReceiptHandle
	require.NoError(t, changeVisibility(f, url, stale, 0))
	fresh := *receiveOne(t, f, url).ReceiptHandle
	clk.Advance(time.Second)

	out, err := f.DeleteMessageBatch(context.Background(), &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: []types.DeleteMessageBatchRequestEntry{
		{Id: str("0"), ReceiptHandle: msgs[0].ReceiptHandle},
		{Id: str("1"), ReceiptHandle: msgs[1].ReceiptHandle},
		{Id: str("stale"), ReceiptHandle: &stale},
		{Id: str("bogus"), ReceiptHandle: str("bogus")},
	}})
	require.NoError(t, err)
	assert.Len(t, out.Successful, 3, "a stale handle succeeds")
	requireOneFailure(t, out.Failed, "bogus", "ReceiptHandleIsInvalid", true)
	s := f.Stats(url)
	assert.EqualValues(t, 2, s.Deleted)
	assert.EqualValues(t, 1, s.StaleDeletes)
	assert.Equal(t, 1, s.InFlight)
	deleteMessage(t, f, url, fresh)
	assert.Zero(t, f.Stats(url).InFlight)
}

func TestCreateQueue(t *testing.T) {
	f, clk := newFake(sqsfake.WithRegion("eu-west-1"), sqsfake.WithAccount("123456789012"))
	ctx := context.Background()
	url := f.MustCreateQueue("q", map[string]string{"VisibilityTimeout": "60"})
	assert.Equal(t, "https://sqs.eu-west-1.amazonaws.com/123456789012/q", url)
	assert.Equal(t, "arn:aws:sqs:eu-west-1:123456789012:q", f.QueueARN("q"))

	out, err := f.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: str("q"), Attributes: map[string]string{"VisibilityTimeout": "60"}})
	require.NoError(t, err, "same attributes: the existing queue")
	assert.Equal(t, url, *out.QueueUrl)
	_, err = f.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: str("q")})
	require.NoError(t, err, "no attributes given: nothing conflicts")
	_, err = f.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: str("q"), Attributes: map[string]string{"VisibilityTimeout": "61"}})
	var exists *types.QueueNameExists
	require.ErrorAs(t, err, &exists)

	for name, attrs := range map[string]map[string]string{
		"has.dot":                        nil,
		"plain.fifo":                     nil,
		"nofifo":                         {"FifoQueue": "true"},
		"":                               nil,
		"bad/char":                       nil,
		"x.fifo":                         {"FifoQueue": "yes"},
		"long" + strings.Repeat("x", 80): nil,
	} {
		_, err := f.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &name, Attributes: attrs})
		require.Error(t, err, name)
	}
	for _, attrs := range []map[string]string{
		{"VisibilityTimeout": "43201"}, {"DelaySeconds": "901"}, {"ReceiveMessageWaitTimeSeconds": "21"},
		{"MessageRetentionPeriod": "59"}, {"MaximumMessageSize": "1048577"}, {"VisibilityTimeout": "x"},
	} {
		_, err := f.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: str("other"), Attributes: attrs})
		var bad *types.InvalidAttributeValue
		require.ErrorAs(t, err, &bad, attrs)
	}
	_, err = f.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: str("other"), Attributes: map[string]string{"Nonsense": "1"}})
	var badName *types.InvalidAttributeName
	require.ErrorAs(t, err, &badName)
	_, err = f.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: str("other"), Attributes: map[string]string{"ContentBasedDeduplication": "true"}})
	require.ErrorAs(t, err, &badName, "FIFO attribute on a standard queue")

	got, err := f.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: []types.QueueAttributeName{"All"}})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{
		"QueueArn": f.QueueARN("q"), "ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0",
		"ApproximateNumberOfMessagesDelayed": "0", "CreatedTimestamp": itoa64(epoch.Unix()),
		"LastModifiedTimestamp": itoa64(epoch.Unix()), "VisibilityTimeout": "60", "DelaySeconds": "0",
		"ReceiveMessageWaitTimeSeconds": "0", "MessageRetentionPeriod": "345600", "MaximumMessageSize": "1048576",
	}, got.Attributes)

	clk.Advance(time.Hour)
	_, err = f.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: &url, Attributes: map[string]string{"DelaySeconds": "5", "Policy": "{}"}})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"DelaySeconds": "5", "Policy": "{}", "LastModifiedTimestamp": itoa64(epoch.Add(time.Hour).Unix())},
		queueAttributes(t, f, url, "DelaySeconds", "Policy", "LastModifiedTimestamp"))
	_, err = f.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: &url, Attributes: map[string]string{"FifoQueue": "true"}})
	require.Error(t, err)
	_, err = f.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: []types.QueueAttributeName{"Bogus"}})
	require.ErrorAs(t, err, &badName)

	fifo := f.MustCreateQueue("q.fifo", map[string]string{"FifoQueue": "true"})
	assert.Equal(t, map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "false"},
		queueAttributes(t, f, fifo, "FifoQueue", "ContentBasedDeduplication"))
}

func TestQueueLookup(t *testing.T) {
	f, _ := newFake()
	ctx := context.Background()
	url := f.MustCreateQueue("q", nil)

	out, err := f.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: str("q")})
	require.NoError(t, err)
	assert.Equal(t, url, *out.QueueUrl)
	_, err = f.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: str("q"), QueueOwnerAWSAccountId: str("999999999999")})
	var gone *types.QueueDoesNotExist
	require.ErrorAs(t, err, &gone)

	// Only the account and name of a URL matter, so a local endpoint's URL works.
	f.MustSend("http://localhost:4566/"+sqsfake.DefaultAccount+"/q", "x")
	_, err = f.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: str("https://sqs.us-east-1.amazonaws.com/999999999999/q"), MessageBody: str("x")})
	require.ErrorAs(t, err, &gone)
	for _, bad := range []string{"q", "", "/q"} {
		_, err = f.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &bad, MessageBody: str("x")})
		require.ErrorAs(t, err, &gone, bad)
	}
}

func TestListQueues(t *testing.T) {
	f, _ := newFake()
	ctx := context.Background()
	for _, n := range []string{"b", "a", "c", "other"} {
		f.MustCreateQueue(n, nil)
	}
	out, err := f.ListQueues(ctx, &sqs.ListQueuesInput{})
	require.NoError(t, err)
	assert.Equal(t, []string{f.QueueURL("a"), f.QueueURL("b"), f.QueueURL("c"), f.QueueURL("other")}, out.QueueUrls)
	assert.Nil(t, out.NextToken)

	var pages [][]string
	in := &sqs.ListQueuesInput{MaxResults: aws.Int32(2)}
	for {
		out, err := f.ListQueues(ctx, in)
		require.NoError(t, err)
		pages = append(pages, out.QueueUrls)
		if out.NextToken == nil {
			break
		}
		in.NextToken = out.NextToken
	}
	assert.Equal(t, [][]string{{f.QueueURL("a"), f.QueueURL("b")}, {f.QueueURL("c"), f.QueueURL("other")}}, pages)

	out, err = f.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: str("o")})
	require.NoError(t, err)
	assert.Equal(t, []string{f.QueueURL("other")}, out.QueueUrls)
	_, err = f.ListQueues(ctx, &sqs.ListQueuesInput{MaxResults: aws.Int32(1001)})
	requireCode(t, err, sqsfake.CodeInvalidParameterValue)
}

func TestPurgeAndDeleteQueue(t *testing.T) {
	f, clk := newFake()
	ctx := context.Background()
	url := f.MustCreateQueue("q", nil)
	f.MustSend(url, "a")
	f.MustSend(url, "b")
	h := *receiveOne(t, f, url).ReceiptHandle

	_, err := f.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: &url})
	require.NoError(t, err)
	s := f.Stats(url)
	assert.Zero(t, s.Visible+s.InFlight)
	assert.EqualValues(t, 2, s.Purged)
	deleteMessage(t, f, url, h) // a handle of a purged message still deletes "successfully"

	_, err = f.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: &url})
	var inProgress *types.PurgeQueueInProgress
	require.ErrorAs(t, err, &inProgress)
	clk.Advance(time.Minute)
	_, err = f.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: &url})
	require.NoError(t, err)

	_, err = f.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: &url})
	require.NoError(t, err)
	_, err = f.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: str("x")})
	var gone *types.QueueDoesNotExist
	require.ErrorAs(t, err, &gone)
	assert.Panics(t, func() { f.Stats(url) })
}

func TestInvalidParamsMatchTheSDKsValidation(t *testing.T) {
	f, _ := newFake()
	ctx := context.Background()
	_, err := f.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: str("u")})
	var params smithy.InvalidParamsError
	require.ErrorAs(t, err, &params)
	assert.ErrorContains(t, err, "DeleteMessageInput.ReceiptHandle")
	_, err = f.CreateQueue(ctx, nil)
	require.ErrorAs(t, err, &params)
}
