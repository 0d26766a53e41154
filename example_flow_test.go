package sqspool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

var exampleQuiet = sqspool.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

// A circuit breaker stops taking messages while the downstream a handler
// depends on keeps failing: once half the outcomes in the window are
// failures, it opens, gives unstarted messages back, and after CoolDown lets
// a few probes through before closing again.
func ExampleWithCircuitBreaker() {
	fake := sqsfake.New()
	queue := fake.MustCreateQueue("orders", nil)
	for i := range 4 {
		fake.MustSendJSON(queue, Order{ID: fmt.Sprint("o-", i)})
	}

	opened := make(chan struct{})
	pool, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: fake, Queue: queue},
		func(ctx context.Context, o *Order) error {
			return errors.New("warehouse API: 503") // the downstream is down
		},
		sqspool.WithCircuitBreaker(sqspool.CircuitBreaker{
			Window:       time.Minute,
			MinRequests:  4,
			FailureRatio: 0.5,
			CoolDown:     time.Minute,
			OnStateChange: func(from, to sqspool.BreakerState) {
				fmt.Println("breaker:", from, "->", to)
				if to == sqspool.BreakerOpen {
					close(opened)
				}
			},
		}),
		exampleQuiet)
	if err != nil {
		panic(err)
	}
	<-opened
	if err := pool.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	fmt.Println("failed:", pool.Stats().Failed, "deleted:", pool.Stats().Deleted)
	// Output:
	// breaker: closed -> open
	// failed: 4 deleted: 0
}

// Adaptive concurrency runs between Min and Max handlers at once, raising
// the limit while latency holds and lowering it when the downstream slows
// down, instead of a fixed WithWorkers.
func ExampleWithAdaptiveConcurrency() {
	fake := sqsfake.New()
	queue := fake.MustCreateQueue("orders", nil)
	const n = 50
	for i := range n {
		fake.MustSendJSON(queue, Order{ID: fmt.Sprint("o-", i)})
	}

	var mu sync.Mutex
	running, most := 0, 0 // handlers running now, and at most
	var handled sync.WaitGroup
	handled.Add(n)
	pool, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: fake, Queue: queue},
		func(ctx context.Context, o *Order) error {
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			defer func() {
				mu.Lock()
				running--
				mu.Unlock()
				handled.Done()
			}()
			return nil
		},
		sqspool.WithWorkers(64),
		sqspool.WithAdaptiveConcurrency(sqspool.AdaptiveConcurrency{Min: 2, Max: 16}),
		exampleQuiet)
	if err != nil {
		panic(err)
	}
	handled.Wait()
	if err := pool.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Println("deleted:", pool.Stats().Deleted, "at most 16 at once:", most <= 16)
	// Output: deleted: 50 at most 16 at once: true
}

// The error hook sees every failure with its message: undecodable bodies
// (*DecodeError), handler errors and panics (*PanicError), and SQS API
// errors (*APIError). Failures are logged either way; the hook is for
// metrics, alerts or a dead-letter store of your own.
func ExampleWithErrorHook() {
	fake := sqsfake.New()
	queue := fake.MustCreateQueue("orders", nil)
	fake.MustSend(queue, "not JSON")
	fake.MustSendJSON(queue, Order{ID: "o-1", Total: -5})

	var mu sync.Mutex
	var seen []string
	var failures sync.WaitGroup
	failures.Add(2)
	pool, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: fake, Queue: queue},
		func(ctx context.Context, o *Order) error {
			return sqspool.NoRetry(fmt.Errorf("order %s: negative total", o.ID))
		},
		sqspool.WithErrorHook(func(ctx context.Context, msg *sqspool.Message, err error) {
			var decodeErr *sqspool.DecodeError
			kind := "handler error: " + err.Error()
			if errors.As(err, &decodeErr) {
				kind = fmt.Sprintf("malformed body %q", msg.Body)
			}
			mu.Lock()
			seen = append(seen, kind)
			mu.Unlock()
			failures.Done()
		}),
		exampleQuiet)
	if err != nil {
		panic(err)
	}
	failures.Wait()
	if err := pool.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	slices.Sort(seen)
	for _, s := range seen {
		fmt.Println(s)
	}
	// Output:
	// handler error: sqspool: do not retry: order o-1: negative total
	// malformed body "not JSON"
}
