package sqspool

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sqspool/sqspool/internal/backoff"
	"github.com/sqspool/sqspool/internal/clock"
)

// Option configures a pool. Every option has a default, given in its comment;
// a pool built with no options at all is a reasonable production consumer.
type Option func(*config)

// DecodeFailurePolicy says what happens to a message whose body does not
// decode. Either way the handler never sees it and the error hook does.
type DecodeFailurePolicy int

const (
	// LeaveMalformed (the default) leaves the message in the queue. It comes
	// back after its visibility timeout until the queue's redrive policy moves
	// it to the dead-letter queue, where it can be inspected.
	LeaveMalformed DecodeFailurePolicy = iota
	// DeleteMalformed deletes the message once the error hook has seen it.
	// Use it for queues without a dead-letter queue.
	DeleteMalformed
)

// ErrorHook observes every failure: *DecodeError, *PanicError, a handler's
// error, and *APIError for failed SQS calls. msg is nil when the failure
// concerns no single message. It runs on the goroutine that saw the failure,
// so it must be quick. A panic in it is recovered and logged.
type ErrorHook func(ctx context.Context, msg *Message, err error)

type config struct {
	workers        int
	pollers        int
	pollersSet     bool
	maxMessages    int
	waitTime       time.Duration
	visibility     time.Duration // 0: the queue's own
	handlerTimeout time.Duration // 0: derived from visibility
	deleteLinger   time.Duration
	// receiveFill is how long a poller that has some free workers, but fewer
	// than a full receive's worth, waits for more to free up before it
	// receives. Under load workers free up far faster and every receive asks
	// for 10; with slow handlers a free worker idles at most this long. While
	// received messages still wait for workers, a poller waits longer, up to
	// as long as they keep the workers busy less one receive latency (at most
	// 1s). The receive controller owns it; not an option since issue 15.
	receiveFill      time.Duration
	batchConcurrency int
	batchAttempts    int
	shutdownTimeout  time.Duration
	flushTimeout     time.Duration
	attributeNames   []string
	decoder          any // decoder[T] set by tests (withDecoder), checked by StartPool
	snsEnvelope      bool
	decodePolicy     DecodeFailurePolicy
	retryBackoff     Backoff
	breaker          *CircuitBreaker
	adaptive         *AdaptiveConcurrency
	heartbeat        bool
	batch            batchConfig // StartBatchPool's (batch.go)
	onError          ErrorHook
	observer         Observer
	logger           *slog.Logger // what an operator must act on
	verbose          *slog.Logger // the rest: only to a logger the user passes
	clock            clock.Clock
	jitter           backoff.Source // the backoffs' random part (tests seed it)
}

func defaultConfig() config {
	return config{
		workers:          10,
		maxMessages:      10,
		waitTime:         20 * time.Second,
		deleteLinger:     20 * time.Millisecond,
		receiveFill:      10 * time.Millisecond,
		batchConcurrency: 0, // see batchConcurrencyFor
		batchAttempts:    5,
		shutdownTimeout:  20 * time.Second,
		flushTimeout:     5 * time.Second,
		attributeNames:   []string{"All"},
		retryBackoff:     ExponentialBackoff(2*time.Second, 5*time.Minute),
		heartbeat:        true,
		logger:           slog.Default(),
		verbose:          slog.New(slog.DiscardHandler),
		clock:            clock.Real,
		jitter:           backoff.Global,
	}
}

func (c *config) validate() error {
	switch {
	case c.workers < 1:
		return fmt.Errorf("sqspool: workers must be at least 1, got %d", c.workers)
	case c.pollers < 0:
		return fmt.Errorf("sqspool: pollers must not be negative, got %d", c.pollers)
	case c.maxMessages < 1 || c.maxMessages > 10:
		return fmt.Errorf("sqspool: max messages must be 1..10 (an SQS limit), got %d", c.maxMessages)
	case c.waitTime < 0 || c.waitTime > 20*time.Second:
		return fmt.Errorf("sqspool: wait time must be 0..20s (an SQS limit), got %v", c.waitTime)
	case c.visibility < 0 || c.visibility > maxVisibility:
		return fmt.Errorf("sqspool: visibility timeout must be 0..12h (an SQS limit), got %v", c.visibility)
	case c.receiveFill < 0 || c.deleteLinger < 0:
		return fmt.Errorf("sqspool: delete linger must not be negative")
	case c.batchConcurrency < 0:
		return fmt.Errorf("sqspool: batch concurrency must not be negative, got %d", c.batchConcurrency)
	case c.batchAttempts < 1:
		return fmt.Errorf("sqspool: batch attempts must be at least 1, got %d", c.batchAttempts)
	}
	if c.adaptive != nil {
		a := c.adaptive.withDefaults(c.workers)
		c.adaptive, c.workers = &a, a.Max // one worker goroutine per slot the limit may reach
	}
	if c.pollers == 0 {
		c.pollers = defaultMaxPollers
	}
	if c.batchConcurrency == 0 {
		c.batchConcurrency = batchConcurrencyFor(c.workers)
	}
	return nil
}

// batchConcurrencyFor is the default cap on concurrent batch calls of each
// kind: 8, or a quarter of the workers if more. Deletes keep up with the
// handlers while a call takes up to 2.5 handler times (workers / handler
// time messages a second, ten to a call); with a fixed 8, 64 workers of 5 ms
// handlers were capped near 8 calls per call latency, 8,000 messages a
// second at 10 ms.
func batchConcurrencyFor(workers int) int {
	return max(8, (workers+3)/4)
}

// defaultMaxPollers bounds the receives in flight at once by default, as
// gocloud bounds its own. The slots bound them first: pollers never
// outnumber the receives that the handlers and the read-ahead can take.
const defaultMaxPollers = 100

// WithWorkers sets how many handlers run at once (default 10). Messages held
// are bounded by it plus a read-ahead of about one receive latency of work,
// at most one receive per poller and what is handled in half a visibility
// timeout (see Stats.ReadAhead).
func WithWorkers(n int) Option { return func(c *config) { c.workers = n } }

// WithPollers sets the most long polls that run at once: an upper bound, not
// a fixed count (default 100). Within it the pool adds a poller while
// receives come back full and workers wait for work, and sheds one for each
// receive that comes back partial or empty, or that found fewer than ten
// slots free (the handlers are the limit), down to a single long poll when
// the queue is idle (3 requests a minute at the default 20s wait). Pollers
// never outnumber what the free slots can fill: the workers, or the live
// adaptive limit, plus the read-ahead. WithPollers(1) is a fixed single
// poller. On FIFO queues more than one poller relies on SQS locking a
// message group while any of its messages is in flight, as SQS does: use
// WithPollers(1) against a server that does not.
func WithPollers(n int) Option { return func(c *config) { c.pollers, c.pollersSet = n, true } }

// WithMaxMessages caps the messages asked for in one ReceiveMessage (default
// and SQS maximum 10).
func WithMaxMessages(n int) Option { return func(c *config) { c.maxMessages = n } }

// WithWaitTime sets the long-poll wait (default and SQS maximum 20s). Zero
// turns long polling off, which costs a request per empty poll.
func WithWaitTime(d time.Duration) Option { return func(c *config) { c.waitTime = d } }

// WithVisibilityTimeout sets the visibility timeout asked for on each receive
// (default: the queue's own, read once at start with GetQueueAttributes).
func WithVisibilityTimeout(d time.Duration) Option { return func(c *config) { c.visibility = d } }

// WithHandlerTimeout bounds each handler's context, counted from when its
// message arrived, or, with the heartbeat, from when its attempt starts if
// the message waited here for its turn (behind its FIFO group, read ahead,
// or for a retry in place) while the heartbeat kept it invisible (default:
// ten visibility timeouts while the heartbeat keeps the message invisible;
// without the heartbeat, the visibility timeout less a margin, so that a
// handler is cancelled before SQS would give its message to another
// consumer). The pool's watchdog cancels the context within a
// twentieth of the timeout after its deadline; no timer is armed per message.
// The heartbeat stops at the deadline: a handler that ignores its cancelled
// context does not keep its message from everyone else.
func WithHandlerTimeout(d time.Duration) Option { return func(c *config) { c.handlerTimeout = d } }

// WithHeartbeat turns the visibility heartbeat on or off (default on). While
// a handler runs, the heartbeat extends its message's visibility timeout in
// batched ChangeMessageVisibilityBatch calls, a third of a timeout ahead,
// until the handler returns or its timeout (WithHandlerTimeout) ends.
func WithHeartbeat(on bool) Option { return func(c *config) { c.heartbeat = on } }

// WithRetryBackoff sets when a failed message comes back (default
// ExponentialBackoff(2s, 5m) on its receive count): its visibility timeout is
// set to the delay, in batches, instead of running out. nil leaves failed
// messages to their visibility timeout. A handler can ask for a delay with
// RetryAfter, or for no retry with NoRetry.
func WithRetryBackoff(b Backoff) Option { return func(c *config) { c.retryBackoff = b } }

// WithCircuitBreaker stops receiving while handlers fail against a broken
// downstream, instead of burning the messages' receive counts into the
// dead-letter queue (default: off). See CircuitBreaker for the defaults of
// its zero fields.
func WithCircuitBreaker(cb CircuitBreaker) Option { return func(c *config) { c.breaker = &cb } }

// WithAdaptiveConcurrency lets the number of handlers running at once move
// between a.Min and a.Max with the handlers' latency (default: off, the
// fixed WithWorkers). See AdaptiveConcurrency for the algorithm.
func WithAdaptiveConcurrency(a AdaptiveConcurrency) Option {
	return func(c *config) { c.adaptive = &a }
}

// WithDeleteLinger sets how long a finished message may wait for others to
// fill its DeleteMessageBatch call (default 20ms). Under load batches fill to
// 10 well before it; at low load it bounds the delete latency. Visibility
// changes (retry delays, heartbeats) share calls the same way.
func WithDeleteLinger(d time.Duration) Option { return func(c *config) { c.deleteLinger = d } }

// WithBatchAttempts sets how many times a batch entry that failed transiently
// is sent (default 5). After that the message is left to its visibility
// timeout: it is delivered again, never lost.
func WithBatchAttempts(n int) Option { return func(c *config) { c.batchAttempts = n } }

// WithShutdownTimeout bounds the graceful stop that begins when StartPool's
// context is cancelled (default 20s: with the 1s given to cancelled handlers
// and the 5s final flush, at most 26s, inside Kubernetes' default 30s grace).
// Shutdown takes its bound from its own context instead.
func WithShutdownTimeout(d time.Duration) Option { return func(c *config) { c.shutdownTimeout = d } }

// WithFlushTimeout is the least time the final flush of deletes and
// visibility changes at shutdown may take, even when the shutdown deadline
// has passed or passes meanwhile (default 5s): deleting finished work is
// worth a moment, since otherwise it runs again.
func WithFlushTimeout(d time.Duration) Option { return func(c *config) { c.flushTimeout = d } }

// WithMessageAttributeNames limits the message attributes received (default
// "All").
func WithMessageAttributeNames(names ...string) Option {
	return func(c *config) { c.attributeNames = names }
}

// WithSNSEnvelope unwraps SNS notifications (topics delivering to the queue
// without raw message delivery) before decoding.
func WithSNSEnvelope() Option { return func(c *config) { c.snsEnvelope = true } }

// WithDecodeFailure sets the policy for bodies that do not decode (default
// LeaveMalformed).
func WithDecodeFailure(p DecodeFailurePolicy) Option { return func(c *config) { c.decodePolicy = p } }

// WithErrorHook sets the observer of every failure (default: none; failures
// are logged either way).
func WithErrorHook(h ErrorHook) Option { return func(c *config) { c.onError = h } }

// WithLogger sets the logger for everything the pool logs. Without it the
// pool is quiet: only what an operator must act on (a panic, an undecodable
// body, a failed delete, an open circuit breaker, a stop that cut work short)
// goes to slog.Default(); routine events (start and stop, handler errors,
// which the ErrorHook also sees) are not logged at all. Bodies are logged
// only at debug level.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger, c.verbose = l, l }
}

func init() { clock.Register(withClock) }

// withClock sets the clock behind lingers, backoffs and deadlines (default
// the wall clock). Tests pass a clock.Manual.
// Not part of the API (the repo's tests reach it with clock.Option; a
// user's tests get fake time from testing/synctest).
func withClock(clk clock.Clock) Option { return func(c *config) { c.clock = clk } }
