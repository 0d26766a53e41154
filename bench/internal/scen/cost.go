package scen

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sqsfake"
)

// deleteFill records the entries of every DeleteMessageBatch call a fake
// serves, through the fake's hook.
type deleteFill struct {
	hist [11]atomic.Int64
}

func (d *deleteFill) hook(api string, in any) error {
	if del, ok := in.(*sqs.DeleteMessageBatchInput); ok && api == sqsfake.OpDeleteMessageBatch {
		d.hist[min(len(del.Entries), 10)].Add(1)
	}
	return nil
}

// avg returns the mean entries per call and the share of full calls.
func (d *deleteFill) avg() (mean, full float64) {
	var calls, entries int64
	for i := range d.hist {
		c := d.hist[i].Load()
		calls += c
		entries += c * int64(i)
	}
	if calls == 0 {
		return 0, 0
	}
	return float64(entries) / float64(calls), float64(d.hist[10].Load()) / float64(calls)
}

// countingClient wraps the fake to count the ReceiveMessage calls running
// now and at most.
type countingClient struct {
	*sqsfake.Fake
	active, most atomic.Int64
}

func (c *countingClient) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	n := c.active.Add(1)
	defer c.active.Add(-1)
	for {
		m := c.most.Load()
		if n <= m || c.most.CompareAndSwap(m, n) {
			break
		}
	}
	return c.Fake.ReceiveMessage(ctx, in, optFns...)
}

// steadyCost runs n preloaded messages through a pool and reports SQS
// requests per 1000 messages over the steady window, the receive and
// delete batch fill.
func steadyCost(ctx context.Context, variant string, n int, latency, handler time.Duration, opts ...sqspool.Option) (Result, error) {
	f, url, err := newPreloaded(ctx, "cost", n)
	if err != nil {
		return Result{}, err
	}
	var fill deleteFill
	f.SetHook(fill.hook)
	if latency > 0 {
		f.SetFaults(sqsfake.Faults{sqsfake.AllOps: {Latency: latency}})
	}
	p := newProgress(n, sqsRequests(f))
	a := startAllocs()
	s := startSampler()
	g0 := runtime.NumGoroutine()
	pool, err := sqspool.StartPool(ctx, &sqspool.Consumer{Client: f, Queue: url},
		func(ctx context.Context, b *Body) error {
			if handler > 0 {
				time.Sleep(handler)
			}
			p.add(1)
			return nil
		}, append([]sqspool.Option{sqspool.WithLogger(quiet)}, opts...)...)
	if err != nil {
		return Result{}, err
	}
	werr := p.wait(ctx, 3*time.Minute)
	serr := pool.Shutdown(ctx)
	if werr != nil || serr != nil {
		return Result{}, errors.Join(werr, serr)
	}
	res := Result{Scenario: "3 cost", Variant: variant, Msgs: int64(n), GStart: g0}
	res.CPUPerMsg = a.cpuPerMsg(int64(n))
	res.AllocsPerMsg, res.BytesPerMsg = a.perMsg(int64(n))
	res.PeakHeap, res.GPeak = s.end()
	res.Rate, res.ReqPer1000 = p.window()
	if err := pool.Wait(); err != nil {
		return res, err
	}
	res.GEnd = runtime.NumGoroutine()
	st := pool.Stats()
	if st.Deleted != int64(n) {
		return res, fmt.Errorf("%s: deleted %d of %d", variant, st.Deleted, n)
	}
	mean, full := fill.avg()
	recvFill := float64(st.Received) / float64(st.Calls["ReceiveMessage"])
	whole := float64(st.Requests()) * 1000 / float64(n)
	res.Target = "<= 210 req/1000 msgs"
	res.Verdict = verdict(res.ReqPer1000 <= 210)
	res.Note = fmt.Sprintf("delete fill %.2f/call (%.0f%% full), receive fill %.2f/call; whole run incl. start/drain %.1f req/1000; %d empty receives; calls %v",
		mean, 100*full, recvFill, whole, st.EmptyReceives, st.Calls)
	return res, nil
}

// emptyQueueCost counts the pool's ReceiveMessage calls over simulated
// minutes of a manual clock on an empty queue.
func emptyQueueCost(ctx context.Context, workers, minutes int) (Result, error) {
	clk := clock.NewManual(time.Now())
	f := sqsfake.New(clock.Option[sqsfake.Option](clk), sqsfake.WithSeed(1))
	url := f.MustCreateQueue("empty", map[string]string{"VisibilityTimeout": "60"})
	c := &countingClient{Fake: f}
	pool, err := sqspool.StartPool(ctx, &sqspool.Consumer{Client: c, Queue: url},
		func(context.Context, *Body) error { return nil },
		sqspool.WithWorkers(workers), clock.Option[sqspool.Option](clk), sqspool.WithLogger(quiet))
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = pool.Shutdown(ctx); _ = pool.Wait() }()
	// At rest every poller waits on exactly one timer of the clock: its
	// long poll, or, for a poller that found fewer than 10 free slots, the
	// receive fill before it polls with what it has; the pool may hold
	// timers of its own (the heartbeat). settle waits until the clock holds
	// as many timers as at rest, so that no simulated time passes while a
	// poller is between two waits.
	waitFor := func(cond func() bool, what string) error {
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				return fmt.Errorf("empty queue: %s: %d receives active, %d timers", what, c.active.Load(), clk.Timers())
			}
			time.Sleep(50 * time.Microsecond)
		}
		return nil
	}
	// Calibrate: let any receive fill run out, wait for every poller to be
	// in a long poll, then count the timers at rest.
	time.Sleep(100 * time.Millisecond)
	clk.Advance(100 * time.Millisecond)
	if err := waitFor(func() bool { return c.active.Load() >= 1 }, "no poller started a long poll"); err != nil {
		return Result{}, err
	}
	time.Sleep(100 * time.Millisecond) // let every other poller and timer be armed
	pollers := c.active.Load()
	rest := clk.Timers()
	settle := func() error {
		return waitFor(func() bool { return clk.Timers() >= rest }, fmt.Sprintf("timers did not return to %d", rest))
	}
	calls0 := f.Calls(sqsfake.OpReceiveMessage)
	for range minutes * 60 {
		clk.Advance(time.Second)
		if err := settle(); err != nil {
			return Result{}, err
		}
	}
	calls := f.Calls(sqsfake.OpReceiveMessage) - calls0
	perPool := float64(calls) / float64(minutes)
	return Result{
		Scenario: "3 cost", Variant: fmt.Sprintf("empty queue, long polling, %d workers", workers),
		Target: "<= 3 req/min for the pool", Verdict: verdict(perPool <= 3),
		Note: fmt.Sprintf("%.2f ReceiveMessage/min for the whole pool over %d simulated minutes (manual clock); %d pollers (most concurrent receives %d); %d timers at rest",
			perPool, minutes, pollers, c.most.Load(), rest),
	}, nil
}

// lightLoadLatency sends one message every gap and measures how long after
// its handler returned each message's DeleteMessageBatch call was made.
func lightLoadLatency(ctx context.Context, msgs int, gap time.Duration) (Result, error) {
	f := sqsfake.New(sqsfake.WithSeed(1))
	url := f.MustCreateQueue("light", map[string]string{"VisibilityTimeout": "60"})
	var lastDone atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var entries, calls int
	f.SetHook(func(api string, in any) error {
		if api != sqsfake.OpDeleteMessageBatch {
			return nil
		}
		d := time.Duration(time.Now().UnixNano() - lastDone.Load())
		mu.Lock()
		lat = append(lat, d)
		entries += len(in.(*sqs.DeleteMessageBatchInput).Entries)
		calls++
		mu.Unlock()
		return nil
	})
	handled := make(chan struct{}, msgs)
	pool, err := sqspool.StartPool(ctx, &sqspool.Consumer{Client: f, Queue: url},
		func(context.Context, *Body) error {
			lastDone.Store(time.Now().UnixNano())
			handled <- struct{}{}
			return nil
		}, sqspool.WithLogger(quiet))
	if err != nil {
		return Result{}, err
	}
	for i := range msgs {
		f.MustSend(url, MakeBody(i))
		select {
		case <-handled:
		case <-time.After(5 * time.Second):
			_ = pool.Shutdown(ctx)
			return Result{}, fmt.Errorf("light load: message %d not handled within 5s", i)
		}
		time.Sleep(gap)
	}
	if err := pool.Shutdown(ctx); err != nil {
		return Result{}, err
	}
	if err := pool.Wait(); err != nil {
		return Result{}, err
	}
	if st := f.Stats(url); st.Deleted != int64(msgs) {
		return Result{}, fmt.Errorf("light load: deleted %d of %d", st.Deleted, msgs)
	}
	mu.Lock()
	defer mu.Unlock()
	linger := 20 * time.Millisecond // the pool's default delete linger
	p50, p99, worst := percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
	return Result{
		Scenario: "3 cost", Variant: fmt.Sprintf("light load: 1 msg every %v, defaults", gap), Msgs: int64(msgs),
		Target:  fmt.Sprintf("p99 delete within linger %v (+5ms timer slack)", linger),
		Verdict: verdict(p99 <= linger+5*time.Millisecond),
		Note: fmt.Sprintf("handler return -> DeleteMessageBatch: p50 %s, p99 %s, max %s; %.2f entries/call over %d calls",
			ms(p50), ms(p99), ms(worst), float64(entries)/float64(max(calls, 1)), calls),
	}, nil
}

// Cost is scenario 3: SQS requests per 1000 messages under steady load,
// requests per minute per poller on an empty queue, delete batch fill under
// load and delete latency under light load.
func Cost(ctx context.Context, o Opts) ([]Result, error) {
	var out []Result
	r, err := steadyCost(ctx, "steady load, defaults (10 workers), no-op handler, 0 latency", o.size(100_000, 10_000), 0, 0)
	if err != nil {
		return out, err
	}
	out = append(out, r)
	o.logf("cost: %s: %.1f req/1000", r.Variant, r.ReqPer1000)
	r, err = steadyCost(ctx, "steady load, 64 workers, 5ms handler, 10ms/call", o.size(20_000, 2_000), httpLatency, handlerTime, sqspool.WithWorkers(64))
	if err != nil {
		return out, err
	}
	out = append(out, r)
	o.logf("cost: %s: %.1f req/1000", r.Variant, r.ReqPer1000)
	r, err = steadyCost(ctx, "steady load, 64 workers, no-op handler, 0 latency", o.size(100_000, 10_000), 0, 0, sqspool.WithWorkers(64))
	if err != nil {
		return out, err
	}
	out = append(out, r)
	o.logf("cost: %s: %.1f req/1000", r.Variant, r.ReqPer1000)
	for _, w := range []int{10, 64} {
		r, err := emptyQueueCost(ctx, w, o.size(5, 1))
		if err != nil {
			return out, err
		}
		out = append(out, r)
		o.logf("cost: %s: %s", r.Variant, r.Note)
	}
	r, err = lightLoadLatency(ctx, o.size(100, 20), 30*time.Millisecond)
	if err != nil {
		return out, err
	}
	o.logf("cost: %s: %s", r.Variant, r.Note)
	return append(out, r), nil
}
