package main

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/sqspool/sqspool"
)

// Order is the JSON body of each message ({"id": "..."}).
type Order struct{ ID string }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A nil Client means the default AWS config: env, ~/.aws, roles, AWS_ENDPOINT_URL_SQS.
	pool, err := sqspool.StartPool(ctx, &sqspool.Consumer{Queue: "orders"}, func(ctx context.Context, o *Order) error {
		log.Printf("order %s", o.ID)
		return nil // nil: the message is deleted; an error: it comes back later
	}, sqspool.WithWorkers(32))
	if err != nil {
		log.Fatal(err)
	}
	// SIGTERM cancels ctx: the pool stops receiving and drains within 20s.
	if err := pool.Wait(); err != nil {
		log.Fatal(err)
	}
}
