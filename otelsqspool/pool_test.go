package otelsqspool_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/otelsqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

type job struct {
	Name string `json:"name"`
}

// TestPool runs a pool against sqsfake with the observer: one message from
// a W3C-traced producer, one from an X-Ray-traced one, one untraced that
// fails. It checks the spans the handlers ran under and what the metrics
// say once the pool has stopped.
func TestPool(t *testing.T) {
	h := newHarness(t)
	f := sqsfake.New()
	url := f.MustCreateQueue("jobs", map[string]string{"VisibilityTimeout": "30"})
	w3c := f.MustSendMessage(&sqs.SendMessageInput{
		QueueUrl: &url, MessageBody: str(`{"name":"w3c"}`),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"traceparent": {DataType: str("String"), StringValue: str(traceparent)},
		},
	})
	xray := f.MustSendMessage(&sqs.SendMessageInput{
		QueueUrl: &url, MessageBody: str(`{"name":"xray"}`),
		MessageSystemAttributes: map[string]types.MessageSystemAttributeValue{
			"AWSTraceHeader": {DataType: str("String"), StringValue: str(xrayHeader)},
		},
	})
	fail := f.MustSendMessage(&sqs.SendMessageInput{QueueUrl: &url, MessageBody: str(`{"name":"fail"}`)})

	var mu sync.Mutex
	seen := map[string]trace.SpanContext{} // message id -> the handler's span
	handled := make(chan struct{}, 3)
	pool, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: f, Queue: url},
		func(ctx context.Context, j *job) error {
			m, _ := sqspool.MessageFrom(ctx)
			mu.Lock()
			seen[m.ID] = trace.SpanContextFromContext(ctx)
			mu.Unlock()
			handled <- struct{}{}
			if j.Name == "fail" {
				return errors.New("refused")
			}
			return nil
		},
		sqspool.WithObserver(h.obs), sqspool.WithRetryBackoff(nil), sqspool.WithLogger(quiet))
	require.NoError(t, err)
	for range 3 {
		<-handled
	}
	// Shutdown returns once every handler's done has run and the deletes
	// are flushed: everything below has been observed.
	require.NoError(t, pool.Shutdown(context.Background()))
	require.NoError(t, pool.Wait())

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range h.ended(t, 3) {
		assert.Equal(t, "jobs process", s.Name())
		assert.Equal(t, trace.SpanKindConsumer, s.SpanKind())
		spans[attrs(s)["messaging.message.id"].AsString()] = s
	}
	require.Len(t, spans, 3)
	for id, s := range spans {
		assert.Equal(t, s.SpanContext(), seen[id], "message %s: the handler ran under its span", id)
	}
	assert.Equal(t, tpSpanID, spans[*w3c.MessageId].Parent().SpanID().String())
	assert.Equal(t, tpTraceID, spans[*w3c.MessageId].SpanContext().TraceID().String())
	assert.Equal(t, xraySpanID, spans[*xray.MessageId].Parent().SpanID().String())
	assert.Equal(t, xrayTraceID, spans[*xray.MessageId].SpanContext().TraceID().String())
	failed := spans[*fail.MessageId]
	assert.False(t, failed.Parent().IsValid(), "an untraced message starts a trace")
	assert.Equal(t, codes.Error, failed.Status().Code)
	assert.Equal(t, "refused", failed.Status().Description)

	rm := h.collect(t)
	dest := attribute.String(attrDestName, "jobs")
	assert.Equal(t, int64(3), sum(t, rm, otelsqspool.MetricConsumedMessages, dest))
	assert.Equal(t, int64(2), sum(t, rm, otelsqspool.MetricProcessed, dest))
	assert.Equal(t, int64(1), sum(t, rm, otelsqspool.MetricFailed, dest))
	assert.Equal(t, int64(2), sum(t, rm, otelsqspool.MetricDeleted, dest))
	assert.Equal(t, int64(0), sum(t, rm, otelsqspool.MetricInflight, dest))
	n, _ := hist[float64](t, rm, otelsqspool.MetricProcessDuration, dest)
	assert.Equal(t, uint64(3), n)
	n, _ = hist[float64](t, rm, otelsqspool.MetricReceiveToDelete, dest)
	assert.Equal(t, uint64(2), n)

	// The observer saw the pool's deletes as its own stats counted them,
	// and its receives (the long polls cancelled by the stop are not
	// reported).
	st := pool.Stats()
	assert.Equal(t, st.Calls["DeleteMessageBatch"], sum(t, rm, otelsqspool.MetricCalls, otelsqspool.AttributeAPI.String("DeleteMessageBatch")))
	receives := sum(t, rm, otelsqspool.MetricCalls, otelsqspool.AttributeAPI.String("ReceiveMessage"))
	assert.Positive(t, receives)
	assert.LessOrEqual(t, receives, st.Calls["ReceiveMessage"])
	deleteCalls := st.Calls["DeleteMessageBatch"]
	require.Positive(t, deleteCalls)
	n, entries := hist[int64](t, rm, otelsqspool.MetricDeleteBatchSize)
	assert.Equal(t, uint64(deleteCalls), n)
	assert.Equal(t, int64(2), entries, "two deletes")
	assert.False(t, has(rm, otelsqspool.MetricErrors), "no failed request")
}
