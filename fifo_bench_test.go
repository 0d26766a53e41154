package sqspool

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/sqsfake"
)

// BenchmarkFIFOVirtualTime is sqsbench's scenario 9 (50 groups of 200
// messages, 64 workers, 5 ms handler, 10 ms per SQS call) on the
// interface-level fake inside a synctest bubble, where time moves only
// while every goroutine waits: CPU costs no time, so msgs/s is what the
// pool's structure allows (receives, group locks, delete batching),
// whatever else loads the machine. The bound is min(groups, workers) /
// handler time = 10,000/s. gap-ms is the mean time a group waits between
// the end of one run here and the start of the next (a delete and a
// receive: at least the 10 ms of the delete under SQS's group lock).
// steady-%bound is the rate between the 10th and the 90th percent of the
// messages handled: the whole run's rate less the start (a GetQueueAttributes,
// and one receive per group) and the end, which a longer run would amortise.
//
//	go test -run '^$' -bench FIFOVirtualTime -benchtime 1x .
func BenchmarkFIFOVirtualTime(b *testing.B) {
	const (
		groups  = 50
		perG    = 200
		workers = 64
		handler = 5 * time.Millisecond
		latency = 10 * time.Millisecond
	)
	for b.Loop() {
		var r fifoVirtual
		synctest.Test(&testing.T{}, func(*testing.T) {
			r = fifoVirtualRun(b, groups, perG, workers, handler, latency)
		})
		b.ReportMetric(r.rate, "msgs/s")
		bound := float64(min(groups, workers)) / handler.Seconds()
		b.ReportMetric(100*r.rate/bound, "%bound")
		b.ReportMetric(100*r.steady/bound, "steady-%bound")
		b.ReportMetric(r.reqPer1000, "req/1000msgs")
		b.ReportMetric(float64(r.gap)/float64(time.Millisecond), "gap-ms")
	}
}

type fifoVirtual struct {
	rate, steady, reqPer1000 float64
	gap                      time.Duration
}

func fifoVirtualRun(b *testing.B, groups, perG, workers int, handler, latency time.Duration) fifoVirtual {
	f := sqsfake.New(sqsfake.WithSeed(1))
	url := f.MustCreateQueue("v.fifo", map[string]string{"FifoQueue": "true", "VisibilityTimeout": "60"})
	n := groups * perG
	for i := 0; i < n; i += 10 {
		entries := make([]types.SendMessageBatchRequestEntry, 10)
		for j := range entries {
			k := i + j
			entries[j] = types.SendMessageBatchRequestEntry{
				Id: &benchIDs[j], MessageBody: aws.String(benchMakeBody(k)),
				MessageGroupId: aws.String("g" + strconv.Itoa(k%groups)), MessageDeduplicationId: aws.String(strconv.Itoa(k)),
			}
		}
		if _, err := f.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries}); err != nil {
			b.Fatal(err)
		}
	}
	f.SetFaults(sqsfake.Faults{sqsfake.AllOps: {Latency: latency}})
	var (
		done    atomic.Int64
		mu      sync.Mutex
		lastEnd = make([]time.Time, groups)
		gapSum  time.Duration
		gaps    int
		at10    time.Time // when a tenth of the messages were handled
		at90    time.Time
	)
	all := make(chan struct{})
	began := time.Now()
	pool, err := StartPool(context.Background(), &Consumer{Client: f, Queue: url},
		func(_ context.Context, m *benchBody) error {
			g := m.ID % groups
			mu.Lock()
			if d := time.Since(lastEnd[g]); !lastEnd[g].IsZero() && d > time.Millisecond {
				gapSum += d
				gaps++
			}
			mu.Unlock()
			time.Sleep(handler)
			mu.Lock()
			lastEnd[g] = time.Now()
			mu.Unlock()
			switch done.Add(1) {
			case int64(n / 10):
				mu.Lock()
				at10 = time.Now()
				mu.Unlock()
			case int64(n * 9 / 10):
				mu.Lock()
				at90 = time.Now()
				mu.Unlock()
			case int64(n):
				close(all)
			}
			return nil
		}, WithWorkers(workers), WithLogger(benchQuiet))
	if err != nil {
		b.Fatal(err)
	}
	<-all
	elapsed := time.Since(began)
	reqs := pool.Stats().Requests()
	if err := pool.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return fifoVirtual{
		rate: float64(n) / elapsed.Seconds(), steady: float64(n*8/10) / at90.Sub(at10).Seconds(), reqPer1000: float64(reqs) * 1000 / float64(n),
		gap: gapSum / time.Duration(max(gaps, 1)),
	}
}
