package scen

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sink/dynamofake"
)

// sinkItem is what a handler would write for one message.
type sinkItem struct {
	PK       string  `dynamodbav:"pk"`
	Customer string  `dynamodbav:"customer"`
	SKU      string  `dynamodbav:"sku"`
	Quantity int     `dynamodbav:"quantity"`
	Amount   float64 `dynamodbav:"amount"`
	Note     string  `dynamodbav:"note"`
}

func makeItem(i int) sinkItem {
	return sinkItem{PK: "order-" + strconv.Itoa(i), Customer: "cust-" + strconv.Itoa(i%1000), SKU: "SKU-" + strconv.Itoa(i%100),
		Quantity: 1 + i%7, Amount: float64(10 + i%90), Note: "bench"}
}

const (
	sinkTable   = "items"
	sinkLatency = 5 * time.Millisecond
	sinkCallers = 64
)

// sinkRun writes n items with callers goroutines through put and reports
// items/s over the steady window and DynamoDB calls per 1000 items.
func sinkRun(ctx context.Context, variant string, n int, fake *dynamofake.Fake, put func(ctx context.Context, it sinkItem) error) (Result, error) {
	p := newProgress(n, func() int64 { return int64(fake.TotalCalls()) })
	calls0 := fake.TotalCalls()
	a := startAllocs()
	s := startSampler()
	g0 := runtime.NumGoroutine()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, sinkCallers)
	for range sinkCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) || ctx.Err() != nil {
					return
				}
				if err := put(ctx, makeItem(int(i))); err != nil {
					errc <- err
					return
				}
				p.add(1)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case err = <-errc:
		<-done
	case <-time.After(3 * time.Minute):
		err = fmt.Errorf("sink: timed out with %d of %d items written", p.n.Load(), n)
		<-done
	}
	if err != nil {
		return Result{}, err
	}
	res := Result{Scenario: "7 sink", Variant: variant, Msgs: int64(n), GStart: g0}
	res.CPUPerMsg = a.cpuPerMsg(int64(n))
	res.AllocsPerMsg, res.BytesPerMsg = a.perMsg(int64(n))
	res.PeakHeap, res.GPeak = s.end()
	res.GEnd = runtime.NumGoroutine()
	res.Rate, res.ReqPer1000 = p.window()
	if got := fake.Len(sinkTable); got != n {
		return res, fmt.Errorf("sink: %d items in the table, want %d", got, n)
	}
	res.Note = fmt.Sprintf("%d callers, %v per DynamoDB call; whole run %.1f calls/1000 items",
		sinkCallers, sinkLatency, float64(fake.TotalCalls()-calls0)*1000/float64(n))
	return res, nil
}

func newSinkFake() *dynamofake.Fake {
	f := dynamofake.New()
	f.CreateTable(sinkTable, "pk", "")
	f.SetLatency(sinkLatency)
	return f
}

// SinkRun writes n items through the batched sink or with one PutItem per
// item.
func SinkRun(ctx context.Context, n int, batched bool, opts ...sink.DynamoDBOption) (Result, error) {
	f := newSinkFake()
	if !batched {
		return sinkRun(ctx, "one PutItem per item", n, f, func(ctx context.Context, it sinkItem) error {
			av, err := attributevalue.MarshalMap(it)
			if err != nil {
				return err
			}
			_, err = f.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(sinkTable), Item: av})
			return err
		})
	}
	s, err := sink.NewDynamoDB[sinkItem](f, sinkTable, opts...)
	if err != nil {
		return Result{}, err
	}
	res, err := sinkRun(ctx, "sink.DynamoDB (BatchWriteItem, defaults)", n, f, func(ctx context.Context, it sinkItem) error { return s.Put(ctx, it) })
	cerr := s.Close(context.WithoutCancel(ctx))
	if err = errors.Join(err, cerr); err != nil {
		return res, err
	}
	st := s.Stats()
	res.Note += fmt.Sprintf("; %d BatchWriteItem calls, %.1f items/call, %d retries",
		st.BatchWriteItemCalls, float64(st.ItemsWritten)/float64(max(st.BatchWriteItemCalls, 1)), st.Retries)
	return res, nil
}

// sinkIdemTable is the idempotency table of the idempotent variant.
const sinkIdemTable = "idempotency"

// SinkIdempotentRun writes n items through the idempotent sink, each under
// a key of its own as if each came from its own message, and reports the
// DynamoDB calls per 1000 messages (the target is at most 1100: the take
// is one conditional PutItem per message, the items and the COMPLETE
// records share BatchWriteItem calls).
func SinkIdempotentRun(ctx context.Context, n int) (Result, error) {
	f := newSinkFake()
	f.CreateTable(sinkIdemTable, sink.DefaultIdempotencyKeyAttribute, "")
	s, err := sink.NewDynamoDB[sinkItem](f, sinkTable, sink.WithIdempotency(sink.IdempotencyConfig{Table: sinkIdemTable}))
	if err != nil {
		return Result{}, err
	}
	res, err := sinkRun(ctx, "sink.DynamoDB WithIdempotency, one key per message", n, f, func(ctx context.Context, it sinkItem) error {
		return s.Put(sink.WithKey(ctx, it.PK), it)
	})
	if err = errors.Join(err, s.Close(context.WithoutCancel(ctx))); err != nil {
		return res, err
	}
	if got := f.Len(sinkIdemTable); got != n {
		return res, fmt.Errorf("sink: %d idempotency records, want %d", got, n)
	}
	st := s.Stats()
	wholeRun := per1000(int64(f.TotalCalls()), n)
	res.Target, res.Verdict = "<= 1100 DynamoDB calls/1000 msgs (whole run)", verdict(wholeRun <= 1100)
	res.Note += fmt.Sprintf("; per 1000 messages: %.0f PutItem (take), %.0f BatchWriteItem (items, then COMPLETE records), %.0f UpdateItem, %.0f DeleteItem",
		per1000(st.PutItemCalls, n), per1000(st.BatchWriteItemCalls, n), per1000(st.UpdateItemCalls, n), per1000(st.DeleteItemCalls, n))
	return res, nil
}

func per1000(calls int64, n int) float64 { return float64(calls) * 1000 / float64(n) }

// Sink is scenario 7: the DynamoDB sink's BatchWriteItem batching against
// one PutItem per item, with 5 ms per call on the sink package's fake.
func Sink(ctx context.Context, o Opts) ([]Result, error) {
	n := o.size(20_000, 2_000)
	batched, err := SinkRun(ctx, n, true)
	if err != nil {
		return nil, err
	}
	o.logf("sink: batched %.0f items/s, %.1f calls/1000", batched.Rate, batched.ReqPer1000)
	single, err := SinkRun(ctx, n, false)
	if err != nil {
		return []Result{batched}, err
	}
	o.logf("sink: PutItem %.0f items/s, %.1f calls/1000", single.Rate, single.ReqPer1000)
	batched.Note = fmt.Sprintf("%.2fx the items/s and %.3fx the calls of one PutItem per item; ",
		batched.Rate/single.Rate, batched.ReqPer1000/single.ReqPer1000) + batched.Note
	out := []Result{batched, single}
	idem, err := SinkIdempotentRun(ctx, n)
	if err != nil {
		return out, err
	}
	o.logf("sink: idempotent %.0f items/s, %.1f calls/1000", idem.Rate, idem.ReqPer1000)
	out = append(out, idem)
	if o.Short {
		return out, nil
	}
	d, err := SinkRun(ctx, n, true, sink.WithLinger(0))
	if err != nil {
		return out, err
	}
	d.Variant = "diagnostic: sink.DynamoDB WithLinger(0)"
	d.Note = fmt.Sprintf("%.2fx the items/s and %.3fx the calls of one PutItem per item; ", d.Rate/single.Rate, d.ReqPer1000/single.ReqPer1000) + d.Note
	o.logf("sink: batched, no linger %.0f items/s, %.1f calls/1000", d.Rate, d.ReqPer1000)
	return append(out, d), nil
}
