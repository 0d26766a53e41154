package main

import (
	"context"
	"github.com/sqspool/sqspool/lambdasqspool"
	"os"
	"testing"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The function as the Lambda runtime invokes it, with a recorded event of
// two records: one whose producer sent W3C trace context in a traceparent
// message attribute, one that carries only the AWSTraceHeader that SQS set.
// Each record's span continues its producer's trace.
func TestFunctionContinuesEachRecordsTrace(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer func() { require.NoError(t, tp.Shutdown(context.Background())) }()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})

	event, err := os.ReadFile("../../lambdasqspool/testdata/standard-traced.json")
	require.NoError(t, err)
	h, err := lambdasqspool.New(handleJob, nil, options()...)
	require.NoError(t, err)
	out, err := lambda.NewHandler(h).Invoke(context.Background(), event)
	require.NoError(t, err)
	assert.JSONEq(t, `{"batchItemFailures":[]}`, string(out))

	// Records run concurrently: their spans end in any order.
	parents := map[string]string{} // trace id -> parent span id
	ended := spans.Ended()
	require.Len(t, ended, 2)
	for _, s := range ended {
		assert.Equal(t, "orders process", s.Name())
		assert.True(t, s.Parent().IsRemote())
		parents[s.SpanContext().TraceID().String()] = s.Parent().SpanID().String()
	}
	assert.Equal(t, map[string]string{
		"4bf92f3577b34da6a3ce929d0e0e4736": "00f067aa0ba902b7", // traceparent
		"692c0b38fedcba9876543210fedcba98": "7654321076543210", // AWSTraceHeader
	}, parents)
	for _, s := range ended {
		assert.Equal(t, codes.Unset, s.Status().Code)
	}
}
