package sink_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sink/dynamofake"
)

// BenchmarkDynamoDBSink compares the batching sink (default 5 ms linger,
// and with no linger) with the naive sink that makes one PutItem call per
// item, with few and with many concurrent workers (as a pool runs them) and
// a fake DynamoDB that answers each call after 2 ms. One op is one item
// written; calls/1000items is the figure that decides the DynamoDB request
// bill. With few workers a batch holds about as many items as there are
// workers (each Put waits for its own items) and every Put waits the linger;
// with many workers batches fill to 25 before the linger ends.
//
//	go test -run '^$' -bench BenchmarkDynamoDBSink -benchtime 5000x ./sink/
func BenchmarkDynamoDBSink(b *testing.B) {
	const latency = 2 * time.Millisecond
	tableName := table
	modes := map[string]func(api sink.DynamoDBAPI) (sink.Sink[order], func()){
		"batched": func(api sink.DynamoDBAPI) (sink.Sink[order], func()) {
			s, err := sink.NewDynamoDB[order](api, table)
			if err != nil {
				b.Fatal(err)
			}
			return s, func() {
				if err := s.Close(context.Background()); err != nil {
					b.Error(err)
				}
			}
		},
		"batched-linger0": func(api sink.DynamoDBAPI) (sink.Sink[order], func()) {
			s, err := sink.NewDynamoDB[order](api, table, sink.WithLinger(0))
			if err != nil {
				b.Fatal(err)
			}
			return s, func() {
				if err := s.Close(context.Background()); err != nil {
					b.Error(err)
				}
			}
		},
		"putitem-per-item": func(api sink.DynamoDBAPI) (sink.Sink[order], func()) {
			return sink.Func[order](func(ctx context.Context, items ...order) error {
				for _, it := range items {
					av, err := attributevalue.MarshalMap(it)
					if err != nil {
						return err
					}
					if _, err := api.PutItem(ctx, &dynamodb.PutItemInput{TableName: &tableName, Item: av}); err != nil {
						return err
					}
				}
				return nil
			}), func() {}
		},
	}
	for _, perCPU := range []int{1, 16} {
		workers := perCPU * runtime.GOMAXPROCS(0)
		for _, name := range []string{"batched", "batched-linger0", "putitem-per-item"} {
			b.Run(fmt.Sprintf("%s/workers=%d", name, workers), func(b *testing.B) {
				fake := dynamofake.New()
				fake.CreateTable(table, "pk", "")
				fake.SetLatency(latency)
				s, closeSink := modes[name](fake)
				var seq atomic.Int64
				b.SetParallelism(perCPU)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						id := "o" + strconv.FormatInt(seq.Add(1), 10)
						if err := s.Put(context.Background(), order{PK: id, N: 1}); err != nil {
							b.Error(err)
						}
					}
				})
				b.StopTimer()
				closeSink()
				if got := fake.Len(table); got != b.N {
					b.Fatalf("%d items stored, want %d", got, b.N)
				}
				b.ReportMetric(float64(fake.TotalCalls())*1000/float64(b.N), "calls/1000items")
			})
		}
	}
}
