package otelsqspool_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/otelsqspool"
)

// run passes m through the observer as the pool does: Start, a handler
// returning err, done.
func run(h *harness, m *sqspool.Message, err error) context.Context {
	ctx, done := h.obs.Start(context.Background(), m)
	done(err)
	return ctx
}

func TestSpanContinuesTraceparent(t *testing.T) {
	h := newHarness(t)
	hctx := run(h, withTraceparent(message("m-1"), traceparent), nil)
	s := h.ended(t, 1)[0]

	assert.Equal(t, wantSpanName, s.Name())
	assert.Equal(t, trace.SpanKindConsumer, s.SpanKind())
	assert.Equal(t, mustTraceID(t, tpTraceID), s.SpanContext().TraceID(), "same trace as the producer")
	assert.Equal(t, mustSpanID(t, tpSpanID), s.Parent().SpanID(), "the producer's span is the parent")
	assert.True(t, s.Parent().IsRemote())
	assert.Equal(t, s.SpanContext(), trace.SpanContextFromContext(hctx), "the handler's context carries the span")
	assert.Equal(t, codes.Unset, s.Status().Code)

	a := attrs(s)
	assert.Equal(t, "aws_sqs", a["messaging.system"].AsString())
	assert.Equal(t, queueName, a["messaging.destination.name"].AsString())
	assert.Equal(t, "m-1", a["messaging.message.id"].AsString())
	assert.Equal(t, "process", a["messaging.operation.type"].AsString())
	assert.Equal(t, "process", a["messaging.operation.name"].AsString())
	assert.Equal(t, queueURL, a["aws.sqs.queue.url"].AsString())
	assert.Equal(t, int64(len(`{"id":1}`)), a["messaging.message.body.size"].AsInt64())
}

func TestSpanContinuesAWSTraceHeader(t *testing.T) {
	h := newHarness(t)
	run(h, withTraceHeader(message("m-1"), xrayHeader), nil)
	s := h.ended(t, 1)[0]
	assert.Equal(t, mustTraceID(t, xrayTraceID), s.SpanContext().TraceID())
	assert.Equal(t, mustSpanID(t, xraySpanID), s.Parent().SpanID())
	assert.True(t, s.Parent().IsRemote())
	assert.True(t, s.Parent().IsSampled())
	assert.Equal(t, "m-1", attrs(s)["messaging.message.id"].AsString())
}

func TestAWSTraceHeaderNotSampled(t *testing.T) {
	h := newHarness(t)
	notSampled := "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
	hctx := run(h, withTraceHeader(message("m-1"), notSampled), nil)
	assert.Empty(t, h.spans.Ended(), "a parent-based sampler follows the producer's decision")
	sc := trace.SpanContextFromContext(hctx)
	assert.Equal(t, mustTraceID(t, xrayTraceID), sc.TraceID(), "the trace id still reaches the handler")
	assert.False(t, sc.IsSampled())
}

func TestTraceparentWinsOverAWSTraceHeader(t *testing.T) {
	h := newHarness(t)
	run(h, withTraceHeader(withTraceparent(message("m-1"), traceparent), xrayHeader), nil)
	s := h.ended(t, 1)[0]
	assert.Equal(t, mustTraceID(t, tpTraceID), s.SpanContext().TraceID())
	assert.Equal(t, mustSpanID(t, tpSpanID), s.Parent().SpanID())
}

func TestMalformedContextFallsBack(t *testing.T) {
	h := newHarness(t)
	// A broken traceparent falls back to the X-Ray header; a broken X-Ray
	// header starts a new trace.
	run(h, withTraceHeader(withTraceparent(message("m-1"), "00-zz-00f067aa0ba902b7-01"), xrayHeader), nil)
	run(h, withTraceHeader(message("m-2"), "Root=1-5759e988-bd862e3f;Parent=53995c3f42cd8ad8;Sampled=1"), nil)
	spans := h.ended(t, 2)
	assert.Equal(t, mustTraceID(t, xrayTraceID), spans[0].SpanContext().TraceID())
	assert.False(t, spans[1].Parent().IsValid())
}

func TestNoProducerContextStartsNewTrace(t *testing.T) {
	h := newHarness(t)
	// StartPool's context, which handlers inherit, may carry a span of the
	// application's; messages must not become its children.
	appCtx, app := h.tp.Tracer("app").Start(context.Background(), "main")
	ctx, done := h.obs.Start(appCtx, message("m-1"))
	done(nil)
	app.End()
	s := h.ended(t, 2)[0]
	assert.False(t, s.Parent().IsValid(), "a root span")
	assert.NotEqual(t, app.SpanContext().TraceID(), s.SpanContext().TraceID())
	assert.Equal(t, s.SpanContext(), trace.SpanContextFromContext(ctx))
}

func TestHandlerErrorMarksSpan(t *testing.T) {
	h := newHarness(t)
	err := fmt.Errorf("charge card: %w", &smithy.GenericAPIError{Code: "ConditionalCheckFailedException", Message: "taken"})
	run(h, message("m-1"), err)
	run(h, message("m-2"), &sqspool.PanicError{Value: "nil map"})
	spans := h.ended(t, 2)

	s := spans[0]
	assert.Equal(t, codes.Error, s.Status().Code)
	assert.Equal(t, err.Error(), s.Status().Description)
	require.Len(t, s.Events(), 1)
	assert.Equal(t, "exception", s.Events()[0].Name)
	assert.Equal(t, "ConditionalCheckFailedException", attrs(s)[attrErrorType].AsString(), "an AWS error is typed by its code")

	assert.Equal(t, codes.Error, spans[1].Status().Code)
	assert.Equal(t, "*sqspool.PanicError", attrs(spans[1])[attrErrorType].AsString())
}

func TestMessageMetrics(t *testing.T) {
	h := newHarness(t)
	for i := range 3 {
		h.obs.Received(message(fmt.Sprint("m-", i)))
	}
	ctx, done := h.obs.Start(context.Background(), message("m-0"))
	rm := h.collect(t)
	assert.Equal(t, int64(1), sum(t, rm, otelsqspool.MetricInflight), "one handler running")
	done(nil)
	run(h, message("m-1"), nil)
	run(h, message("m-2"), errors.New("downstream down"))
	_ = ctx

	older := message("m-0")
	older.ReceivedAt = time.Now().Add(-2 * time.Second)
	h.obs.Deleted(older)
	h.obs.Deleted(message("m-1")) // no ReceivedAt: counted, not timed

	rm = h.collect(t)
	dest := attribute.String(attrDestName, queueName)
	system := attribute.String(attrSystemName, "aws_sqs")
	assert.Equal(t, int64(3), sum(t, rm, otelsqspool.MetricConsumedMessages, dest, system, attribute.String(attrOpName, "ReceiveMessage")))
	assert.Equal(t, int64(2), sum(t, rm, otelsqspool.MetricProcessed, dest))
	assert.Equal(t, int64(1), sum(t, rm, otelsqspool.MetricFailed, dest, attribute.String(attrErrorType, "*errors.errorString")))
	assert.Equal(t, int64(0), sum(t, rm, otelsqspool.MetricInflight, dest), "none running")
	assert.Equal(t, int64(2), sum(t, rm, otelsqspool.MetricDeleted, dest))

	n, _ := hist[float64](t, rm, otelsqspool.MetricProcessDuration, dest, attribute.String(attrOpName, "process"))
	assert.Equal(t, uint64(3), n)
	n, _ = hist[float64](t, rm, otelsqspool.MetricProcessDuration, attribute.String(attrErrorType, "*errors.errorString"))
	assert.Equal(t, uint64(1), n, "the failure carries error.type")
	n, total := hist[float64](t, rm, otelsqspool.MetricReceiveToDelete, dest)
	assert.Equal(t, uint64(1), n)
	assert.GreaterOrEqual(t, total, 2.0)
}

func TestCallMetrics(t *testing.T) {
	h := newHarness(t)
	throttled := &sqspool.APIError{API: "ChangeMessageVisibilityBatch", Err: &smithy.GenericAPIError{Code: "ThrottlingException"}}
	h.obs.Call("ReceiveMessage", 10, 5*time.Millisecond, nil)
	h.obs.Call("ReceiveMessage", 0, 20*time.Second, nil)
	h.obs.Call("DeleteMessageBatch", 10, 4*time.Millisecond, nil)
	h.obs.Call("DeleteMessageBatch", 3, 4*time.Millisecond, nil)
	h.obs.Call("ChangeMessageVisibilityBatch", 2, time.Millisecond, throttled)
	h.obs.Call("PurgeQueue", 0, time.Millisecond, context.DeadlineExceeded) // not one the pool makes

	rm := h.collect(t)
	api := func(name string) attribute.KeyValue { return otelsqspool.AttributeAPI.String(name) }
	assert.Equal(t, int64(2), sum(t, rm, otelsqspool.MetricCalls, api("ReceiveMessage")))
	assert.Equal(t, int64(2), sum(t, rm, otelsqspool.MetricCalls, api("DeleteMessageBatch")))
	assert.Equal(t, int64(6), sum(t, rm, otelsqspool.MetricCalls))
	assert.Equal(t, int64(1), sum(t, rm, otelsqspool.MetricErrors, api("ChangeMessageVisibilityBatch"),
		attribute.String(attrErrorType, "ThrottlingException")))
	assert.Equal(t, int64(1), sum(t, rm, otelsqspool.MetricErrors, api("PurgeQueue"),
		attribute.String(attrErrorType, "context.DeadlineExceeded")))

	n, total := hist[int64](t, rm, otelsqspool.MetricDeleteBatchSize, api("DeleteMessageBatch"))
	assert.Equal(t, uint64(2), n)
	assert.Equal(t, int64(13), total)
	n, secs := hist[float64](t, rm, otelsqspool.MetricOperationDuration,
		attribute.String(attrOpName, "ReceiveMessage"), attribute.String("messaging.operation.type", "receive"))
	assert.Equal(t, uint64(2), n)
	assert.InDelta(t, 20.005, secs, 1e-9)
	n, _ = hist[float64](t, rm, otelsqspool.MetricOperationDuration, attribute.String("messaging.operation.type", "settle"))
	assert.Equal(t, uint64(3), n, "deletes and visibility changes settle messages")
}

func TestQueuesAreToldApart(t *testing.T) {
	h := newHarness(t)
	other := message("m-2")
	other.QueueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/refunds.fifo"
	for _, m := range []*sqspool.Message{message("m-1"), other, message("m-3")} {
		h.obs.Received(m)
		run(h, m, nil)
	}
	spans := h.ended(t, 3)
	assert.Equal(t, []string{wantSpanName, "refunds.fifo process", wantSpanName},
		[]string{spans[0].Name(), spans[1].Name(), spans[2].Name()})
	rm := h.collect(t)
	assert.Equal(t, int64(2), sum(t, rm, otelsqspool.MetricConsumedMessages, attribute.String(attrDestName, queueName)))
	assert.Equal(t, int64(1), sum(t, rm, otelsqspool.MetricProcessed, attribute.String(attrDestName, "refunds.fifo")))
}

func TestDefaultsAreTheGlobals(t *testing.T) {
	// No provider is installed in this test binary: the observer must work
	// and record nothing. (Installing one here would change the benchmark.)
	obs := otelsqspool.New()
	m := withTraceparent(message("m-1"), traceparent)
	obs.Received(m)
	ctx, done := obs.Start(context.Background(), m)
	assert.False(t, trace.SpanFromContext(ctx).IsRecording())
	done(errors.New("boom"))
	obs.Deleted(m)
	obs.Call("ReceiveMessage", 1, time.Millisecond, nil)
}

func TestCarrier(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: mustTraceID(t, tpTraceID), SpanID: mustSpanID(t, tpSpanID), TraceFlags: trace.FlagsSampled,
	})
	attrs := map[string]types.MessageAttributeValue{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), otelsqspool.Carrier(attrs))
	require.Contains(t, attrs, "traceparent")
	assert.Equal(t, "String", *attrs["traceparent"].DataType)
	assert.Equal(t, traceparent, *attrs["traceparent"].StringValue)
	assert.Equal(t, []string{"traceparent"}, otelsqspool.Carrier(attrs).Keys())

	num, n := "Number", "42"
	attrs["count"] = types.MessageAttributeValue{DataType: &num, StringValue: &n}
	attrs["blob"] = types.MessageAttributeValue{DataType: str("Binary"), BinaryValue: []byte{1}}
	assert.Equal(t, "42", otelsqspool.Carrier(attrs).Get("count"))
	assert.Empty(t, otelsqspool.Carrier(attrs).Get("blob"))
	assert.Empty(t, otelsqspool.Carrier(attrs).Get("missing"))
}

func str(s string) *string { return &s }

func TestBaggageWithoutTraceparent(t *testing.T) {
	sr := newHarness(t)
	obs := otelsqspool.New(otelsqspool.WithTracerProvider(sr.tp),
		otelsqspool.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})))
	m := withTraceHeader(message("m-1"), xrayHeader)
	tenant, dt := "tenant=acme", "String"
	m.MessageAttributes = map[string]types.MessageAttributeValue{"baggage": {DataType: &dt, StringValue: &tenant}}
	ctx, done := obs.Start(context.Background(), m)
	done(nil)
	assert.Equal(t, "acme", baggage.FromContext(ctx).Member("tenant").Value(), "baggage reaches the handler")
	assert.Equal(t, mustTraceID(t, xrayTraceID), sr.ended(t, 1)[0].SpanContext().TraceID(), "the X-Ray parent still applies")
}
