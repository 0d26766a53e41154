// Package readmesnippet is the README's sink example, compiled: the README
// shows this file from the "README begin" line to the "README end" line
// (sink/readme_test.go keeps the two the same).
package readmesnippet

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sink"
)

// Order is the JSON body of each message.
type Order struct {
	ID    string `json:"id"` // assigned by the producer, the same if it sends the order twice
	Total int    `json:"total"`
}

// README begin

// Result goes to table "results" (partition key "pk", a string). The
// idempotency records go to table "idempotency" (partition key "id", a
// string; point its TTL at "expiration").
type Result struct {
	PK    string `dynamodbav:"pk"`
	Total int    `dynamodbav:"total"`
}

// IdempotencyKey keys the idempotency records on the producer's order id,
// not the MessageId: a resent order, or a message redriven from the DLQ (new
// MessageId), is not applied again.
func (r Result) IdempotencyKey() string { return r.PK }

func process(_ context.Context, o *Order) (Result, error) {
	return Result{PK: "order#" + o.ID, Total: o.Total}, nil
}

// Run consumes "orders" until ctx ends (SIGTERM), then drains and stops.
func Run(ctx context.Context) error {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	store, err := sink.NewDynamoDB[Result](dynamodb.NewFromConfig(cfg), "results",
		sink.WithIdempotency(sink.IdempotencyConfig{
			Table: "idempotency",
			Lease: 20 * time.Second, // a little under the queue's visibility timeout
		}))
	if err != nil {
		return err
	}
	pool, err := sqspool.StartPool(ctx, &sqspool.Consumer{Queue: "orders"}, sink.Pipe(process, store))
	if err == nil {
		err = pool.Wait()
	}
	// ctx is done by now: close the store, after the pool, with a context of its own.
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(err, store.Close(closeCtx))
}

// README end
