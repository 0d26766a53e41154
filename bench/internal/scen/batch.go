package scen

import (
	"context"
	"fmt"
	"time"

	"github.com/sqspool/sqspool"
)

// runBatchPool is runPool for sqspool.StartBatchPool: perCall is the
// handler's cost per call (a bulk write's round trip), paid once a batch.
func runBatchPool(ctx context.Context, n int, perCall time.Duration, opts ...sqspool.Option) (overheadRun, error) {
	return runStarted(ctx, n, func(c *sqspool.Consumer, p *progress) (*sqspool.Pool, error) {
		return sqspool.StartBatchPool(ctx, c, func(_ context.Context, bs []Body) error {
			if perCall > 0 {
				time.Sleep(perCall)
			}
			p.add(len(bs))
			return nil
		}, append([]sqspool.Option{sqspool.WithLogger(quiet)}, opts...)...)
	})
}

// runSinglePool is runPool with a handler that costs perCall a message.
func runSinglePool(ctx context.Context, n int, perCall time.Duration, opts ...sqspool.Option) (overheadRun, error) {
	return runStarted(ctx, n, func(c *sqspool.Consumer, p *progress) (*sqspool.Pool, error) {
		return sqspool.StartPool(ctx, c, func(context.Context, *Body) error {
			time.Sleep(perCall)
			p.add(1)
			return nil
		}, append([]sqspool.Option{sqspool.WithLogger(quiet)}, opts...)...)
	})
}

// Batch is scenario 14: the batch pool (StartBatchPool) against the
// single-message pool on preloaded queues, with a no-op handler (what
// batching costs or saves the pool itself) and with a handler whose every
// call costs 1 ms whatever it carries (a bulk write: one round trip per
// batch, one per message for the single pool). Throughput, and SQS
// requests per 1000 messages, which batching must not raise.
func Batch(ctx context.Context, o Opts) ([]Result, error) {
	n := o.size(50_000, 5_000)
	slowN := o.size(20_000, 2_000)
	type variant struct {
		name string
		msgs int
		base int // index of the row it is compared with; -1: none
		run  func() (overheadRun, error)
	}
	const perCall = time.Millisecond
	variants := []variant{
		{"single pool, no-op handler, 10 workers", n, -1, func() (overheadRun, error) { return runPool(ctx, n) }},
		{"batch pool, no-op handler, 10 workers x 10", n, 0, func() (overheadRun, error) { return runBatchPool(ctx, n, 0) }},
		{"batch pool, no-op handler, 10 workers x 50", n, 0, func() (overheadRun, error) {
			return runBatchPool(ctx, n, 0, sqspool.WithBatchSize(50))
		}},
		{"single pool, 1 ms a call, 10 workers", slowN, -1, func() (overheadRun, error) { return runSinglePool(ctx, slowN, perCall) }},
		{"batch pool, 1 ms a call, 10 workers x 10", slowN, 3, func() (overheadRun, error) { return runBatchPool(ctx, slowN, perCall) }},
		{"batch pool, 1 ms a call, 10 workers x 50", slowN, 3, func() (overheadRun, error) {
			return runBatchPool(ctx, slowN, perCall, sqspool.WithBatchSize(50))
		}},
	}
	runs := make([]overheadRun, len(variants))
	for i, v := range variants {
		r, err := v.run()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		o.logf("batch: %-45s %8.0f msgs/s %6.1f req/1000 msgs  load %s", v.name, r.rate, r.reqPer1000, LoadAvg())
		runs[i] = r
	}
	var out []Result
	for i, v := range variants {
		r := runs[i]
		res := Result{
			Scenario: "14 batch", Variant: v.name, Msgs: int64(v.msgs), Rate: r.rate, ReqPer1000: r.reqPer1000,
			AllocsPerMsg: r.allocs, BytesPerMsg: r.bytes, CPUPerMsg: r.cpu, PeakHeap: r.peakHeap, GStart: r.g0, GPeak: r.gPeak, GEnd: r.g1,
		}
		if v.base >= 0 {
			b := runs[v.base]
			res.Note = fmt.Sprintf("%.2fx the single pool's rate; %.2fx its requests/1000", r.rate/b.rate, r.reqPer1000/b.reqPer1000)
			res.Target = "req/1000 <= single pool's"
			res.Verdict = verdict(r.reqPer1000 <= b.reqPer1000*1.05)
		}
		out = append(out, res)
	}
	return out, nil
}
