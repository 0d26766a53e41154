package lambdasqspool_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/internal/sdkhttp"
	"github.com/sqspool/sqspool/lambdasqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

// mapping does what Lambda's event source mapping does with a queue of an
// in-memory SQS, reached through the real SDK over HTTP on 127.0.0.1: it
// receives a batch, invokes the function with it as an SQS event's JSON,
// and deletes the records the response does not list.
type mapping struct {
	t      *testing.T
	fake   *sqsfake.Fake
	clk    *clock.Manual
	client *sqs.Client
}

func newMapping(t *testing.T) *mapping {
	clk := clock.NewManual(time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC))
	fake := sqsfake.New(clock.Option[sqsfake.Option](clk))
	srv := httptest.NewServer(fake.Handler())
	transport := &http.Transport{}
	t.Cleanup(func() {
		transport.CloseIdleConnections()
		srv.Close()
	})
	client := fake.NewSDKClient(srv.URL, func(o *sqs.Options) {
		o.HTTPClient = sdkhttp.Client(transport)
		o.RetryMaxAttempts = 1
	})
	return &mapping{t: t, fake: fake, clk: clk, client: client}
}

// poll runs one batch of queue through fn and returns the bodies received
// and the response's failures.
func (e *mapping) poll(name string, fn lambda.Handler) (bodies []string, failed []string) {
	t, ctx := e.t, context.Background()
	out, err := e.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(e.fake.QueueURL(name)),
		MaxNumberOfMessages:         10,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	})
	require.NoError(t, err)
	if len(out.Messages) == 0 {
		return nil, nil
	}
	var ev events.SQSEvent
	for _, m := range out.Messages {
		bodies = append(bodies, aws.ToString(m.Body))
		ev.Records = append(ev.Records, events.SQSMessage{
			MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
			Body: aws.ToString(m.Body), Md5OfBody: aws.ToString(m.MD5OfBody), Attributes: m.Attributes,
			EventSource: "aws:sqs", EventSourceARN: e.fake.QueueARN(name), AWSRegion: sqsfake.DefaultRegion,
		})
	}
	payload, err := json.Marshal(ev)
	require.NoError(t, err)
	res, err := fn.Invoke(ctx, payload)
	require.NoError(t, err)
	var resp events.SQSEventResponse
	require.NoError(t, json.Unmarshal(res, &resp))
	retry := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		retry[f.ItemIdentifier] = true
		failed = append(failed, f.ItemIdentifier)
	}
	var del []types.DeleteMessageBatchRequestEntry
	for i, r := range ev.Records {
		if !retry[r.MessageId] {
			del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(string(rune('a' + i))), ReceiptHandle: aws.String(r.ReceiptHandle)})
		}
	}
	if len(del) > 0 {
		d, err := e.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(e.fake.QueueURL(name)), Entries: del})
		require.NoError(t, err)
		require.Empty(t, d.Failed)
	}
	return bodies, failed
}

// firstDeliveryFails is a handler whose order's action applies to its first
// delivery only: later deliveries succeed.
func firstDeliveryFails(rec *recorder) sqspool.Handler[order] {
	return func(ctx context.Context, o *order) error {
		if m, _ := sqspool.MessageFrom(ctx); m.ReceiveCount > 1 {
			return rec.handle(ctx, &order{ID: o.ID})
		}
		return rec.handle(ctx, o)
	}
}

func TestMappingOnAStandardQueueDeletesOnlyWhatSucceeded(t *testing.T) {
	e := newMapping(t)
	url := e.fake.MustCreateQueue("orders", map[string]string{"VisibilityTimeout": "60"})
	ids := map[string]string{}
	for _, o := range []order{{"s-1", "ok"}, {"s-2", "fail"}, {"s-3", "retry"}, {"s-4", "noretry"}} {
		ids[o.ID] = e.fake.MustSendJSON(url, o)
	}
	var rec recorder
	h, err := lambdasqspool.New(firstDeliveryFails(&rec), e.client, quiet)
	require.NoError(t, err)
	fn := lambda.NewHandler(h)

	bodies, failed := e.poll("orders", fn)
	require.Len(t, bodies, 4)
	assert.ElementsMatch(t, []string{ids["s-2"], ids["s-3"]}, failed)
	// s-1 and s-4 (NoRetry) are deleted; RetryAfter(30s) made s-3 visible
	// in 30 s, through ChangeMessageVisibility on the queue the event's
	// ARN names; s-2 waits for its visibility timeout.
	visibleAt := map[string]time.Time{}
	for _, m := range e.fake.Messages("orders") {
		visibleAt[m.MessageID] = m.VisibleAt
	}
	now := e.clk.Now()
	assert.Equal(t, map[string]time.Time{ids["s-2"]: now.Add(60 * time.Second), ids["s-3"]: now.Add(30 * time.Second)}, visibleAt)

	e.clk.Advance(30 * time.Second)
	bodies, failed = e.poll("orders", fn)
	assert.Equal(t, []string{`{"id":"s-3","action":"retry"}`}, bodies)
	assert.Empty(t, failed)
	e.clk.Advance(30 * time.Second)
	bodies, failed = e.poll("orders", fn)
	assert.Equal(t, []string{`{"id":"s-2","action":"fail"}`}, bodies)
	assert.Empty(t, failed)
	assert.Empty(t, e.fake.Messages("orders"))
}

func TestMappingOnAFIFOQueueKeepsTheGroupsOrderAcrossAFailure(t *testing.T) {
	e := newMapping(t)
	url := e.fake.MustCreateQueue("orders.fifo", map[string]string{
		"FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "60",
	})
	for _, o := range []order{{"f-1", "ok"}, {"f-2", "fail"}, {"f-3", "ok"}, {"f-4", "ok"}} {
		body, err := json.Marshal(o)
		require.NoError(t, err)
		e.fake.MustSendMessage(&sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(string(body)), MessageGroupId: aws.String("customer-42")})
	}
	var rec recorder
	h, err := lambdasqspool.New(firstDeliveryFails(&rec), e.client, quiet)
	require.NoError(t, err)
	fn := lambda.NewHandler(h)

	bodies, failed := e.poll("orders.fifo", fn)
	require.Len(t, bodies, 4)
	assert.Len(t, failed, 3)
	assert.Equal(t, []string{"f-1", "f-2"}, rec.orders())
	// The group is locked while f-2..f-4 are in flight; they come back
	// together, in order, after the visibility timeout.
	bodies, _ = e.poll("orders.fifo", fn)
	assert.Empty(t, bodies)
	e.clk.Advance(60 * time.Second)
	bodies, failed = e.poll("orders.fifo", fn)
	assert.Len(t, bodies, 3)
	assert.Empty(t, failed)
	assert.Equal(t, []string{"f-1", "f-2", "f-2", "f-3", "f-4"}, rec.orders())
	assert.Empty(t, e.fake.Messages("orders.fifo"))
}
