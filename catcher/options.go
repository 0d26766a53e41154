package catcher

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/internal/sendbatch"
)

// SQS limits the handler is built around.
const (
	// MaxMessageBytes is the SQS limit for one message, body and attributes
	// together, and for the payload of one SendMessageBatch call.
	MaxMessageBytes = sendbatch.MaxBytes
	// maxBatchEntries is the SQS limit of entries per SendMessageBatch call.
	maxBatchEntries = sendbatch.MaxEntries
	// maxAttributes is the SQS limit of message attributes per message.
	maxAttributes = 10
)

// Defaults of the options.
const (
	DefaultMaxBodyBytes = 256 << 10
	DefaultLinger       = 5 * time.Millisecond
	DefaultMaxInFlight  = 16
	DefaultSendTimeout  = 10 * time.Second
	DefaultRetryAfter   = time.Second
	// DefaultMaxWaiting is how many messages may wait for a free
	// SendMessageBatch call: with the default 16 calls of 10 entries, a
	// few rounds of calls.
	DefaultMaxWaiting = 1000
	// DefaultMaxBodyMemory bounds the request bodies held at once.
	DefaultMaxBodyMemory = 64 << 20
	// DefaultMaxAttributeBytes caps a header-derived attribute value: a
	// traceparent is 55 bytes, a request id rarely more than 64.
	DefaultMaxAttributeBytes = 256
)

// Header names used by default.
const (
	HeaderMessageGroupID  = "X-Message-Group-Id"
	HeaderDeduplicationID = "X-Deduplication-Id"
	HeaderTraceparent     = "Traceparent"
	HeaderRequestID       = "X-Request-Id"
	attributeTraceparent  = "traceparent"
	attributeRequestID    = "x-request-id"
)

// Option configures a Handler. An option given an invalid value makes New
// return an error that names it.
type Option func(*config)

// FIFOFunc derives the FIFO message group id and deduplication id of a
// request. An empty string leaves the field unset. An error rejects the
// request: 400 if it wraps ErrBadRequest, 422 otherwise. Like ValidateFunc,
// it must neither keep nor change body.
type FIFOFunc func(r *http.Request, body []byte) (groupID, dedupID string, err error)

// ValidateFunc checks a request body before it is enqueued. An error rejects
// the request with its message: 400 if it wraps ErrBadRequest, 422 otherwise.
// It runs on the request's goroutine and must neither keep nor change body:
// the message shares its bytes.
type ValidateFunc func(body []byte, r *http.Request) error

type headerAttribute struct {
	header    string // canonical header key
	attribute string // message attribute name
}

// DedupNamespaceFunc returns the namespace of a request's deduplication id,
// typically its tenant, so that equal ids of different tenants never
// deduplicate each other. An error rejects the request: 400 if it wraps
// ErrBadRequest, 422 otherwise.
type DedupNamespaceFunc func(r *http.Request) (string, error)

type config struct {
	errs        []error // invalid options, reported by New
	maxBody     int64
	linger      time.Duration
	maxInFlight int
	sendTimeout time.Duration
	retryAfter  time.Duration
	clock       clock.Clock
	json        bool
	validate    ValidateFunc
	attributes  []headerAttribute
	fifo        FIFOFunc
	logger      *slog.Logger
	maxWaiting  int
	maxMemory   int64
	maxAttr     int
	namespace   DedupNamespaceFunc
}

// invalid records a bad option value for New to report.
func (c *config) invalid(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("catcher: "+format, args...))
}

func (c *config) err() error { return errors.Join(c.errs...) }

// option returns an Option that applies set when ok, and otherwise records
// the option as invalid with the message format and args.
func option(ok bool, set func(*config), format string, args ...any) Option {
	return func(c *config) {
		if !ok {
			c.invalid(format, args...)
			return
		}
		set(c)
	}
}

func defaultConfig() config {
	return config{
		maxBody:     DefaultMaxBodyBytes,
		linger:      DefaultLinger,
		maxInFlight: DefaultMaxInFlight,
		sendTimeout: DefaultSendTimeout,
		retryAfter:  DefaultRetryAfter,
		clock:       clock.Real,
		maxWaiting:  DefaultMaxWaiting,
		maxMemory:   DefaultMaxBodyMemory,
		maxAttr:     DefaultMaxAttributeBytes,
		attributes: []headerAttribute{
			{header: HeaderTraceparent, attribute: attributeTraceparent},
			{header: HeaderRequestID, attribute: attributeRequestID},
		},
	}
}

// WithMaxBodyBytes sets the largest body accepted, 1 to MaxMessageBytes
// (default DefaultMaxBodyBytes, 256 KiB). Larger bodies get 413; the handler
// stops reading at the limit.
func WithMaxBodyBytes(n int64) Option {
	return option(n > 0 && n <= MaxMessageBytes, func(c *config) { c.maxBody = n }, "WithMaxBodyBytes(%d): want 1..%d", n, MaxMessageBytes)
}

// WithLinger sets how long the first request of a partial batch waits for
// others (default DefaultLinger, 5 ms). Zero sends a partial batch as soon as
// a call slot is free, which still batches under load. The linger is added to
// the latency of a request at low load only.
func WithLinger(d time.Duration) Option {
	return option(d >= 0, func(c *config) { c.linger = d }, "WithLinger(%v): negative", d)
}

// WithMaxInFlight bounds the SendMessageBatch calls running at once (default
// DefaultMaxInFlight, 16).
func WithMaxInFlight(n int) Option {
	return option(n > 0, func(c *config) { c.maxInFlight = n }, "WithMaxInFlight(%d): want > 0", n)
}

// WithSendTimeout bounds one SendMessageBatch call, SDK retries included
// (default DefaultSendTimeout, 10 s). A call that times out answers its
// requests with 503. A message is sent only while the whole send timeout
// still fits before the server's WriteTimeout ends (Serve refuses a
// WriteTimeout shorter than it).
func WithSendTimeout(d time.Duration) Option {
	return option(d > 0, func(c *config) { c.sendTimeout = d }, "WithSendTimeout(%v): want > 0", d)
}

// WithRetryAfter sets the Retry-After of 503 answers (default
// DefaultRetryAfter, 1 s; rounded up to whole seconds).
func WithRetryAfter(d time.Duration) Option {
	return option(d > 0, func(c *config) { c.retryAfter = d }, "WithRetryAfter(%v): want > 0", d)
}

func init() { clock.Register(withClock) }

// withClock sets the clock that drives the linger (default clock.Real).
// Tests use a clock.Manual.
// Not part of the API (the repo's tests reach it with clock.Option; a
// user's tests get fake time from testing/synctest).
func withClock(c clock.Clock) Option {
	return option(c != nil, func(cfg *config) { cfg.clock = c }, "nil clock")
}

// WithJSON rejects bodies that are not well-formed JSON with 400.
func WithJSON() Option { return func(c *config) { c.json = true } }

// WithValidate sets a validator that runs on every body that passed the
// other checks (after the JSON check of WithJSON). See ValidateFunc.
func WithValidate(fn ValidateFunc) Option {
	return option(fn != nil, func(c *config) { c.validate = fn }, "WithValidate(nil)")
}

// WithHeaderAttributes replaces the mapping from request headers to String
// message attributes (header name -> attribute name). The default maps
// traceparent to "traceparent" and X-Request-Id to "x-request-id", so that a
// W3C trace crosses the queue. An absent or empty header adds no attribute.
// An empty map turns the mapping off. Attribute names must follow the SQS
// rules (letters, digits, '_', '-', '.'; not starting with "AWS." or
// "Amazon."), and there can be at most 10.
func WithHeaderAttributes(headerToAttribute map[string]string) Option {
	return func(c *config) {
		attrs, err := headerAttributes(headerToAttribute)
		if err != nil {
			c.invalid("WithHeaderAttributes: %v", err)
			return
		}
		c.attributes = attrs
	}
}

func headerAttributes(headerToAttribute map[string]string) ([]headerAttribute, error) {
	if len(headerToAttribute) > maxAttributes {
		return nil, fmt.Errorf("%d attributes, SQS allows %d", len(headerToAttribute), maxAttributes)
	}
	attrs := make([]headerAttribute, 0, len(headerToAttribute))
	seen := make(map[string]bool, len(headerToAttribute))
	for header, name := range headerToAttribute {
		if err := checkAttributeName(name); err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, fmt.Errorf("attribute %q mapped twice", name)
		}
		seen[name] = true
		if header == "" {
			return nil, errors.New("empty header name")
		}
		attrs = append(attrs, headerAttribute{header: http.CanonicalHeaderKey(header), attribute: name})
	}
	// Map order is random; a fixed order keeps entries reproducible.
	slices.SortFunc(attrs, func(a, b headerAttribute) int { return strings.Compare(a.header, b.header) })
	return attrs, nil
}

// WithFIFOHeaders takes the MessageGroupId and MessageDeduplicationId from
// the named headers; an empty name leaves that field unset. For a FIFO queue
// the default is X-Message-Group-Id and X-Deduplication-Id. On a standard
// queue a group id enables SQS fair queues.
func WithFIFOHeaders(groupHeader, dedupHeader string) Option {
	groupHeader = http.CanonicalHeaderKey(groupHeader)
	dedupHeader = http.CanonicalHeaderKey(dedupHeader)
	return WithFIFOFunc(func(r *http.Request, _ []byte) (string, string, error) {
		var group, dedup string
		if groupHeader != "" {
			group = r.Header.Get(groupHeader)
		}
		if dedupHeader != "" {
			dedup = r.Header.Get(dedupHeader)
		}
		return group, dedup, nil
	})
}

// WithFIFOFunc derives the MessageGroupId and MessageDeduplicationId with fn,
// for instance from the body. See FIFOFunc.
func WithFIFOFunc(fn FIFOFunc) Option {
	return option(fn != nil, func(c *config) { c.fifo = fn }, "WithFIFOFunc(nil)")
}

// WithLogger logs failed SendMessageBatch calls and failed entries, with the
// SQS error, which the HTTP answer leaves out on purpose (it can name the
// account and queue). The default is no logging; Stats counts them anyway.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithMaxWaiting bounds the messages that wait for a free SendMessageBatch
// call (default DefaultMaxWaiting). A request beyond it gets 503 with
// Retry-After at once, before its body is read when the room is already
// full: under overload the catcher sheds what SQS cannot take instead of
// queueing it without bound.
func WithMaxWaiting(n int) Option {
	return option(n > 0, func(c *config) { c.maxWaiting = n }, "WithMaxWaiting(%d): want > 0", n)
}

// WithMaxBodyMemory bounds the bytes of request bodies held at once, read
// so far or waiting to be sent (default DefaultMaxBodyMemory, 64 MiB). A
// request that would take it past the bound gets 503 with Retry-After. It
// must hold at least one body of the largest size accepted.
func WithMaxBodyMemory(n int64) Option {
	return option(n > 0, func(c *config) { c.maxMemory = n }, "WithMaxBodyMemory(%d): want > 0", n)
}

// WithMaxAttributeBytes caps the value of each header-derived attribute
// (default DefaultMaxAttributeBytes, 256 bytes). A longer header value gets
// 400: untrusted clients must not decide the size of what is stored.
func WithMaxAttributeBytes(n int) Option {
	return option(n > 0 && n <= MaxMessageBytes, func(c *config) { c.maxAttr = n }, "WithMaxAttributeBytes(%d): want 1..%d", n, MaxMessageBytes)
}

// WithDedupNamespace scopes the deduplication ids of a FIFO queue with fn,
// for instance per tenant, so that one tenant's id never deduplicates
// another tenant's message. See the package doc, FIFO queues.
func WithDedupNamespace(fn DedupNamespaceFunc) Option {
	return option(fn != nil, func(c *config) { c.namespace = fn }, "WithDedupNamespace(nil)")
}
