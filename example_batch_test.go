package sqspool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

// A batch handler gets up to WithBatchSize decoded messages and reports the
// outcome of each: here the order with a negative total is dropped, and the
// others are deleted. Returning a plain error would fail them all.
func ExampleStartBatchPool() {
	fake := sqsfake.New()
	queue := fake.MustCreateQueue("orders", nil)
	for _, o := range []Order{{ID: "o-1", Total: 9.5}, {ID: "o-2", Total: -1}, {ID: "o-3", Total: 4}} {
		fake.MustSendJSON(queue, o)
	}

	done := make(chan struct{})
	pool, err := sqspool.StartBatchPool(context.Background(), &sqspool.Consumer{Client: fake, Queue: "orders"},
		func(ctx context.Context, orders []Order) error {
			metas, _ := sqspool.MessagesFrom(ctx) // metas[i] is orders[i]'s delivery
			failed := sqspool.BatchErrors{}
			var ids []string
			for i, o := range orders {
				ids = append(ids, fmt.Sprintf("%s (delivery %d)", o.ID, metas[i].ReceiveCount))
				if o.Total < 0 {
					failed[i] = sqspool.NoRetry(errors.New("negative total")) // or RetryAfter, or any error
				}
			}
			slices.Sort(ids)
			fmt.Println("batch:", ids)
			close(done)
			return failed // nil or empty: every message succeeded
		},
		sqspool.WithBatchSize(3), sqspool.WithBatchLinger(time.Second),
		sqspool.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		panic(err)
	}
	<-done
	if err := pool.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	st := pool.Stats()
	fmt.Println("processed:", st.Processed, "dropped:", st.Dropped, "deleted:", st.Deleted)
	// Output:
	// batch: [o-1 (delivery 1) o-2 (delivery 1) o-3 (delivery 1)]
	// processed: 2 dropped: 1 deleted: 3
}
