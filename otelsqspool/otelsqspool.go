package otelsqspool

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sqspool/sqspool"
)

// ScopeName is the instrumentation scope of the meter and tracer.
const ScopeName = "github.com/sqspool/sqspool/otelsqspool"

// Names of the metrics New records. The messaging.* names and their
// attributes follow the OpenTelemetry messaging semantic conventions; the
// sqspool.* ones cover what those conventions do not.
const (
	MetricConsumedMessages  = "messaging.client.consumed.messages"  // counter: deliveries received
	MetricProcessDuration   = "messaging.process.duration"          // histogram, s: handler run time
	MetricOperationDuration = "messaging.client.operation.duration" // histogram, s: SQS call latency
	MetricProcessed         = "sqspool.messages.processed"          // counter: handler returned nil
	MetricFailed            = "sqspool.messages.failed"             // counter: handler failed or panicked
	MetricDeleted           = "sqspool.messages.deleted"            // counter: deletes SQS confirmed
	MetricInflight          = "sqspool.inflight"                    // up-down counter: handlers running
	MetricCalls             = "sqspool.sqs.calls"                   // counter: SQS requests
	MetricErrors            = "sqspool.sqs.errors"                  // counter: failed SQS requests
	MetricDeleteBatchSize   = "sqspool.delete.batch.size"           // histogram: entries per DeleteMessageBatch
	MetricReceiveToDelete   = "sqspool.receive_to_delete.duration"  // histogram, s: receive to confirmed delete
)

// AttributeAPI is the attribute that names the SQS API on sqspool.sqs.calls,
// sqspool.sqs.errors and sqspool.delete.batch.size.
const AttributeAPI = attribute.Key("aws.sqs.api")

// traceHeader is the SQS system attribute that carries an X-Ray trace
// header, used as the parent when no traceparent is present.
const traceHeader = "AWSTraceHeader"

// Option configures New.
type Option func(*config)

type config struct {
	meters  metric.MeterProvider
	tracers trace.TracerProvider
	prop    propagation.TextMapPropagator
}

// WithMeterProvider sets the meter provider (default: otel.GetMeterProvider(),
// the global one, which records nothing until the application sets one).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.meters = mp }
}

// WithTracerProvider sets the tracer provider (default:
// otel.GetTracerProvider(), the global one).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tracers = tp }
}

// WithPropagator sets the propagator that reads the producer's trace context
// from the message attributes (default: otel.GetTextMapPropagator(), the
// global one, which reads nothing until the application sets one, usually
// propagation.TraceContext{} with propagation.Baggage{}).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.prop = p }
}

// Histogram bounds, in seconds: the conventions' advice for messaging
// durations, and a longer tail for the time a message spends with us.
var (
	durationBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	lifetimeBounds = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
	batchBounds    = []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
)

// observer implements sqspool.Observer with OpenTelemetry.
type observer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator

	consumed      metric.Int64Counter
	processDur    metric.Float64Histogram
	operationDur  metric.Float64Histogram
	processed     metric.Int64Counter
	failed        metric.Int64Counter
	deleted       metric.Int64Counter
	inflight      metric.Int64UpDownCounter
	calls         metric.Int64Counter
	callErrors    metric.Int64Counter
	deleteBatch   metric.Int64Histogram
	receiveDelete metric.Float64Histogram

	last   atomic.Pointer[queue] // the queue seen last: one pool, one queue
	queues sync.Map              // queue URL -> *queue
	apis   map[string]*api       // the APIs sqspool calls; read only
}

// New returns an sqspool.Observer that records metrics and a consumer span
// per handled message; pass it to sqspool.WithObserver. One observer may
// serve several pools.
func New(opts ...Option) sqspool.Observer {
	cfg := config{}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.meters == nil {
		cfg.meters = otel.GetMeterProvider()
	}
	if cfg.tracers == nil {
		cfg.tracers = otel.GetTracerProvider()
	}
	if cfg.prop == nil {
		cfg.prop = otel.GetTextMapPropagator()
	}
	meter := cfg.meters.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))
	o := &observer{
		tracer: cfg.tracers.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		prop:   cfg.prop,
		apis:   make(map[string]*api),
	}
	var errs []error
	o.consumed = counter(meter, &errs, MetricConsumedMessages, "{message}",
		"Messages delivered to the application, redeliveries and duplicates included.")
	o.processDur = histogram(meter, &errs, MetricProcessDuration, "s",
		"Duration of the handler's run on a message.", durationBounds)
	o.operationDur = histogram(meter, &errs, MetricOperationDuration, "s",
		"Duration of an SQS request made by the pool.", durationBounds)
	o.processed = counter(meter, &errs, MetricProcessed, "{message}", "Messages whose handler returned nil.")
	o.failed = counter(meter, &errs, MetricFailed, "{message}", "Messages whose handler returned an error or panicked.")
	o.deleted = counter(meter, &errs, MetricDeleted, "{message}", "Messages whose deletion SQS confirmed.")
	inflight, err := meter.Int64UpDownCounter(MetricInflight, metric.WithUnit("{message}"),
		metric.WithDescription("Handlers running now."))
	o.inflight = usable(inflight, err, &errs, metric.Int64UpDownCounter(noop.Int64UpDownCounter{}))
	o.calls = counter(meter, &errs, MetricCalls, "{request}", "SQS requests made by the pool, by API: what SQS bills.")
	o.callErrors = counter(meter, &errs, MetricErrors, "{request}", "SQS requests that failed as a whole, by API and error type.")
	batch, err := meter.Int64Histogram(MetricDeleteBatchSize, metric.WithUnit("{message}"),
		metric.WithDescription("Entries per DeleteMessageBatch request (10 is a full batch)."),
		metric.WithExplicitBucketBoundaries(batchBounds...))
	o.deleteBatch = usable(batch, err, &errs, metric.Int64Histogram(noop.Int64Histogram{}))
	o.receiveDelete = histogram(meter, &errs, MetricReceiveToDelete, "s",
		"Time from a message's receive (Message.ReceivedAt) to SQS confirming its delete.", lifetimeBounds)
	if len(errs) > 0 {
		otel.Handle(errors.Join(errs...))
	}
	for _, name := range []string{"ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch", "GetQueueUrl", "GetQueueAttributes"} {
		o.apis[name] = newAPI(name)
	}
	return o
}

func counter(m metric.Meter, errs *[]error, name, unit, desc string) metric.Int64Counter {
	c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	return usable(c, err, errs, metric.Int64Counter(noop.Int64Counter{}))
}

func histogram(m metric.Meter, errs *[]error, name, unit, desc string, bounds []float64) metric.Float64Histogram {
	h, err := m.Float64Histogram(name, metric.WithUnit(unit), metric.WithDescription(desc),
		metric.WithExplicitBucketBoundaries(bounds...))
	return usable(h, err, errs, metric.Float64Histogram(noop.Float64Histogram{}))
}

// usable keeps an instrument the provider returned, noting its error: the
// API asks providers to return a working instrument even then. A provider
// that returned none gets a no-op in its place.
func usable[I any](inst I, err error, errs *[]error, fallback I) I {
	if err != nil {
		*errs = append(*errs, err)
	}
	if any(inst) == nil {
		return fallback
	}
	return inst
}

var (
	systemSQS   = semconv.MessagingSystemAWSSQS
	opProcess   = semconv.MessagingOperationName("process")
	typeProcess = semconv.MessagingOperationTypeProcess
)

// queue holds what is computed once per queue: names, attribute sets and the
// option slices passed on every message, so that the hot path allocates
// nothing for them.
type queue struct {
	url      string
	spanName string
	kvs      []attribute.KeyValue // messaging.system, messaging.destination.name

	msgAdd      []metric.AddOption    // attrs
	msgRecord   []metric.RecordOption // attrs
	consumedAdd []metric.AddOption    // attrs + the receive operation
	processRec  []metric.RecordOption // attrs + the process operation
	processKVs  []attribute.KeyValue  // the same, to add error.type to

	childOpts []trace.SpanStartOption // the span's kind and attributes
	rootOpts  []trace.SpanStartOption // the same, as a new trace
}

func newQueue(url string) *queue {
	name := queueName(url)
	dest := semconv.MessagingDestinationName(name)
	q := &queue{url: url, spanName: name + " process", kvs: []attribute.KeyValue{systemSQS, dest}}
	set := attribute.NewSet(q.kvs...)
	q.msgAdd = []metric.AddOption{metric.WithAttributeSet(set)}
	q.msgRecord = []metric.RecordOption{metric.WithAttributeSet(set)}
	consumed := attribute.NewSet(systemSQS, dest, semconv.MessagingOperationName("ReceiveMessage"), semconv.MessagingOperationTypeReceive)
	q.consumedAdd = []metric.AddOption{metric.WithAttributeSet(consumed)}
	q.processKVs = []attribute.KeyValue{systemSQS, dest, opProcess, typeProcess}
	q.processRec = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(q.processKVs...))}
	span := []attribute.KeyValue{systemSQS, dest, opProcess, typeProcess, semconv.AWSSQSQueueURL(url)}
	q.childOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(span...)}
	q.rootOpts = append(q.childOpts[:len(q.childOpts):len(q.childOpts)], trace.WithNewRoot())
	return q
}

// queueName is the last path segment of a queue URL.
func queueName(url string) string {
	return url[strings.LastIndexByte(url, '/')+1:]
}

func (o *observer) queue(url string) *queue {
	if q := o.last.Load(); q != nil && q.url == url {
		return q
	}
	v, ok := o.queues.Load(url)
	if !ok {
		v, _ = o.queues.LoadOrStore(url, newQueue(url))
	}
	q := v.(*queue)
	o.last.Store(q)
	return q
}

// api holds the attribute sets of one SQS API.
type api struct {
	kvs    []attribute.KeyValue // messaging.system, aws.sqs.api, messaging.operation.*
	add    []metric.AddOption
	record []metric.RecordOption
}

func newAPI(name string) *api {
	kvs := []attribute.KeyValue{systemSQS, AttributeAPI.String(name), semconv.MessagingOperationName(name)}
	switch name {
	case "ReceiveMessage":
		kvs = append(kvs, semconv.MessagingOperationTypeReceive)
	case "DeleteMessageBatch", "ChangeMessageVisibilityBatch":
		kvs = append(kvs, semconv.MessagingOperationTypeSettle)
	}
	set := attribute.NewSet(kvs...)
	return &api{kvs: kvs, add: []metric.AddOption{metric.WithAttributeSet(set)}, record: []metric.RecordOption{metric.WithAttributeSet(set)}}
}

// Received counts a delivery.
func (o *observer) Received(m *sqspool.Message) {
	o.consumed.Add(context.Background(), 1, o.queue(m.QueueURL).consumedAdd...)
}

// Start starts the message's consumer span, a child of the producer's span
// when the message carries its context, and returns the handler's context
// with the span in it.
func (o *observer) Start(ctx context.Context, m *sqspool.Message) (context.Context, func(error)) {
	q := o.queue(m.QueueURL)
	opts := q.rootOpts
	if pctx, ok := o.parent(ctx, m); ok {
		ctx, opts = pctx, q.childOpts
	}
	ctx, span := o.tracer.Start(ctx, q.spanName, opts...)
	if span.IsRecording() {
		span.SetAttributes(semconv.MessagingMessageID(m.ID), semconv.MessagingMessageBodySize(len(m.Body)))
	}
	o.inflight.Add(ctx, 1, q.msgAdd...)
	began := time.Now()
	return ctx, func(err error) {
		elapsed := time.Since(began).Seconds()
		o.inflight.Add(ctx, -1, q.msgAdd...)
		if err == nil {
			o.processDur.Record(ctx, elapsed, q.processRec...)
			o.processed.Add(ctx, 1, q.msgAdd...)
			span.End()
			return
		}
		et := semconv.ErrorTypeKey.String(errorType(err))
		o.processDur.Record(ctx, elapsed, withError(q.processKVs, et))
		o.failed.Add(ctx, 1, withError(q.kvs, et))
		span.SetAttributes(et)
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.End()
	}
}

// parent returns ctx with the producer's span context as the remote parent:
// from the message attributes through the propagator (traceparent), or else
// from the AWSTraceHeader system attribute. ok is false when the message
// carries neither.
func (o *observer) parent(ctx context.Context, m *sqspool.Message) (context.Context, bool) {
	if len(m.MessageAttributes) > 0 {
		before := trace.SpanContextFromContext(ctx)
		ctx = o.prop.Extract(ctx, Carrier(m.MessageAttributes)) // baggage too, if the propagator reads it
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && !sc.Equal(before) {
			return ctx, true
		}
	}
	if h, ok := m.Attributes[traceHeader]; ok {
		if sc, ok := parseTraceHeader(h); ok {
			return trace.ContextWithRemoteSpanContext(ctx, sc), true
		}
	}
	return ctx, false
}

// Deleted counts a confirmed delete and how long the message was with us.
func (o *observer) Deleted(m *sqspool.Message) {
	q := o.queue(m.QueueURL)
	ctx := context.Background()
	o.deleted.Add(ctx, 1, q.msgAdd...)
	if !m.ReceivedAt.IsZero() {
		o.receiveDelete.Record(ctx, time.Since(m.ReceivedAt).Seconds(), q.msgRecord...)
	}
}

// Call counts an SQS request and records its latency.
func (o *observer) Call(name string, entries int, latency time.Duration, err error) {
	a := o.apis[name]
	if a == nil {
		a = newAPI(name) // an API this version does not know of: rare
	}
	ctx := context.Background()
	o.calls.Add(ctx, 1, a.add...)
	if name == "DeleteMessageBatch" {
		o.deleteBatch.Record(ctx, int64(entries), a.record...)
	}
	if err == nil {
		o.operationDur.Record(ctx, latency.Seconds(), a.record...)
		return
	}
	with := withError(a.kvs, semconv.ErrorTypeKey.String(errorType(err)))
	o.operationDur.Record(ctx, latency.Seconds(), with)
	o.callErrors.Add(ctx, 1, with)
}

// withError is the attributes kvs with error.type et. Failures are rare
// enough to build it each time.
func withError(kvs []attribute.KeyValue, et attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributes(append(append(make([]attribute.KeyValue, 0, len(kvs)+1), kvs...), et)...)
}

// errorType is the error.type of err: the AWS error code for an AWS API
// error (ThrottlingException, AWS.SimpleQueueService.NonExistentQueue, ...),
// the context error's name, or else the error's Go type.
func errorType(err error) string {
	var ae smithy.APIError
	switch {
	case errors.As(err, &ae) && ae.ErrorCode() != "":
		return ae.ErrorCode()
	case errors.Is(err, context.DeadlineExceeded):
		return "context.DeadlineExceeded"
	case errors.Is(err, context.Canceled):
		return "context.Canceled"
	}
	return semconv.ErrorType(err).Value.AsString()
}

// ProducerTracing returns the sqspool.ProducerOption that injects the trace
// context of each Send's ctx into its message's attributes (traceparent,
// and baggage if the propagator writes it), so that the consumer span New's
// observer starts continues the producer's trace:
//
//	p, err := sqspool.NewProducer[Order](client, queueURL, otelsqspool.ProducerTracing())
//
// Only WithPropagator applies (default: otel.GetTextMapPropagator(), read at
// each Send, so that one set after this call is used). Mind SQS's limit of
// 10 message attributes per message.
func ProducerTracing(opts ...Option) sqspool.ProducerOption {
	cfg := config{}
	for _, o := range opts {
		o(&cfg)
	}
	return sqspool.WithContextAttributes(func(ctx context.Context, attrs map[string]types.MessageAttributeValue) {
		prop := cfg.prop
		if prop == nil {
			prop = otel.GetTextMapPropagator()
		}
		prop.Inject(ctx, Carrier(attrs))
	})
}

// Carrier adapts SQS message attributes to a propagation.TextMapCarrier.
// Get reads String attributes; Set writes String attributes, so that a
// producer can inject its trace context into the attributes of a message
// it sends:
//
//	attrs := map[string]types.MessageAttributeValue{}
//	otel.GetTextMapPropagator().Inject(ctx, otelsqspool.Carrier(attrs))
//	in := &sqs.SendMessageInput{QueueUrl: &url, MessageBody: &body, MessageAttributes: attrs}
//
// Mind SQS's limit of 10 message attributes per message.
type Carrier map[string]types.MessageAttributeValue

var _ propagation.TextMapCarrier = Carrier(nil)

// Get returns the String value of the attribute key, or "".
func (c Carrier) Get(key string) string {
	v, ok := c[key]
	if !ok || v.StringValue == nil {
		return ""
	}
	return *v.StringValue
}

// Set sets key to a String attribute.
func (c Carrier) Set(key, value string) {
	c[key] = types.MessageAttributeValue{DataType: stringType(), StringValue: &value}
}

func stringType() *string {
	s := "String"
	return &s
}

// Keys returns the attribute names.
func (c Carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// parseTraceHeader reads an X-Ray trace header, as SQS gives it in the
// AWSTraceHeader system attribute:
//
//	Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1
//
// The trace id is the root's two hex parts joined (X-Ray ids are valid W3C
// trace ids), the span id is Parent, and the span context is sampled only
// with Sampled=1 (0, ? and a missing flag are not). Other fields (Self,
// Lineage) are ignored. ok is false without a valid Root and Parent.
func parseTraceHeader(h string) (sc trace.SpanContext, ok bool) {
	var cfg trace.SpanContextConfig
	var root, parent bool
	for h != "" {
		var field string
		field, h, _ = strings.Cut(h, ";")
		k, v, _ := strings.Cut(strings.TrimSpace(field), "=")
		switch k {
		case "Root":
			// 1-<8 hex: epoch seconds>-<24 hex>
			if len(v) != 35 || v[:2] != "1-" || v[10] != '-' {
				return sc, false
			}
			root = decodeHex(cfg.TraceID[:4], v[2:10]) && decodeHex(cfg.TraceID[4:], v[11:])
		case "Parent":
			parent = decodeHex(cfg.SpanID[:], v)
		case "Sampled":
			if v == "1" {
				cfg.TraceFlags = trace.FlagsSampled
			}
		}
	}
	if !root || !parent {
		return sc, false
	}
	cfg.Remote = true
	sc = trace.NewSpanContext(cfg)
	return sc, sc.IsValid()
}

// decodeHex decodes s, exactly 2*len(dst) hex digits, into dst.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := fromHex(s[2*i])
		lo, ok2 := fromHex(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
