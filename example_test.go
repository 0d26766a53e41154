package sqspool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

type Order struct {
	ID    string  `json:"id"`
	Total float64 `json:"total"`
}

// Consume a queue into a typed handler. In production Client is an
// *sqs.Client (or nil, for one made from the default AWS configuration);
// here it is the in-memory fake.
func ExampleStartPool() {
	fake := sqsfake.New()
	queue := fake.MustCreateQueue("orders", nil)
	fake.MustSendJSON(queue, Order{ID: "o-1", Total: 9.5})

	done := make(chan struct{})
	pool, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: fake, Queue: "orders"},
		func(ctx context.Context, o *Order) error {
			m, _ := sqspool.MessageFrom(ctx)
			fmt.Printf("order %s: %.2f (delivery %d)\n", o.ID, o.Total, m.ReceiveCount)
			close(done)
			return nil
		},
		sqspool.WithWorkers(32))
	if err != nil {
		panic(err)
	}
	<-done
	if err := pool.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	fmt.Println("deleted:", pool.Stats().Deleted)
	// Output:
	// order o-1: 9.50 (delivery 1)
	// deleted: 1
}

// A handler chooses what happens to a failed message: a plain error retries
// after the pool's backoff, RetryAfter sets the delay, NoRetry drops it.
func ExampleRetryAfter() {
	handler := func(ctx context.Context, o *Order) error {
		switch {
		case o.Total < 0:
			return sqspool.NoRetry(fmt.Errorf("order %s: negative total", o.ID))
		case o.ID == "":
			return errors.New("no id yet") // retried with exponential backoff
		default:
			return sqspool.RetryAfter(30*time.Second, errors.New("warehouse busy"))
		}
	}
	err := handler(context.Background(), &Order{ID: "o-2", Total: -1})
	fmt.Println(errors.Is(err, sqspool.ErrNoRetry), err)
	// Output: true sqspool: do not retry: order o-2: negative total
}

// Shutdown stops receiving at once, gives unstarted messages back, lets
// running handlers finish, and flushes deletes. Its context bounds the wait.
func ExamplePool_Shutdown() {
	fake := sqsfake.New()
	fake.MustCreateQueue("orders", nil)
	pool, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: fake, Queue: "orders"},
		func(ctx context.Context, o *Order) error { return nil },
		sqspool.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	var serr *sqspool.ShutdownError
	if err := pool.Shutdown(ctx); errors.As(err, &serr) {
		fmt.Println("cut short:", serr)
		return
	}
	fmt.Println("stopped cleanly")
	// Output: stopped cleanly
}
