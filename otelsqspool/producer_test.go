package otelsqspool_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/otelsqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

// TestProducerTracingContinuesInTheConsumer sends a message from inside a
// span through a Producer with ProducerTracing and checks that the
// consumer's span is that span's child, in the same trace.
func TestProducerTracingContinuesInTheConsumer(t *testing.T) {
	h := newHarness(t)
	f := sqsfake.New()
	url := f.MustCreateQueue("jobs", nil)
	p, err := sqspool.NewProducer[job](f, url, otelsqspool.ProducerTracing(otelsqspool.WithPropagator(propagation.TraceContext{})))
	require.NoError(t, err)
	ctx, span := h.tp.Tracer("test").Start(context.Background(), "publish", trace.WithSpanKind(trace.SpanKindProducer))
	_, err = p.Send(ctx, job{Name: "traced"})
	require.NoError(t, err)
	span.End()
	require.NoError(t, p.Close(context.Background()))

	handled := make(chan trace.SpanContext, 1)
	pool, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: f, Queue: url},
		func(ctx context.Context, _ *job) error {
			handled <- trace.SpanContextFromContext(ctx)
			return nil
		},
		sqspool.WithObserver(h.obs), sqspool.WithLogger(quiet))
	require.NoError(t, err)
	consumer := <-handled
	require.NoError(t, pool.Shutdown(context.Background()))
	require.NoError(t, pool.Wait())

	assert.Equal(t, span.SpanContext().TraceID(), consumer.TraceID(), "one trace")
	spans := h.ended(t, 2)
	var process []string
	for _, s := range spans {
		if s.SpanContext().SpanID() == consumer.SpanID() {
			process = append(process, s.Parent().SpanID().String())
		}
	}
	assert.Equal(t, []string{span.SpanContext().SpanID().String()}, process, "the consumer span's parent is the producer's span")
}
