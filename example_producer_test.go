package sqspool_test

import (
	"context"
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
