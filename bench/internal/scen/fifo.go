package scen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

// Parameters of scenario 9: FIFO with many groups, over HTTP with the real
// SDK, defaults plus WithWorkers.
const (
	fifoGroups = 50
	// fifoBound is what G groups and W workers can do at most:
	// min(G, W) / handler time.
	fifoBound = float64(min(fifoGroups, httpWorkers)) / (float64(handlerTime) / float64(time.Second))
)

// fifoCase is one row of scenario 9: which first attempts fail or panic.
type fifoCase struct {
	name       string
	failEvery  int // the first attempt of every failEvery-th message fails (0: none)
	panicEvery int // ... and of every panicEvery-th panics (0: none)
}

// FIFO is scenario 9: a FIFO queue of 50 groups drained by 64 workers, with
// no failures, with 10 % of first attempts failing, and with 1 % panicking
// on top. It prints the rate against min(groups, workers) / handler time,
// how many groups ran at once, requests per 1000 messages, and how many
// messages had been received more than once before their first handler
// started (each such receive is one spent on them by another message's
// failure).
func FIFO(ctx context.Context, o Opts) ([]Result, error) {
	n := o.size(10000, 1000)
	limit := time.Duration(o.size(60, 15)) * time.Second
	cases := []fifoCase{
		{name: "no failures"},
		{name: "10% first attempts fail", failEvery: 10},
		{name: "10% fail + 1% panic", failEvery: 10, panicEvery: 100},
	}
	var out []Result
	var base float64
	for _, c := range cases {
		o.logf("9 fifo: %s, %d messages in %d groups", c.name, n, fifoGroups)
		r, err := runFIFO(ctx, n, limit, c)
		if err != nil {
			return out, fmt.Errorf("%s: %w", c.name, err)
		}
		res := Result{
			Scenario: "9 fifo", Variant: fmt.Sprintf("%s, %d groups, %d workers", c.name, fifoGroups, httpWorkers),
			Msgs: r.handled, Rate: r.rate, ReqPer1000: r.reqPer1000, CPUPerMsg: r.cpu,
		}
		note := fmt.Sprintf("groups running at once %.1f avg; %.0f%% of bound %.0f/s; %.0f%% received >1 before first start; order violations %d; pollers %.1f avg",
			r.groupsAtOnce, 100*r.rate/fifoBound, fifoBound, 100*r.spentBefore, r.violations, r.pollers)
		if r.timedOut {
			note += fmt.Sprintf("; did not finish in %v (%d of %d)", limit, r.handled, n)
		}
		res.Note = note
		if c.failEvery == 0 {
			base = r.rate
			res.Target = fmt.Sprintf("≥ %.0f/s (80%% of bound), ≤ 250 req/1000", 0.8*fifoBound)
			res.Verdict = verdict(!r.timedOut && r.rate >= 0.8*fifoBound && r.reqPer1000 <= 250)
		} else {
			res.Target = fmt.Sprintf("≥ %.0f/s (80%% of no-failure rate), ≤ 250 req/1000", 0.8*base)
			res.Verdict = verdict(!r.timedOut && r.rate >= 0.8*base && r.reqPer1000 <= 250)
		}
		out = append(out, res)
	}
	return out, nil
}

type fifoRun struct {
	handled      int64
	rate         float64
	reqPer1000   float64
	cpu          float64
	groupsAtOnce float64
	spentBefore  float64 // share of messages with ReceiveCount > 1 at their first start
	violations   int
	timedOut     bool
	pollers      float64 // long polls running, on average
}

// preloadFIFO sends n messages, message i to group i % groups, in order.
func preloadFIFO(ctx context.Context, f *sqsfake.Fake, url string, n int) error {
	return preloadEntries(ctx, f, url, n, func(i int) types.SendMessageBatchRequestEntry {
		return types.SendMessageBatchRequestEntry{
			MessageBody:            aws.String(MakeBody(i)),
			MessageGroupId:         aws.String("g" + strconv.Itoa(i%fifoGroups)),
			MessageDeduplicationId: aws.String(strconv.Itoa(i)),
		}
	})
}

// fifoTally is what the handler records.
type fifoTally struct {
	mu          sync.Mutex
	attempts    map[int]int
	spentBefore int
	last        [fifoGroups]int
	violations  int

	running atomic.Int64
	busy    atomic.Int64 // handler nanoseconds, summed
	done    atomic.Int64
	total   int64
	allDone chan struct{}
}

func (t *fifoTally) handle(ctx context.Context, b *Body, c fifoCase) error {
	m, _ := sqspool.MessageFrom(ctx)
	t.mu.Lock()
	t.attempts[b.ID]++
	first := t.attempts[b.ID] == 1
	if first && m != nil && m.ReceiveCount > 1 {
		t.spentBefore++
	}
	t.mu.Unlock()
	t.running.Add(1)
	began := time.Now()
	time.Sleep(handlerTime) // the handler's work
	t.busy.Add(int64(time.Since(began)))
	t.running.Add(-1)
	k := b.ID / fifoGroups // its place in its group: every group fails alike
	if first && c.panicEvery > 0 && k%c.panicEvery == 57 {
		panic("bench: first attempt panics")
	}
	if first && c.failEvery > 0 && k%c.failEvery == 3 {
		return errors.New("bench: first attempt fails")
	}
	g := b.ID % fifoGroups
	t.mu.Lock()
	if b.ID < t.last[g] {
		t.violations++
	}
	t.last[g] = b.ID
	t.mu.Unlock()
	if t.done.Add(1) == t.total {
		close(t.allDone)
	}
	return nil
}

func runFIFO(ctx context.Context, n int, limit time.Duration, c fifoCase) (fifoRun, error) {
	f := sqsfake.New(sqsfake.WithSeed(1))
	url := f.MustCreateQueue("bench.fifo", map[string]string{"FifoQueue": "true", "VisibilityTimeout": "60"})
	if err := preloadFIFO(ctx, f, url, n); err != nil {
		return fifoRun{}, err
	}
	h, err := serveHTTPFake(f, url, httpLatency)
	if err != nil {
		return fifoRun{}, err
	}
	defer h.close()
	t := &fifoTally{attempts: make(map[int]int, n), total: int64(n), allDone: make(chan struct{})}
	for i := range t.last {
		t.last[i] = -1
	}
	calls := sqsRequests(f)
	a := startAllocs()
	began := time.Now()
	pool, err := sqspool.StartPool(ctx, &sqspool.Consumer{Client: h.client, Queue: h.url},
		func(ctx context.Context, b *Body) error { return t.handle(ctx, b, c) },
		sqspool.WithWorkers(httpWorkers), sqspool.WithLogger(quiet))
	if err != nil {
		return fifoRun{}, err
	}
	var r fifoRun
	// Sampled while the run lasts: how many long polls the pool keeps.
	stopSample := make(chan struct{})
	var sampleWG sync.WaitGroup
	sampleWG.Go(func() {
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		var samples, pollers int64
		for {
			select {
			case <-stopSample:
				if samples > 0 {
					r.pollers = float64(pollers) / float64(samples)
				}
				return
			case <-tk.C:
				samples++
				pollers += pool.Stats().Pollers
			}
		}
	})
	timer := time.NewTimer(limit)
	select {
	case <-t.allDone:
	case <-timer.C:
		r.timedOut = true
	case <-ctx.Done():
	}
	timer.Stop()
	close(stopSample)
	sampleWG.Wait()
	elapsed := time.Since(began)
	req := calls()
	r.handled = t.done.Load()
	serr := pool.Shutdown(ctx)
	werr := pool.Wait()
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	if serr != nil || werr != nil {
		return r, errors.Join(serr, werr)
	}
	r.rate = float64(r.handled) / elapsed.Seconds()
	if r.handled > 0 {
		r.reqPer1000 = float64(req) * 1000 / float64(r.handled)
	}
	r.cpu = a.cpuPerMsg(r.handled)
	r.groupsAtOnce = float64(t.busy.Load()) / float64(elapsed)
	t.mu.Lock()
	r.spentBefore = float64(t.spentBefore) / float64(len(t.attempts))
	r.violations = t.violations
	t.mu.Unlock()
	return r, nil
}
