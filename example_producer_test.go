package sqspool_test

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

// Send typed messages from many goroutines: their Sends share
// SendMessageBatch calls, and each returns its own MessageId once SQS
// stored the message. A pool of Order decodes what the producer encodes.
// In production the client is an *sqs.Client; here it is the in-memory fake.
func ExampleNewProducer() {
	fake := sqsfake.New()
	queue := fake.MustCreateQueue("orders", nil)

	p, err := sqspool.NewProducer[Order](fake, queue)
	if err != nil {
		panic(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := p.Send(context.Background(), Order{ID: fmt.Sprint("o-", i), Total: 9.5}); err != nil {
				fmt.Println("not sent:", err)
			}
		})
	}
	wg.Wait()
	if err := p.Close(context.Background()); err != nil { // flushes and waits
		panic(err)
	}
	// p.Stats().Calls: typically 2 or 3 calls for the 20 messages.
	fmt.Println(p.Stats().Sent, "sent,", len(fake.Messages(queue)), "in the queue")
	// Output:
	// 20 sent, 20 in the queue
}

// On a FIFO queue each Send names its message group, and a deduplication
// id lets a Send be repeated after an uncertain outcome without a second
// message. The ids go with the Send, not with the type, so they fit any
// message type, strings included.
func ExampleProducer_Send() {
	fake := sqsfake.New()
	queue := fake.MustCreateQueue("orders.fifo", map[string]string{"FifoQueue": "true"})

	p, err := sqspool.NewProducer[Order](fake, queue)
	if err != nil {
		panic(err)
	}
	o := Order{ID: "o-1", Total: 9.5}
	for range 2 { // the second Send is a repeat: SQS drops it
		if _, err := p.Send(context.Background(), o, sqspool.GroupID("customer-42"), sqspool.DeduplicationID(o.ID)); err != nil {
			fmt.Println("not sent:", err)
		}
	}
	_, err = p.Send(context.Background(), Order{ID: "o-2"}) // no group
	fmt.Println(errors.Is(err, sqspool.ErrInvalidMessage), len(fake.Messages(queue)), "in the queue")
	if err := p.Close(context.Background()); err != nil {
		panic(err)
	}
	// Output:
	// true 1 in the queue
}
