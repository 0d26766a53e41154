// Package otelsqspool reports an sqspool pool's work to OpenTelemetry:
// metrics for every delivery, handler run, delete and SQS request, and a
// consumer span per handled message that continues the producer's trace.
//
//	pool, err := sqspool.StartPool(ctx, consumer, handler,
//		sqspool.WithObserver(otelsqspool.New()))
//
// New uses the global providers and propagator unless told otherwise
// (WithMeterProvider, WithTracerProvider, WithPropagator). Until the
// application installs real ones, the globals are no-ops and the observer
// costs a few small allocations per message (BenchmarkObserverNoProvider
// measures it).
//
// # Traces
//
// Each handled message gets a span named "<queue name> process", of kind
// consumer, from just before the handler runs until it returns. The
// handler's context carries it, so the spans the handler starts (HTTP
// calls, database writes) are its children. Attributes: messaging.system
// "aws_sqs", messaging.destination.name (the queue name),
// messaging.operation.type and messaging.operation.name "process",
// aws.sqs.queue.url, messaging.message.id and messaging.message.body.size.
// A handler that fails (an error or a panic) ends its span with status
// Error, the error recorded as an event and error.type set.
//
// The span's parent is the producer's span, read from the message:
//
//  1. the message attributes, through the propagator: with
//     propagation.TraceContext, the "traceparent" String attribute that
//     package catcher copies from the request's W3C header, or that a
//     producer injects with Carrier;
//  2. otherwise the AWSTraceHeader system attribute that SQS fills in for
//     producers traced by AWS X-Ray (Lambda, API Gateway, the X-Ray SDKs):
//     "Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=1" gives the trace id
//     (the two hex parts joined), the parent span id, and the sampled flag
//     (only Sampled=1 counts as sampled).
//
// A message with neither starts a new trace, even when StartPool's context
// carried a span. Set the global propagator (or pass WithPropagator) for
// step 1: the default global propagator reads nothing.
//
// # Metrics
//
// All carry messaging.system "aws_sqs". Per message they also carry
// messaging.destination.name; per SQS request, aws.sqs.api and
// messaging.operation.name (the API, e.g. "DeleteMessageBatch"). Failures
// add error.type: the AWS error code for AWS errors, else the Go type.
//
//	messaging.client.consumed.messages   counter     deliveries received (duplicates included)
//	messaging.process.duration           histogram s handler run time
//	messaging.client.operation.duration  histogram s SQS request latency
//	sqspool.messages.processed           counter     handlers that returned nil
//	sqspool.messages.failed              counter     handlers that failed or panicked
//	sqspool.messages.deleted             counter     deletes SQS confirmed
//	sqspool.inflight                     up-down     handlers running now
//	sqspool.sqs.calls                    counter     SQS requests, by API: the bill
//	sqspool.sqs.errors                   counter     SQS requests that failed as a whole
//	sqspool.delete.batch.size            histogram   entries per DeleteMessageBatch (10 is full)
//	sqspool.receive_to_delete.duration   histogram s Message.ReceivedAt to confirmed delete
//
// sqspool.sqs.calls per 1000 consumed messages is the cost figure: 200 is
// the floor (one receive and one delete per ten messages). The request
// metrics carry no queue name, because the pool reports its calls without
// one: in a process that consumes several queues they add up.
//
// Durations are measured on the wall clock; receive_to_delete starts from
// Message.ReceivedAt, which is on the pool's clock (the same, except in
// sqspool's own tests, which drive the pool from a manual clock).
package otelsqspool
