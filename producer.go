package sqspool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/internal/sendbatch"
)

// ProducerClient is the part of *sqs.Client a Producer uses. *sqs.Client
// satisfies it; so does the in-memory fake in package sqsfake.
type ProducerClient interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

var _ ProducerClient = (*sqs.Client)(nil)

// Encoder turns a value into a message body: the inverse of a Decoder.
type Encoder[T any] func(v T) (string, error)

// EncodeJSON is the default encoder: the body is v as JSON, what DecodeJSON
// reads.
func EncodeJSON[T any](v T) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// encoderFor returns the encoder a producer of T uses when none is set, the
// mirror of decoderFor: the raw body for string and []byte, JSON otherwise.
func encoderFor[T any]() Encoder[T] {
	var zero T
	switch any(zero).(type) {
	case string:
		return func(v T) (string, error) { return any(v).(string), nil }
	case []byte:
		return func(v T) (string, error) { return string(any(v).([]byte)), nil }
	}
	return EncodeJSON[T]
}

// MaxMessageBytes is the SQS limit of one message, body and attributes
// together as SQS counts them.
const MaxMessageBytes = sendbatch.MaxBytes

// Defaults of a Producer.
const (
	// DefaultSendLinger is how long a partial batch waits for more
	// messages: what a lone Send may wait before its call starts.
	DefaultSendLinger = 5 * time.Millisecond
	// DefaultSendConcurrency is how many SendMessageBatch calls may run at
	// once; while they all run, new messages fill the next batches.
	DefaultSendConcurrency = 16
	// DefaultSendTimeout bounds each SendMessageBatch call, the SDK's
	// retries included.
	DefaultSendTimeout = 10 * time.Second
	// DefaultSendAttempts is how often a message is sent at most when SQS
	// fails its entry for a transient reason (its own fault, throttling).
	DefaultSendAttempts = 3
	// DefaultSendRetryDelay is the wait before the first such retry,
	// doubled for each further one.
	DefaultSendRetryDelay = 100 * time.Millisecond
)

// Errors of Send, for errors.Is.
var (
	// ErrProducerClosed: Close was called before the message was sent.
	ErrProducerClosed = errors.New("sqspool: producer is closed")
	// ErrMessageTooLarge: body and attributes exceed MaxMessageBytes. The
	// message was not sent.
	ErrMessageTooLarge = errors.New("sqspool: message too large")
	// ErrInvalidMessage: the message breaks an SQS rule that would make
	// SQS refuse it (characters, FIFO ids, attributes). It was not sent.
	ErrInvalidMessage = errors.New("sqspool: invalid message")
	// ErrUnconfirmed: SQS answered the call but listed the message neither
	// as stored nor as failed; it may or may not be stored.
	ErrUnconfirmed = errors.New("sqspool: SQS did not confirm the message; it may or may not be stored")
)

// SendError is a message SQS refused or failed to store, as it reported for
// the message's entry of a SendMessageBatch call. A failure of the whole
// call is an *APIError instead.
type SendError struct {
	// Code is SQS's error code, e.g. "InvalidParameterValue" or
	// "InternalError".
	Code    string
	Message string
	// SenderFault is SQS's verdict that the message itself is at fault:
	// sending it again fails again. Otherwise the producer already retried
	// it up to WithSendAttempts.
	SenderFault bool
	// Attempts is how many calls carried the message.
	Attempts int
}

func (e *SendError) Error() string {
	return fmt.Sprintf("sqspool: SQS did not store the message after %d attempt(s): %s (sender fault %t): %s", e.Attempts, e.Code, e.SenderFault, e.Message)
}

// ProducerOption configures a Producer. An option given an invalid value,
// or a typed option for another type than the Producer's, makes NewProducer
// return an error that names it.
type ProducerOption func(*producerConfig)

type producerConfig struct {
	errs        []error
	linger      time.Duration
	concurrency int
	timeout     time.Duration
	attempts    int
	retryDelay  time.Duration
	clock       clock.Clock
	encoder     any // Encoder[T]
	group       any // func(T) string
	dedup       any // func(T) string
	attributes  any // func(context.Context, T) map[string]types.MessageAttributeValue
	ctxAttrs    []func(context.Context, map[string]types.MessageAttributeValue)
	onQueued    func() // tests: a message joined a batch
}

func producerOption(ok bool, set func(*producerConfig), format string, args ...any) ProducerOption {
	return func(c *producerConfig) {
		if !ok {
			c.errs = append(c.errs, fmt.Errorf("sqspool: "+format, args...))
			return
		}
		set(c)
	}
}

// WithSendLinger sets how long a partial batch waits for more messages
// (default DefaultSendLinger, 5 ms). Zero sends a partial batch as soon as
// a call slot is free; batches still grow while all slots are busy.
func WithSendLinger(d time.Duration) ProducerOption {
	return producerOption(d >= 0, func(c *producerConfig) { c.linger = d }, "WithSendLinger(%v): want >= 0", d)
}

// WithSendConcurrency sets how many SendMessageBatch calls may run at once
// (default DefaultSendConcurrency, 16).
func WithSendConcurrency(n int) ProducerOption {
	return producerOption(n > 0, func(c *producerConfig) { c.concurrency = n }, "WithSendConcurrency(%d): want > 0", n)
}

// WithSendTimeout bounds each SendMessageBatch call (default
// DefaultSendTimeout, 10 s).
func WithSendTimeout(d time.Duration) ProducerOption {
	return producerOption(d > 0, func(c *producerConfig) { c.timeout = d }, "WithSendTimeout(%v): want > 0", d)
}

// WithSendAttempts sets how often a message is sent at most when SQS fails
// its entry for a transient reason (default DefaultSendAttempts, 3; 1: no
// retry). Retries go in a call of their own after DefaultSendRetryDelay,
// doubled each time. Whole-call failures are retried by the SDK's retryer.
func WithSendAttempts(n int) ProducerOption {
	return producerOption(n > 0, func(c *producerConfig) { c.attempts = n }, "WithSendAttempts(%d): want > 0", n)
}

// WithEncoder sets how values become bodies (default: the raw body for
// string and []byte, JSON otherwise — what a pool of the same T decodes
// without WithDecoder).
func WithEncoder[T any](e Encoder[T]) ProducerOption {
	return producerOption(e != nil, func(c *producerConfig) { c.encoder = e }, "WithEncoder: nil encoder")
}

// WithGroupID sets the MessageGroupId of each message from its value. A
// FIFO queue needs one on every message; on a standard queue it enables
// SQS's fair queues.
func WithGroupID[T any](f func(v T) string) ProducerOption {
	return producerOption(f != nil, func(c *producerConfig) { c.group = f }, "WithGroupID: nil func")
}

// WithDeduplicationID sets the MessageDeduplicationId of each message from
// its value (FIFO queues; without it the queue needs content-based
// deduplication). SQS drops a message whose id it saw in the last 5 minutes
// and still reports it as sent, with the first message's MessageId.
func WithDeduplicationID[T any](f func(v T) string) ProducerOption {
	return producerOption(f != nil, func(c *producerConfig) { c.dedup = f }, "WithDeduplicationID: nil func")
}

// WithMessageAttributes sets the message attributes of each message from
// the Send's context and the value. The returned map becomes the message's
// and must not be used by f afterwards.
func WithMessageAttributes[T any](f func(ctx context.Context, v T) map[string]types.MessageAttributeValue) ProducerOption {
	return producerOption(f != nil, func(c *producerConfig) { c.attributes = f }, "WithMessageAttributes: nil func")
}

// WithContextAttributes adds a hook that writes attributes drawn from the
// Send's context, after WithMessageAttributes: this is how trace context
// travels (otelsqspool.ProducerTracing injects the W3C traceparent that
// the consumer's span continues). Hooks run in the order given.
func WithContextAttributes(f func(ctx context.Context, attrs map[string]types.MessageAttributeValue)) ProducerOption {
	return producerOption(f != nil, func(c *producerConfig) { c.ctxAttrs = append(c.ctxAttrs, f) }, "WithContextAttributes: nil func")
}

// withProducerClock drives the linger and retry delays (tests).
func withProducerClock(clk clock.Clock) ProducerOption {
	return func(c *producerConfig) { c.clock = clk }
}

// withProducerQueuedHook runs f after each message joined a batch (tests).
func withProducerQueuedHook(f func()) ProducerOption {
	return func(c *producerConfig) { c.onQueued = f }
}

// typedOption returns the option's func as F, nil if unset, or an error if
// it was given for another type.
func typedOption[F any](name string, v any) (F, error) {
	var zero F
	if v == nil {
		return zero, nil
	}
	f, ok := v.(F)
	if !ok {
		return zero, fmt.Errorf("sqspool: %s: given %T, the producer needs %T", name, v, zero)
	}
	return f, nil
}

// Producer sends values of T to one SQS queue. Messages of concurrent Send
// calls share SendMessageBatch calls (up to ten entries and 1 MiB each; a
// partial batch waits at most the linger), so that a busy service pays for
// about one call per ten messages. It is safe for concurrent use. Create
// it with NewProducer and Close it when done.
type Producer[T any] struct {
	queueURL string
	fifo     bool
	sender   *sendbatch.Sender
	closed   atomic.Bool
	sent     atomic.Uint64
	failed   atomic.Uint64

	encode   Encoder[T]
	group    func(T) string
	dedup    func(T) string
	attrs    func(context.Context, T) map[string]types.MessageAttributeValue
	ctxAttrs []func(context.Context, map[string]types.MessageAttributeValue)
}

// NewProducer returns a Producer that sends to queueURL with client. A
// queue whose URL ends in ".fifo" is a FIFO queue: every message then
// needs a group id (WithGroupID). Invalid options are returned as an error.
func NewProducer[T any](client ProducerClient, queueURL string, opts ...ProducerOption) (*Producer[T], error) {
	if client == nil {
		return nil, errors.New("sqspool: NewProducer: nil client")
	}
	if queueURL == "" {
		return nil, errors.New("sqspool: NewProducer: empty queue URL")
	}
	c := producerConfig{
		linger:      DefaultSendLinger,
		concurrency: DefaultSendConcurrency,
		timeout:     DefaultSendTimeout,
		attempts:    DefaultSendAttempts,
		retryDelay:  DefaultSendRetryDelay,
		clock:       clock.Real,
	}
	for _, o := range opts {
		o(&c)
	}
	p := &Producer[T]{queueURL: queueURL, fifo: strings.HasSuffix(queueURL, ".fifo"), ctxAttrs: c.ctxAttrs}
	var errs [4]error
	p.encode, errs[0] = typedOption[Encoder[T]]("WithEncoder", c.encoder)
	p.group, errs[1] = typedOption[func(T) string]("WithGroupID", c.group)
	p.dedup, errs[2] = typedOption[func(T) string]("WithDeduplicationID", c.dedup)
	p.attrs, errs[3] = typedOption[func(context.Context, T) map[string]types.MessageAttributeValue]("WithMessageAttributes", c.attributes)
	if err := errors.Join(append(c.errs, errs[:]...)...); err != nil {
		return nil, err
	}
	if p.encode == nil {
		p.encode = encoderFor[T]()
	}
	if p.fifo && p.group == nil {
		return nil, fmt.Errorf("sqspool: NewProducer: %s is a FIFO queue: WithGroupID is required", queueURL)
	}
	p.sender = sendbatch.New(client, sendbatch.Options{
		QueueURL:    queueURL,
		Linger:      c.linger,
		MaxInFlight: c.concurrency,
		SendTimeout: c.timeout,
		Attempts:    c.attempts,
		RetryDelay:  c.retryDelay,
		Clock:       c.clock,
		OnQueued:    c.onQueued,
	})
	return p, nil
}

// Send sends v as one message and returns its SQS MessageId once SQS has
// stored it. It blocks until the batch carrying v is answered: at most the
// linger, a free call slot, and the call itself (WithSendTimeout), plus the
// retries of a transient entry failure.
//
// If ctx ends before a call carries the message, it is not sent and Send
// returns ctx's error (wrapped). Once a call carries it, SQS may store it,
// so Send waits for SQS's answer instead of returning early: an error then
// means the message was not stored, except for a whole-call timeout and
// ErrUnconfirmed, after which it may be (at-least-once: send again, with
// the same deduplication id on FIFO queues).
//
// Errors: ErrMessageTooLarge and ErrInvalidMessage (nothing sent), the
// encoder's error, *SendError (SQS refused or failed the message),
// *APIError (the SendMessageBatch call failed as a whole), ErrUnconfirmed,
// ErrProducerClosed.
func (p *Producer[T]) Send(ctx context.Context, v T) (string, error) {
	if p.closed.Load() {
		return "", ErrProducerClosed
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("sqspool: Send: not sent: %w", context.Cause(ctx))
	}
	m, err := p.message(ctx, v)
	if err != nil {
		return "", err
	}
	res := p.sender.Send(ctx, m, time.Time{})
	if res.Err != nil {
		p.failed.Add(1)
		return "", p.sendError(ctx, res)
	}
	p.sent.Add(1)
	return res.MessageID, nil
}

// message builds and checks the message of v.
func (p *Producer[T]) message(ctx context.Context, v T) (*sendbatch.Message, error) {
	body, err := p.encode(v)
	if err != nil {
		return nil, fmt.Errorf("sqspool: Send: encode: %w", err)
	}
	if body == "" {
		return nil, fmt.Errorf("%w: empty body (SQS needs at least one character)", ErrInvalidMessage)
	}
	if i := sendbatch.FirstInvalidChar(body); i >= 0 {
		return nil, fmt.Errorf("%w: body holds a character SQS does not accept at byte %d (SQS takes XML 1.0 characters in UTF-8; encode binary data, e.g. as base64)", ErrInvalidMessage, i)
	}
	m := &sendbatch.Message{}
	m.Entry.MessageBody = &body
	if err := p.setFIFO(&m.Entry, v); err != nil {
		return nil, err
	}
	attrSize, err := p.setAttributes(ctx, &m.Entry, v)
	if err != nil {
		return nil, err
	}
	m.Size = len(body) + attrSize
	if m.Size > MaxMessageBytes {
		return nil, fmt.Errorf("%w: body (%d bytes) and attributes (%d bytes) exceed the SQS limit of %d bytes", ErrMessageTooLarge, len(body), attrSize, MaxMessageBytes)
	}
	return m, nil
}

func (p *Producer[T]) setFIFO(e *types.SendMessageBatchRequestEntry, v T) error {
	var group, dedup string
	if p.group != nil {
		group = p.group(v)
	}
	if p.dedup != nil {
		dedup = p.dedup(v)
	}
	if p.fifo && group == "" {
		return fmt.Errorf("%w: a FIFO queue needs a message group id", ErrInvalidMessage)
	}
	for _, f := range []struct{ what, id string }{{"message group id", group}, {"deduplication id", dedup}} {
		if f.id == "" {
			continue
		}
		if err := sendbatch.CheckFIFOID(f.what, f.id); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidMessage, err)
		}
	}
	if group != "" {
		e.MessageGroupId = aws.String(group)
	}
	if dedup != "" {
		e.MessageDeduplicationId = aws.String(dedup)
	}
	return nil
}

// setAttributes sets and checks the message attributes and returns their
// size as SQS counts it: name, data type and value.
func (p *Producer[T]) setAttributes(ctx context.Context, e *types.SendMessageBatchRequestEntry, v T) (int, error) {
	var attrs map[string]types.MessageAttributeValue
	if p.attrs != nil {
		attrs = p.attrs(ctx, v)
	}
	if len(p.ctxAttrs) > 0 {
		if attrs == nil {
			attrs = make(map[string]types.MessageAttributeValue, 2)
		}
		for _, f := range p.ctxAttrs {
			f(ctx, attrs)
		}
	}
	if len(attrs) == 0 {
		return 0, nil
	}
	if len(attrs) > maxMessageAttributes {
		return 0, fmt.Errorf("%w: %d message attributes, SQS takes at most %d", ErrInvalidMessage, len(attrs), maxMessageAttributes)
	}
	size := 0
	for name, a := range attrs {
		if err := sendbatch.CheckAttributeName(name); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrInvalidMessage, err)
		}
		dt := aws.ToString(a.DataType)
		if dt == "" {
			return 0, fmt.Errorf("%w: attribute %q has no DataType", ErrInvalidMessage, name)
		}
		if a.StringValue != nil && sendbatch.FirstInvalidChar(*a.StringValue) >= 0 {
			return 0, fmt.Errorf("%w: attribute %q holds a character SQS does not accept", ErrInvalidMessage, name)
		}
		size += len(name) + len(dt) + len(aws.ToString(a.StringValue)) + len(a.BinaryValue)
	}
	e.MessageAttributes = attrs
	return size, nil
}

// maxMessageAttributes is the SQS limit of message attributes per message.
const maxMessageAttributes = 10

// sendError maps what the sender said about a message to Send's error.
func (p *Producer[T]) sendError(ctx context.Context, res sendbatch.Result) error {
	var entryErr *sendbatch.EntryError
	var callErr *sendbatch.CallError
	switch {
	case errors.Is(res.Err, sendbatch.ErrCancelled):
		return fmt.Errorf("sqspool: Send: not sent: %w", context.Cause(ctx))
	case errors.Is(res.Err, sendbatch.ErrClosed):
		return ErrProducerClosed
	case errors.Is(res.Err, sendbatch.ErrUnreported):
		return ErrUnconfirmed
	case errors.As(res.Err, &entryErr):
		return &SendError{Code: entryErr.Code, Message: entryErr.Message, SenderFault: entryErr.SenderFault, Attempts: res.Attempts}
	case errors.As(res.Err, &callErr):
		return &APIError{API: "SendMessageBatch", Err: callErr.Err}
	default:
		return fmt.Errorf("sqspool: Send: %w", res.Err)
	}
}

// ProducerStats are a Producer's counters since NewProducer. They only grow.
type ProducerStats struct {
	// Sent counts messages SQS stored; Failed the Sends that returned an
	// error after their message was encoded and checked.
	Sent, Failed uint64
	// Calls counts SendMessageBatch calls, Entries the entries they
	// carried, Retries the entries sent again after a transient failure.
	Calls, Entries, Retries uint64
}

// CallsPer1000 returns the SendMessageBatch calls made per 1,000 entries:
// 100 is the floor (ten entries per call).
func (s ProducerStats) CallsPer1000() float64 {
	if s.Entries == 0 {
		return 0
	}
	return float64(s.Calls) * 1000 / float64(s.Entries)
}

// Stats returns the counters since NewProducer.
func (p *Producer[T]) Stats() ProducerStats {
	st := p.sender.Stats()
	return ProducerStats{Sent: p.sent.Load(), Failed: p.failed.Load(), Calls: st.Calls, Entries: st.Entries, Retries: st.Retries}
}

// Close stops taking messages (Send returns ErrProducerClosed), sends what
// is pending and waits until every Send in progress has its answer. If ctx
// ends first, the calls still running are cancelled, the messages not yet
// sent get ErrProducerClosed, and Close returns ctx's error. No goroutine of
// the producer is left after Close returns. Close may be called more than
// once.
func (p *Producer[T]) Close(ctx context.Context) error {
	p.closed.Store(true)
	if err := p.sender.Close(ctx); err != nil {
		return fmt.Errorf("sqspool: Producer.Close: %w", err)
	}
	return nil
}
