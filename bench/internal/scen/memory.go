package scen

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

// feed keeps the queue topped up: it sends batches of 10 while fewer than
// backlog sent messages are unhandled, until total are sent or ctx ends.
func feed(ctx context.Context, f *sqsfake.Fake, url string, total, backlog int, handled *atomic.Int64) error {
	ids := [10]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	for sent := 0; sent < total; {
		if err := ctx.Err(); err != nil {
			return err
		}
		if int64(sent)-handled.Load() >= int64(backlog) {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		k := min(10, total-sent)
		entries := make([]types.SendMessageBatchRequestEntry, k)
		for j := range k {
			entries[j] = types.SendMessageBatchRequestEntry{Id: &ids[j], MessageBody: aws.String(MakeBody(sent + j))}
		}
		if _, err := f.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries}); err != nil {
			return err
		}
		sent += k
	}
	return nil
}

// Memory is scenario 5: a million messages through 64 workers on the
// interface fake with zero latency, while a feeder keeps at most 2,000
// queued (enough for 7 pollers x 10, few enough that the fake's backlog
// does not hide the pool's heap). Live heap (after a GC) and goroutines
// are read when 10%, 50% and 100% of the messages are handled; the peak
// is sampled throughout.
func Memory(ctx context.Context, o Opts) ([]Result, error) {
	n := o.size(1_000_000, 50_000)
	const backlog = 2_000
	f := sqsfake.New(sqsfake.WithSeed(1))
	url := f.MustCreateQueue("memory", map[string]string{"VisibilityTimeout": "60"})
	var handled atomic.Int64
	tenth, half, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	feedErr := make(chan error, 1)
	go func() { feedErr <- feed(ctx, f, url, n, backlog, &handled) }()

	gBefore := runtime.NumGoroutine()
	heapBefore := liveHeap()
	a := startAllocs()
	s := startSampler()
	began := time.Now()
	pool, err := sqspool.StartPool(ctx, &sqspool.Consumer{Client: f, Queue: url},
		func(context.Context, *Body) error {
			switch handled.Add(1) {
			case int64(n / 10):
				close(tenth)
			case int64(n / 2):
				close(half)
			case int64(n):
				close(done)
			}
			return nil
		}, sqspool.WithWorkers(64), sqspool.WithLogger(quiet))
	if err != nil {
		return nil, err
	}
	wait := func(ch chan struct{}) error {
		select {
		case <-ch:
			return nil
		case err := <-feedErr:
			if err == nil {
				select {
				case <-ch:
					return nil
				case <-time.After(3 * time.Minute):
					return fmt.Errorf("memory: %d of %d handled after the feeder finished", handled.Load(), n)
				}
			}
			return fmt.Errorf("memory: feeder: %w", err)
		case <-time.After(4 * time.Minute):
			return fmt.Errorf("memory: timed out with %d of %d handled", handled.Load(), n)
		}
	}
	var errs []error
	var heap0, heap50, heap1 uint64
	var g0, g50, g1 int
	var t0 time.Time
	if err := wait(tenth); err != nil {
		errs = append(errs, err)
	} else {
		t0 = time.Now()
		heap0, g0 = liveHeap(), runtime.NumGoroutine()
		o.logf("memory: 10%%: live heap %s, %d goroutines", mib(heap0), g0)
		if err := wait(half); err != nil {
			errs = append(errs, err)
		} else {
			heap50, g50 = liveHeap(), runtime.NumGoroutine()
			o.logf("memory: 50%%: live heap %s, %d goroutines", mib(heap50), g50)
			if err := wait(done); err != nil {
				errs = append(errs, err)
			}
		}
	}
	t1 := time.Now()
	heap1, g1 = liveHeap(), runtime.NumGoroutine()
	if err := pool.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := pool.Wait(); err != nil {
		errs = append(errs, err)
	}
	cancel()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	res := Result{Scenario: "5 memory", Variant: fmt.Sprintf("%d msgs, 64 workers, feeder keeps <= %d queued", n, backlog), Msgs: int64(n)}
	res.CPUPerMsg = a.cpuPerMsg(int64(n))
	res.AllocsPerMsg, res.BytesPerMsg = a.perMsg(int64(n))
	res.PeakHeap, res.GPeak = s.end()
	res.Rate = float64(n-n/10) / t1.Sub(t0).Seconds()
	res.GStart, res.GEnd = g0, g1
	gAfter := runtime.NumGoroutine()
	heapAfter := liveHeap()
	st := pool.Stats()
	if st.Deleted != int64(n) {
		return []Result{res}, fmt.Errorf("memory: deleted %d of %d", st.Deleted, n)
	}
	res.ReqPer1000 = float64(st.Requests()) * 1000 / float64(n)
	// Flat: the live heap at the end within 25% (plus 2 MiB) of the start,
	// and no goroutine more.
	flat := float64(heap1) <= 1.25*float64(heap0)+2<<20 && g1 <= g0
	res.Target = "live heap and goroutines flat"
	res.Verdict = verdict(flat)
	res.Note = fmt.Sprintf("live heap at 10%%/50%%/100%%: %s/%s/%s (before start %s, after stop %s); goroutines 10%%/50%%/100%% %d/%d/%d (before %d, after stop %d); %.0fs",
		mib(heap0), mib(heap50), mib(heap1), mib(heapBefore), mib(heapAfter), g0, g50, g1, gBefore, gAfter, time.Since(began).Seconds())
	return []Result{res}, nil
}
