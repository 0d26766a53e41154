package sink_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sqsfake"
)

// Pipe makes the handler of the classic consumer: process a message into a
// result, store the result, and only then let the pool delete the message.
// An error from either step leaves the message to be delivered again.
func ExamplePipe() {
	type Order struct {
		ID  string `json:"id"`
		Qty int    `json:"qty"`
	}
	type Line struct {
		OrderID string
		Qty     int
	}
	ctx := context.Background()
	fake := sqsfake.New() // in production: an *sqs.Client
	queue := fake.MustCreateQueue("orders", nil)
	fake.MustSendJSON(queue, Order{ID: "o-1", Qty: 3})

	lines := sink.NewMemory[Line]() // in production: sink.NewDynamoDB
	stored := make(chan struct{})
	store := sink.Func[Line](func(ctx context.Context, ls ...Line) error {
		if err := lines.Put(ctx, ls...); err != nil {
			return err
		}
		close(stored) // only for this example: it stops after one message
		return nil
	})
	process := func(_ context.Context, o *Order) (Line, error) {
		return Line{OrderID: o.ID, Qty: o.Qty}, nil
	}

	pool, err := sqspool.StartPool(ctx, &sqspool.Consumer{Client: fake, Queue: queue},
		sink.Pipe(process, store),
		sqspool.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		panic(err)
	}
	<-stored
	if err := pool.Shutdown(ctx); err != nil {
		panic(err)
	}
	fmt.Println(lines.Items(), "deleted:", pool.Stats().Deleted)
	// Output: [{o-1 3}] deleted: 1
}
