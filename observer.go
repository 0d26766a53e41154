package sqspool

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"
)

// Observer sees each message's life and every SQS call, for metrics and
// tracing without touching handlers. Package otelsqspool implements it with
// OpenTelemetry; embed NopObserver to implement only some methods. Methods
// run on the pool's goroutines: keep them quick and safe for concurrent use. A
// panic in one is recovered and logged.
type Observer interface {
	// Received is called for every delivery, duplicates included.
	Received(m *Message)
	// Start is called as a handler is about to run. The context it returns
	// is the handler's (a span may ride in it); done is called with the
	// handler's result once it returns.
	Start(ctx context.Context, m *Message) (hctx context.Context, done func(err error))
	// Deleted is called when SQS confirmed that m was deleted.
	Deleted(m *Message)
	// Call is called after every SQS request with its API name, how many
	// entries or messages it carried, its latency and its error.
	Call(api string, entries int, latency time.Duration, err error)
}

// NopObserver does nothing. Embed it in an Observer that needs only some of
// the methods.
type NopObserver struct{}

// Received does nothing.
func (NopObserver) Received(*Message) {}

// Start returns ctx and a done that does nothing.
func (NopObserver) Start(ctx context.Context, _ *Message) (context.Context, func(error)) {
	return ctx, func(error) {}
}

// Deleted does nothing.
func (NopObserver) Deleted(*Message) {}

// Call does nothing.
func (NopObserver) Call(string, int, time.Duration, error) {}

// guard runs f, a call into user code the pool does not own (an Observer
// method, the ErrorHook), and logs a panic instead of letting it take the
// process down: a metrics bug must not stop the queue.
func guard(log *slog.Logger, what string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("sqspool: "+what+" panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	f()
}

// guardedObserver recovers the panics of the Observer it wraps.
type guardedObserver struct {
	o   Observer
	log *slog.Logger
}

func (g guardedObserver) Received(m *Message) {
	guard(g.log, "Observer.Received", func() { g.o.Received(m) })
}

func (g guardedObserver) Start(ctx context.Context, m *Message) (hctx context.Context, done func(error)) {
	hctx, done = ctx, func(error) {}
	guard(g.log, "Observer.Start", func() {
		c, d := g.o.Start(ctx, m)
		if c != nil {
			hctx = c
		}
		if d != nil {
			done = func(err error) { guard(g.log, "Observer.Start's done", func() { d(err) }) }
		}
	})
	return hctx, done
}

func (g guardedObserver) Deleted(m *Message) {
	guard(g.log, "Observer.Deleted", func() { g.o.Deleted(m) })
}

func (g guardedObserver) Call(api string, entries int, latency time.Duration, err error) {
	guard(g.log, "Observer.Call", func() { g.o.Call(api, entries, latency, err) })
}

// WithObserver sets an Observer (default: none).
func WithObserver(o Observer) Option { return func(c *config) { c.observer = o } }

// Health is what a readiness or liveness probe needs to know of a pool.
type Health struct {
	// Polling is true while the pool is receiving: started and not stopping.
	Polling bool
	// LastReceive is when a ReceiveMessage call last succeeded (empty or not).
	LastReceive time.Time
	// PendingDeletes is how many finished messages wait for their delete.
	PendingDeletes int
	// Saturated is true while every slot is held: the pool is not receiving
	// because it is busy, not because it is stuck, so a stale LastReceive is
	// expected.
	Saturated bool
	// Breaker is the circuit breaker's state (closed when there is none).
	Breaker BreakerState
}

// Health reports whether the pool is polling, when it last received, and
// the backlog of deletes. A readiness probe might require Polling and a
// LastReceive younger than two long-poll waits.
func (p *Pool) Health() Health {
	h := Health{
		Polling:        !p.stopping.Load(),
		PendingDeletes: p.deq.deletes.Pending(),
	}
	if ns := p.lastReceive.Load(); ns > 0 {
		h.LastReceive = time.Unix(0, ns)
	}
	h.Saturated = p.counters.held.Load() >= p.limit.Load()+p.readAhead.Load()
	h.Breaker, _ = p.brk.snapshot()
	return h
}
