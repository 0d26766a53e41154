package otelsqspool_test

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/otelsqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

// A pool reporting to OpenTelemetry. A service would usually install its
// providers and propagator globally (otel.SetTracerProvider,
// otel.SetMeterProvider, otel.SetTextMapPropagator) and call New with no
// options; here they are passed in, and a span recorder and a manual
// reader stand in for the exporters.
func Example() {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer func() { _ = tp.Shutdown(ctx) }()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(ctx) }()

	// A message sent under a producer's trace, with the traceparent
	// attribute that package catcher sets from the W3C header.
	fake := sqsfake.New()
	url := fake.MustCreateQueue("orders", nil)
	fake.MustSendMessage(&sqs.SendMessageInput{
		QueueUrl: &url, MessageBody: str(`{"id":"o-1"}`),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"traceparent": {DataType: str("String"), StringValue: str("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
		},
	})

	type Order struct{ ID string }
	handled := make(chan string, 1)
	pool, err := sqspool.StartPool(ctx, &sqspool.Consumer{Client: fake, Queue: url},
		func(ctx context.Context, o *Order) error {
			// Spans started from ctx are children of the message's span.
			handled <- trace.SpanContextFromContext(ctx).TraceID().String()
			return nil
		},
		sqspool.WithObserver(otelsqspool.New(
			otelsqspool.WithTracerProvider(tp),
			otelsqspool.WithMeterProvider(mp),
			otelsqspool.WithPropagator(propagation.TraceContext{}),
		)),
		sqspool.WithLogger(quiet))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("handler's trace:", <-handled)
	if err := pool.Shutdown(ctx); err != nil {
		fmt.Println(err)
		return
	}

	s := spans.Ended()[0]
	fmt.Println("span:", s.Name(), s.SpanKind(), "parent", s.Parent().SpanID())
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "sqspool.messages.deleted" {
			fmt.Println(m.Name, sum.DataPoints[0].Value)
		}
	}
	// Output:
	// handler's trace: 4bf92f3577b34da6a3ce929d0e0e4736
	// span: orders process consumer parent 00f067aa0ba902b7
	// sqspool.messages.deleted 1
}

// A producer that sends with the SDK directly puts its trace context in the
// message attributes with Carrier, so that the consumer's span continues
// its trace.
func ExampleCarrier() {
	// The producer's current span; in a real service, the one in ctx.
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)

	attrs := map[string]types.MessageAttributeValue{}
	propagation.TraceContext{}.Inject(ctx, otelsqspool.Carrier(attrs))
	in := &sqs.SendMessageInput{MessageBody: str("hello"), MessageAttributes: attrs}
	fmt.Println(*in.MessageAttributes["traceparent"].DataType, *in.MessageAttributes["traceparent"].StringValue)
	// Output:
	// String 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
}
