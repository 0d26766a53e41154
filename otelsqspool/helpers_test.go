package otelsqspool_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/otelsqspool"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Trace contexts of a producer: W3C (the traceparent spec's example) and
// X-Ray (the X-Ray docs' example).
const (
	traceparent    = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tpTraceID      = "4bf92f3577b34da6a3ce929d0e0e4736"
	tpSpanID       = "00f067aa0ba902b7"
	xrayHeader     = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
	xrayTraceID    = "5759e988bd862e3fe1be46a994272793"
	xraySpanID     = "53995c3f42cd8ad8"
	queueURL       = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
	queueName      = "orders"
	wantSpanName   = "orders process"
	attrDestName   = "messaging.destination.name"
	attrErrorType  = "error.type"
	attrOpName     = "messaging.operation.name"
	attrSystemName = "messaging.system"
)

// harness is an observer on SDK providers that record everything.
type harness struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	obs    sqspool.Observer
}

func newHarness(t testing.TB) *harness {
	h := &harness{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	t.Cleanup(func() {
		require.NoError(t, h.tp.Shutdown(context.Background()))
		require.NoError(t, mp.Shutdown(context.Background()))
	})
	h.obs = otelsqspool.New(otelsqspool.WithTracerProvider(h.tp), otelsqspool.WithMeterProvider(mp),
		otelsqspool.WithPropagator(propagation.TraceContext{}))
	return h
}

// ended returns the ended spans, requiring n of them.
func (h *harness) ended(t *testing.T, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	spans := h.spans.Ended()
	require.Len(t, spans, n)
	return spans
}

func (h *harness) collect(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, h.reader.Collect(context.Background(), &rm))
	return rm
}

// lookup finds a metric by name.
func lookup(rm metricdata.ResourceMetrics, name string) (metricdata.Metrics, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

// has reports whether a metric has been recorded at all.
func has(rm metricdata.ResourceMetrics, name string) bool {
	_, ok := lookup(rm, name)
	return ok
}

// findMetric finds a metric by name, failing the test if there is none.
func findMetric(t *testing.T, rm metricdata.ResourceMetrics, name string) metricdata.Metrics {
	t.Helper()
	m, ok := lookup(rm, name)
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	return m
}

// matches reports whether set holds every attribute of want.
func matches(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// sum adds up the points of a counter or up-down counter whose attributes
// hold want.
func sum(t *testing.T, rm metricdata.ResourceMetrics, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	data, ok := findMetric(t, rm, name).Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is not an int64 sum", name)
	var n int64
	for _, p := range data.DataPoints {
		if matches(p.Attributes, want) {
			n += p.Value
		}
	}
	return n
}

// hist adds up the counts and sums of a histogram's points whose attributes
// hold want.
func hist[N int64 | float64](t *testing.T, rm metricdata.ResourceMetrics, name string, want ...attribute.KeyValue) (count uint64, total N) {
	t.Helper()
	data, ok := findMetric(t, rm, name).Data.(metricdata.Histogram[N])
	require.True(t, ok, "%s is not a histogram of %T", name, total)
	for _, p := range data.DataPoints {
		if matches(p.Attributes, want) {
			count += p.Count
			total += p.Sum
		}
	}
	return count, total
}

// message builds a delivery of the orders queue.
func message(id string) *sqspool.Message {
	return &sqspool.Message{ID: id, Body: `{"id":1}`, QueueURL: queueURL, ReceiveCount: 1}
}

func withTraceparent(m *sqspool.Message, tp string) *sqspool.Message {
	if m.MessageAttributes == nil {
		m.MessageAttributes = map[string]types.MessageAttributeValue{}
	}
	s, dt := tp, "String"
	m.MessageAttributes["traceparent"] = types.MessageAttributeValue{DataType: &dt, StringValue: &s}
	return m
}

func withTraceHeader(m *sqspool.Message, h string) *sqspool.Message {
	if m.Attributes == nil {
		m.Attributes = map[string]string{}
	}
	m.Attributes["AWSTraceHeader"] = h
	return m
}

func mustTraceID(t *testing.T, s string) trace.TraceID {
	t.Helper()
	id, err := trace.TraceIDFromHex(s)
	require.NoError(t, err)
	return id
}

func mustSpanID(t *testing.T, s string) trace.SpanID {
	t.Helper()
	id, err := trace.SpanIDFromHex(s)
	require.NoError(t, err)
	return id
}

// attrs turns a span's attributes into a map.
func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}
