package sink_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sink/dynamofake"
)

// A handler writes its results through a DynamoDB sink shared by all
// workers. The fake stands in for a *dynamodb.Client here.
func ExampleNewDynamoDB() {
	type Order struct {
		ID     string `dynamodbav:"pk"`
		Amount int    `dynamodbav:"amount"`
	}
	client := dynamofake.New() // in production: dynamodb.NewFromConfig(cfg)
	client.CreateTable("orders", "pk", "")

	orders, err := sink.NewDynamoDB[Order](client, "orders",
		sink.WithKeyAttributes("pk", ""),
		sink.WithTTL("expires_at", 30*24*time.Hour),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer orders.Close(context.Background())

	// What a handler does; the pool deletes the message only if Put
	// returned nil.
	handle := func(ctx context.Context, id string, amount int) error {
		return orders.Put(ctx, Order{ID: id, Amount: amount})
	}
	if err := handle(context.Background(), "o-1", 42); err != nil {
		var we *sink.WriteError
		if errors.As(err, &we) {
			fmt.Println("failed items:", len(we.Items))
		}
		return
	}
	st := orders.Stats()
	fmt.Println("items written:", st.ItemsWritten, "BatchWriteItem calls:", st.BatchWriteItemCalls)
	// Output: items written: 1 BatchWriteItem calls: 1
}

// Idempotent mode: a redelivered message (same MessageId, which the pool
// puts in the context) does not write again.
func ExampleWithIdempotency() {
	type Payment struct {
		ID string `dynamodbav:"pk"`
	}
	client := dynamofake.New()
	client.CreateTable("payments", "pk", "")
	client.CreateTable("idempotency", "id", "")

	payments, err := sink.NewDynamoDB[Payment](client, "payments",
		sink.WithIdempotency(sink.IdempotencyConfig{
			Table:       "idempotency",
			Expiry:      24 * time.Hour,
			PayloadHash: true,
		}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer payments.Close(context.Background())

	ctx := sink.WithKey(context.Background(), "message-id-1") // done by the pool
	fmt.Println(payments.Put(ctx, Payment{ID: "p-1"}))
	fmt.Println(payments.Put(ctx, Payment{ID: "p-1"})) // redelivery
	fmt.Println(errors.Is(payments.Put(ctx, Payment{ID: "p-2"}), sink.ErrPayloadMismatch))
	fmt.Println("skipped:", payments.Stats().DuplicatesSkipped)
	// Output:
	// <nil>
	// <nil>
	// true
	// skipped: 1
}

// The Memory sink records what handlers wrote, for tests.
func ExampleNewMemory() {
	m := sink.NewMemory[string]()
	_ = m.Put(context.Background(), "a", "b")
	fmt.Println(m.Items(), m.Len())
	// Output: [a b] 2
}

// In keyed mode the Memory sink stores by key, like a table, and counts
// overwrites, so a test can check that a redelivery did not apply twice.
func ExampleNewMemoryKeyed() {
	type Row struct{ ID, V string }
	m := sink.NewMemoryKeyed(func(r Row) string { return r.ID })
	_ = m.Put(context.Background(), Row{"1", "x"}, Row{"2", "y"})
	_ = m.Put(context.Background(), Row{"1", "z"})
	fmt.Println(m.Items(), m.Stats().Overwrites)
	// Output: [{1 z} {2 y}] 1
}
