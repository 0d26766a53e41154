package sqspool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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

// BodyEncoder is implemented by a message type that encodes its own body,
// the mirror of BodyDecoder. When T or *T implements it, a Producer of T
// sends EncodeBody's result as the body instead of JSON (or the raw value,
// for string and []byte). The encoder is the type's, so it cannot be one
// for another type: a mismatch does not compile. A type that has both
// should make DecodeBody read what EncodeBody writes; `var _
// sqspool.BodyEncoder = Order{}` makes the compiler check the signature.
type BodyEncoder interface {
	EncodeBody() (string, error)
}

// encoder turns a value into a message body. It takes v by value: a
// pointer would move every string Send's v to the heap.
type encoder[T any] func(v T) (string, error)

// encoderFor returns the encoder of a producer of T, the mirror of
// decodeDefault: T's own EncodeBody if T or *T is a BodyEncoder, else the
// raw body for string and []byte, JSON for everything else. It is chosen
// once, so that Send does not test T's type per message.
func encoderFor[T any]() encoder[T] {
	var zero T
	if _, ok := any(zero).(BodyEncoder); ok {
		return func(v T) (string, error) { return any(v).(BodyEncoder).EncodeBody() }
	}
	if _, ok := any(&zero).(BodyEncoder); ok {
		return func(v T) (string, error) { return any(&v).(BodyEncoder).EncodeBody() }
	}
	switch any(zero).(type) {
	case string:
		return func(v T) (string, error) { return any(v).(string), nil }
	case []byte:
		return func(v T) (string, error) { return string(any(v).([]byte)), nil }
	}
	return func(v T) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	}
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
	// DefaultSendRetryDelay is the longest wait before the first such
	// retry, doubled for each further one; each wait is at random between
	// half and all of it, so that senders failed together spread out.
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

// ProducerOption configures a Producer. An option given an invalid value
// makes NewProducer return an error that names it. What depends on the
// message type is not an option: the body encoding is T's (BodyEncoder),
// and FIFO ids and attributes go with each Send (SendOption), so that no
// option can be given for another type than the Producer's.
type ProducerOption func(*producerConfig)

type producerConfig struct {
	errs        []error
	linger      time.Duration
	concurrency int
	timeout     time.Duration
	attempts    int
	retryDelay  time.Duration
	clock       clock.Clock
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
// doubled each time, with jitter. Whole-call failures are retried by the SDK's retryer.
func WithSendAttempts(n int) ProducerOption {
	return producerOption(n > 0, func(c *producerConfig) { c.attempts = n }, "WithSendAttempts(%d): want > 0", n)
}

// WithContextAttributes adds a hook that writes attributes drawn from the
// Send's context, after those of the Send's Attributes options, into a map
// of the message's own (the caller's map is not written): this is how
// trace context travels (otelsqspool.ProducerTracing injects the W3C
// traceparent that the consumer's span continues). Hooks run in the order
// given.
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

// SendOption sets what one message carries besides its body: its FIFO
// ids and its attributes. It belongs to a Send, not to the message type,
// so it cannot be given for another type than the Producer's and works for
// string and []byte messages too. Options are plain values: passing them
// does not allocate.
type SendOption struct {
	group, dedup string
	attrs        map[string]types.MessageAttributeValue
}

// GroupID sets the message's MessageGroupId. A FIFO queue needs one on
// every message (messages of one group are delivered in order); on a
// standard queue it enables SQS's fair queues.
func GroupID(id string) SendOption { return SendOption{group: id} }

// DeduplicationID sets the message's MessageDeduplicationId (FIFO queues;
// without it the queue needs content-based deduplication). SQS drops a
// message whose id it saw in the last 5 minutes and still reports it as
// sent, with the first message's MessageId: send again after an
// uncertain outcome with the same id.
func DeduplicationID(id string) SendOption { return SendOption{dedup: id} }

// Attributes adds message attributes. Send reads attrs only until it
// returns and never writes it, so one map may serve concurrent Sends; the
// hooks of WithContextAttributes write into a copy.
func Attributes(attrs map[string]types.MessageAttributeValue) SendOption {
	return SendOption{attrs: attrs}
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

	encode   encoder[T]
	ctxAttrs []func(context.Context, map[string]types.MessageAttributeValue)
}

// NewProducer returns a Producer that sends to queueURL with client. A
// queue whose URL ends in ".fifo" is a FIFO queue: every Send then needs
// a GroupID. Invalid options are returned as an error.
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
	if err := errors.Join(c.errs...); err != nil {
		return nil, err
	}
	p := &Producer[T]{queueURL: queueURL, fifo: strings.HasSuffix(queueURL, ".fifo"), encode: encoderFor[T](), ctxAttrs: c.ctxAttrs}
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

// Send sends v as one message, with the FIFO ids and attributes of opts
// (GroupID, DeduplicationID, Attributes; when one is given twice the later
// id wins and the attributes are merged), and returns its SQS MessageId once SQS has
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
// error of EncodeBody or of JSON encoding (nothing sent), *SendError (SQS
// refused or failed the message), *APIError (the SendMessageBatch call
// failed as a whole), ErrUnconfirmed, ErrProducerClosed.
func (p *Producer[T]) Send(ctx context.Context, v T, opts ...SendOption) (string, error) {
	if p.closed.Load() {
		return "", ErrProducerClosed
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("sqspool: Send: not sent: %w", context.Cause(ctx))
	}
	m, err := p.message(ctx, v, opts)
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
func (p *Producer[T]) message(ctx context.Context, v T, opts []SendOption) (*sendbatch.Message, error) {
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
	if err := p.setFIFO(&m.Entry, opts); err != nil {
		return nil, err
	}
	attrSize, err := p.setAttributes(ctx, &m.Entry, opts)
	if err != nil {
		return nil, err
	}
	m.Size = len(body) + attrSize
	if m.Size > MaxMessageBytes {
		return nil, fmt.Errorf("%w: body (%d bytes) and attributes (%d bytes) exceed the SQS limit of %d bytes", ErrMessageTooLarge, len(body), attrSize, MaxMessageBytes)
	}
	return m, nil
}

func (p *Producer[T]) setFIFO(e *types.SendMessageBatchRequestEntry, opts []SendOption) error {
	var group, dedup string
	for _, o := range opts {
		if o.group != "" {
			group = o.group
		}
		if o.dedup != "" {
			dedup = o.dedup
		}
	}
	if p.fifo && group == "" {
		return fmt.Errorf("%w: a FIFO queue needs a message group id (GroupID)", ErrInvalidMessage)
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
func (p *Producer[T]) setAttributes(ctx context.Context, e *types.SendMessageBatchRequestEntry, opts []SendOption) (int, error) {
	attrs := mergeAttributes(opts, len(p.ctxAttrs) > 0)
	for _, f := range p.ctxAttrs {
		f(ctx, attrs)
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

// mergeAttributes returns the attributes of opts: the caller's map itself
// if it is the only one and nothing is to be written into it, else a map of
// the message's own (always one if writable).
func mergeAttributes(opts []SendOption, writable bool) map[string]types.MessageAttributeValue {
	var only map[string]types.MessageAttributeValue
	n, given := 0, 0
	for _, o := range opts {
		if o.attrs != nil {
			only = o.attrs
			n += len(o.attrs)
			given++
		}
	}
	if given <= 1 && !writable {
		return only
	}
	// Room for two more: what trace hooks add (traceparent, baggage).
	attrs := make(map[string]types.MessageAttributeValue, n+2)
	for _, o := range opts {
		maps.Copy(attrs, o.attrs)
	}
	return attrs
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
