package sqsfake_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/sqsfake"
)

// serve runs f behind an httptest.Server and returns a real SDK client for
// it, without retries. Both are shut down when the test ends.
func serve(t *testing.T, f *sqsfake.Fake) (*sqs.Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(f.Handler())
	transport := &http.Transport{}
	t.Cleanup(func() {
		transport.CloseIdleConnections()
		srv.Close()
	})
	client := f.NewSDKClient(srv.URL, func(o *sqs.Options) {
		o.HTTPClient = &http.Client{Transport: transport}
		o.RetryMaxAttempts = 1
	})
	return client, srv
}

func TestHTTPSendReceiveDelete(t *testing.T) {
	f := sqsfake.New()
	client, _ := serve(t, f)
	ctx := context.Background()

	created, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("orders"), Attributes: map[string]string{"VisibilityTimeout": "60"}})
	require.NoError(t, err)
	url := *created.QueueUrl
	assert.Equal(t, f.QueueURL("orders"), url)

	// The SDK checks MD5OfMessageBody of what it sends and receives.
	sent, err := client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: &url, MessageBody: aws.String(`{"order":1}`),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"timestamp": {DataType: aws.String("Number"), StringValue: aws.String("1493147359900")},
			"raw":       {DataType: aws.String("Binary"), BinaryValue: []byte{0, 0xff, 7}},
		},
		MessageSystemAttributes: map[string]types.MessageSystemAttributeValue{
			"AWSTraceHeader": {DataType: aws.String("String"), StringValue: aws.String("Root=1-abc")},
		},
	})
	require.NoError(t, err)
	assert.NotEmpty(t, *sent.MessageId)
	assert.NotNil(t, sent.MD5OfMessageAttributes)
	assert.NotNil(t, sent.MD5OfMessageSystemAttributes)

	batch, err := client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: []types.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: aws.String("two")},
		{Id: aws.String("b"), MessageBody: aws.String("three")},
	}})
	require.NoError(t, err)
	require.Len(t, batch.Successful, 2)
	assert.Empty(t, batch.Failed)

	out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{"All"},
	})
	require.NoError(t, err)
	require.Len(t, out.Messages, 3)
	first := out.Messages[0]
	assert.Equal(t, *sent.MessageId, *first.MessageId)
	assert.Equal(t, `{"order":1}`, *first.Body)
	assert.Equal(t, []byte{0, 0xff, 7}, first.MessageAttributes["raw"].BinaryValue)
	assert.Equal(t, "1493147359900", *first.MessageAttributes["timestamp"].StringValue)
	assert.Equal(t, "1", first.Attributes["ApproximateReceiveCount"])
	assert.Equal(t, "Root=1-abc", first.Attributes["AWSTraceHeader"])
	assert.Equal(t, *sent.MD5OfMessageAttributes, *first.MD5OfMessageAttributes)

	del, err := client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: []types.DeleteMessageBatchRequestEntry{
		{Id: aws.String("0"), ReceiptHandle: out.Messages[0].ReceiptHandle},
		{Id: aws.String("1"), ReceiptHandle: out.Messages[1].ReceiptHandle},
		{Id: aws.String("bad"), ReceiptHandle: aws.String("not-a-handle")},
	}})
	require.NoError(t, err)
	assert.Len(t, del.Successful, 2)
	requireOneFailure(t, del.Failed, "bad", "ReceiptHandleIsInvalid", true)

	_, err = client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: out.Messages[2].ReceiptHandle, VisibilityTimeout: 0})
	require.NoError(t, err)
	again, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url})
	require.NoError(t, err)
	require.Len(t, again.Messages, 1)
	_, err = client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: again.Messages[0].ReceiptHandle})
	require.NoError(t, err)

	s := f.Stats(url)
	assert.EqualValues(t, 3, s.Deleted)
	assert.Zero(t, s.Visible+s.InFlight)
	assert.Equal(t, 2, f.Calls(sqsfake.OpReceiveMessage), "calls over HTTP are counted")
}

func TestHTTPQueueManagement(t *testing.T) {
	f := sqsfake.New()
	client, _ := serve(t, f)
	ctx := context.Background()
	f.MustCreateQueue("dlq.fifo", map[string]string{"FifoQueue": "true"})
	_, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("jobs.fifo"), Attributes: map[string]string{
		"FifoQueue": "true", "ContentBasedDeduplication": "true",
		"RedrivePolicy": sqsfake.RedrivePolicy(f.QueueARN("dlq.fifo"), 5),
	}})
	require.NoError(t, err)

	got, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("jobs.fifo")})
	require.NoError(t, err)
	url := *got.QueueUrl
	sent, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("x"), MessageGroupId: aws.String("g")})
	require.NoError(t, err)
	assert.NotNil(t, sent.SequenceNumber)

	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	require.NoError(t, err)
	assert.Equal(t, "1", attrs.Attributes["ApproximateNumberOfMessages"])
	assert.Equal(t, "true", attrs.Attributes["FifoQueue"])
	assert.Equal(t, f.QueueARN("jobs.fifo"), attrs.Attributes["QueueArn"])
	assert.JSONEq(t, sqsfake.RedrivePolicy(f.QueueARN("dlq.fifo"), 5), attrs.Attributes["RedrivePolicy"])

	_, err = client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: &url, Attributes: map[string]string{"VisibilityTimeout": "5"}})
	require.NoError(t, err)
	list, err := client.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String("jobs"), MaxResults: aws.Int32(10)})
	require.NoError(t, err)
	assert.Equal(t, []string{url}, list.QueueUrls)
	_, err = client.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: &url})
	require.NoError(t, err)
	_, err = client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: &url})
	require.NoError(t, err)
	_, err = client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("jobs.fifo")})
	var gone *types.QueueDoesNotExist
	require.ErrorAs(t, err, &gone)
}

func TestHTTPErrorsMapToSDKTypes(t *testing.T) {
	f := sqsfake.New()
	client, _ := serve(t, f)
	ctx := context.Background()
	url := f.MustCreateQueue("q", nil)

	// Each error as the SDK reports it over the wire and as the in-memory
	// fake returns it: they must agree.
	for _, c := range errorCases(url) {
		t.Run(c.name, func(t *testing.T) {
			if c.fault != nil {
				f.SetFaults(c.fault)
				defer f.SetFaults(nil)
			}
			direct, wire := c.call(ctx, f), c.call(ctx, client)
			for _, err := range []error{direct, wire} {
				requireCode(t, err, c.code)
				if c.typed != nil {
					target := c.typed()
					require.ErrorAs(t, err, target)
				}
				var apiErr smithy.APIError
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, c.errorFault(), apiErr.ErrorFault(), "%v", err)
				var re *awshttp.ResponseError
				require.ErrorAs(t, err, &re)
				assert.Equal(t, c.status, re.HTTPStatusCode())
			}
		})
	}
}

type client interface {
	GetQueueUrl(context.Context, *sqs.GetQueueUrlInput, ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	DeleteMessageBatch(context.Context, *sqs.DeleteMessageBatchInput, ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	ChangeMessageVisibility(context.Context, *sqs.ChangeMessageVisibilityInput, ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

type errorCase struct {
	name   string
	call   func(context.Context, client) error
	code   string
	typed  func() any
	status int
	server bool
	fault  sqsfake.Faults
}

func (c errorCase) errorFault() smithy.ErrorFault {
	if c.server {
		return smithy.FaultServer
	}
	return smithy.FaultClient
}

func errorCases(url string) []errorCase {
	entries := func(n int) []types.DeleteMessageBatchRequestEntry {
		var e []types.DeleteMessageBatchRequestEntry
		for i := range n {
			e = append(e, types.DeleteMessageBatchRequestEntry{Id: aws.String("id" + itoa(i)), ReceiptHandle: aws.String("h")})
		}
		return e
	}
	return []errorCase{
		{
			name: "QueueDoesNotExist", code: "AWS.SimpleQueueService.NonExistentQueue", status: 400,
			typed: func() any { return new(*types.QueueDoesNotExist) },
			call: func(ctx context.Context, c client) error {
				_, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("missing")})
				return err
			},
		},
		{
			name: "TooManyEntriesInBatchRequest", code: "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", status: 400,
			typed: func() any { return new(*types.TooManyEntriesInBatchRequest) },
			call: func(ctx context.Context, c client) error {
				_, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: entries(11)})
				return err
			},
		},
		{
			name: "EmptyBatchRequest", code: "AWS.SimpleQueueService.EmptyBatchRequest", status: 400,
			typed: func() any { return new(*types.EmptyBatchRequest) },
			call: func(ctx context.Context, c client) error {
				_, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: []types.DeleteMessageBatchRequestEntry{}})
				return err
			},
		},
		{
			name: "ReceiptHandleIsInvalid", code: "ReceiptHandleIsInvalid", status: 400,
			typed: func() any { return new(*types.ReceiptHandleIsInvalid) },
			call: func(ctx context.Context, c client) error {
				_, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: aws.String("bogus")})
				return err
			},
		},
		{
			name: "InvalidParameterValue", code: "InvalidParameterValue", status: 400,
			typed: func() any { return new(*smithy.GenericAPIError) },
			call: func(ctx context.Context, c client) error {
				_, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 11})
				return err
			},
		},
		{
			name: "InternalError", code: "InternalError", status: 500, server: true,
			typed: func() any { return new(*smithy.GenericAPIError) },
			fault: sqsfake.Faults{sqsfake.OpReceiveMessage: {ErrorRate: 1}},
			call: func(ctx context.Context, c client) error {
				_, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url})
				return err
			},
		},
		{
			name: "RequestThrottled", code: "RequestThrottled", status: 400,
			typed: func() any { return new(*types.RequestThrottled) },
			fault: sqsfake.Faults{sqsfake.OpReceiveMessage: {ThrottleRate: 1}},
			call: func(ctx context.Context, c client) error {
				_, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url})
				return err
			},
		},
	}
}

func TestHTTPLongPollWakesOnSend(t *testing.T) {
	f := sqsfake.New()
	client, _ := serve(t, f)
	url := f.MustCreateQueue("q", nil)
	entered := make(chan struct{}, 1)
	f.SetHook(func(api string, _ any) error {
		if api == sqsfake.OpReceiveMessage {
			entered <- struct{}{}
		}
		return nil
	})
	done := make(chan *sqs.ReceiveMessageOutput, 1)
	go func() {
		out, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 20})
		assert.NoError(t, err)
		done <- out
	}()
	<-entered
	f.MustSend(url, "wake up")
	select {
	case out := <-done:
		require.Len(t, out.Messages, 1)
		assert.Equal(t, "wake up", *out.Messages[0].Body)
	case <-time.After(10 * time.Second):
		t.Fatal("long poll did not return")
	}
}

func TestHTTPLongPollCancel(t *testing.T) {
	f := sqsfake.New()
	client, _ := serve(t, f)
	url := f.MustCreateQueue("q", nil)
	entered := make(chan struct{}, 1)
	returned := make(chan error, 1)
	f.SetHook(func(api string, _ any) error {
		if api == sqsfake.OpReceiveMessage {
			entered <- struct{}{}
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 20})
		returned <- err
	}()
	<-entered
	start := time.Now()
	cancel()
	select {
	case err := <-returned:
		require.ErrorIs(t, err, context.Canceled)
		assert.Less(t, time.Since(start), 5*time.Second)
	case <-time.After(10 * time.Second):
		t.Fatal("cancel did not end the long poll")
	}
	// The server side of the poll ends too; otherwise srv.Close in the
	// cleanup would block and goleak would report it.
}

func TestHTTPLatencyAndPartialFailures(t *testing.T) {
	f := sqsfake.New(sqsfake.WithSeed(3))
	client, _ := serve(t, f)
	ctx := context.Background()
	url := f.MustCreateQueue("q", nil)
	for range 10 {
		f.MustSend(url, "m")
	}
	f.SetFaults(sqsfake.Faults{
		sqsfake.OpReceiveMessage:     {Latency: 20 * time.Millisecond},
		sqsfake.OpDeleteMessageBatch: {PartialFailureRate: 1},
	})
	start := time.Now()
	out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)
	var entries []types.DeleteMessageBatchRequestEntry
	for i, m := range out.Messages {
		entries = append(entries, types.DeleteMessageBatchRequestEntry{Id: aws.String(itoa(i)), ReceiptHandle: m.ReceiptHandle})
	}
	del, err := client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: entries})
	require.NoError(t, err)
	require.Len(t, del.Failed, 10)
	assert.Equal(t, "InternalError", *del.Failed[0].Code)
	assert.False(t, del.Failed[0].SenderFault)
}

func TestHTTPRawProtocol(t *testing.T) {
	f := sqsfake.New()
	_, srv := serve(t, f)
	post := func(target, body string) (*http.Response, map[string]string) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-amz-json-1.0")
		if target != "" {
			req.Header.Set("X-Amz-Target", target)
		}
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var m map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp, m
	}

	resp, body := post("AmazonSQS.GetQueueUrl", `{"QueueName":"missing"}`)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, "application/x-amz-json-1.0", resp.Header.Get("Content-Type"))
	assert.Equal(t, "AWS.SimpleQueueService.NonExistentQueue;Sender", resp.Header.Get("x-amzn-query-error"))
	assert.Equal(t, "com.amazonaws.sqs#QueueDoesNotExist", body["__type"])
	assert.Equal(t, "The specified queue does not exist.", body["message"])
	assert.NotEmpty(t, resp.Header.Get("x-amzn-RequestId"))

	resp, body = post("AmazonSQS.CreateQueue", `{"QueueName":"q"}`)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, f.QueueURL("q"), body["QueueUrl"])

	resp, body = post("AmazonSQS.Nope", `{}`)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, "com.amazon.coral.service#UnknownOperationException", body["__type"])
	resp, body = post("", `{}`)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, "com.amazon.coral.service#UnknownOperationException", body["__type"])

	resp, body = post("AmazonSQS.CreateQueue", `{"QueueName":`)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, "com.amazonaws.sqs#SerializationException", body["__type"])

	resp, body = post("AmazonSQS.SendMessage", `{"QueueUrl":"`+f.QueueURL("q")+`"}`)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, "MissingParameter;Sender", resp.Header.Get("x-amzn-query-error"))
	assert.Contains(t, body["message"], "MessageBody")

	resp, _ = post("AmazonSQS.DeleteQueue", `{"QueueUrl":"`+f.QueueURL("q")+`"}`)
	assert.Equal(t, 200, resp.StatusCode)
}
