package scen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"gocloud.dev/pubsub/awssnssqs"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

// Parameters of scenarios 2 and 4.
const (
	httpLatency = 10 * time.Millisecond // every SQS call, on the fake
	handlerTime = 5 * time.Millisecond
	httpWorkers = 64
)

// httpFake is an sqsfake served over loopback HTTP, with counters of the
// connections opened and of the ReceiveMessage calls running at once.
type httpFake struct {
	fake    *sqsfake.Fake
	url     string
	srv     *httptest.Server
	client  *sqs.Client
	handler http.Handler

	conns                  atomic.Int64
	receiving, maxReceives atomic.Int64
}

func (h *httpFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Amz-Target") == "AmazonSQS.ReceiveMessage" {
		n := h.receiving.Add(1)
		defer h.receiving.Add(-1)
		for {
			m := h.maxReceives.Load()
			if n <= m || h.maxReceives.CompareAndSwap(m, n) {
				break
			}
		}
	}
	h.handler.ServeHTTP(w, r)
}

// newHTTPFake preloads n messages, then turns on the latency and serves the
// fake on 127.0.0.1 with the SDK's default HTTP client.
func newHTTPFake(ctx context.Context, n int, latency time.Duration, sdkOpts ...func(*sqs.Options)) (*httpFake, error) {
	f, url, err := newPreloaded(ctx, "latency", n)
	if err != nil {
		return nil, err
	}
	return serveHTTPFake(f, url, latency, sdkOpts...)
}

// serveHTTPFake turns on the latency and serves f on 127.0.0.1 with the
// SDK's default HTTP client.
func serveHTTPFake(f *sqsfake.Fake, url string, latency time.Duration, sdkOpts ...func(*sqs.Options)) (*httpFake, error) {
	if latency > 0 {
		f.SetFaults(sqsfake.Faults{sqsfake.AllOps: {Latency: latency}})
	}
	h := &httpFake{fake: f, url: url, handler: f.Handler()}
	h.srv = httptest.NewUnstartedServer(h)
	h.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			h.conns.Add(1)
		}
	}
	h.srv.Start()
	h.client = f.NewSDKClient(h.srv.URL, sdkOpts...)
	return h, nil
}

func (h *httpFake) close() { h.srv.Close() }

// latencyRun is one consumer's measurement over the HTTP fake.
type latencyRun struct {
	measured
	conns       int64
	maxReceives int64
	calls       map[string]int
}

// cell is one setting of the HTTP scenarios: the latency of every SQS call,
// the handler's time, and the handler concurrency.
type cell struct {
	latency, handler time.Duration
	workers          int
}

// latencyCell is scenarios 2 and 4's setting.
var latencyCell = cell{latency: httpLatency, handler: handlerTime, workers: httpWorkers}

// bound is what the handlers allow: workers / handler time, in msgs/s.
func (c cell) bound() float64 { return float64(c.workers) / c.handler.Seconds() }

func runLatencyPool(ctx context.Context, n int, opts ...sqspool.Option) (latencyRun, error) {
	return runLatencyPoolSDK(ctx, n, latencyCell, nil, opts...)
}

func runLatencyPoolSDK(ctx context.Context, n int, c cell, sdkOpts []func(*sqs.Options), opts ...sqspool.Option) (latencyRun, error) {
	h, err := newHTTPFake(ctx, n, c.latency, sdkOpts...)
	if err != nil {
		return latencyRun{}, err
	}
	defer h.close()
	p := newProgress(n, sqsRequests(h.fake))
	m := startMeasuring()
	pool, err := sqspool.StartPool(ctx, &sqspool.Consumer{Client: h.client, Queue: h.url},
		func(ctx context.Context, b *Body) error { time.Sleep(c.handler); p.add(1); return nil },
		append([]sqspool.Option{sqspool.WithWorkers(c.workers), sqspool.WithLogger(quiet)}, opts...)...)
	if err != nil {
		return latencyRun{}, err
	}
	werr := p.wait(ctx, 3*time.Minute)
	serr := pool.Shutdown(ctx)
	if werr != nil || serr != nil {
		return latencyRun{}, errors.Join(werr, serr)
	}
	r := latencyRun{measured: m.stop(n, p), conns: h.conns.Load(), maxReceives: h.maxReceives.Load(), calls: h.fake.CallCounts()}
	if err := pool.Wait(); err != nil {
		return r, err
	}
	r.g1 = runtime.NumGoroutine()
	if st := h.fake.Stats(h.url); st.Deleted != int64(n) {
		return r, fmt.Errorf("sqspool over HTTP deleted %d of %d", st.Deleted, n)
	}
	return r, nil
}

// runLatencyGocloud consumes with a gocloud.dev awssnssqs subscription and
// the same handler concurrency: c.workers goroutines each Receive, run the
// handler (sleep, decode) and Ack.
func runLatencyGocloud(ctx context.Context, n int, c cell) (latencyRun, error) {
	return overHTTP(ctx, n, c, "gocloud", func(h *httpFake, p *progress) error {
		return consumeGocloud(ctx, h.client, h.url, c, p)
	})
}

// consumeGocloud consumes from url until p counts every message: a gocloud
// subscription and c.workers goroutines that each Receive, run the handler
// (sleep, decode) and Ack.
func consumeGocloud(ctx context.Context, client *sqs.Client, url string, c cell, p *progress) error {
	sub := awssnssqs.OpenSubscriptionV2(ctx, client, url, &awssnssqs.SubscriptionOptions{Raw: true, WaitTime: 20 * time.Second})
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errc := make(chan error, c.workers)
	for range c.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := sub.Receive(rctx)
				if err != nil {
					if rctx.Err() == nil {
						errc <- err
					}
					return
				}
				time.Sleep(c.handler)
				var b Body
				if err := json.Unmarshal(m.Body, &b); err != nil {
					m.Nack()
					errc <- err
					return
				}
				m.Ack()
				p.add(1)
			}
		}()
	}
	werr := p.wait(ctx, 3*time.Minute)
	select {
	case err := <-errc:
		werr = errors.Join(werr, err)
	default:
	}
	cancel()
	wg.Wait()
	if serr := sub.Shutdown(context.WithoutCancel(ctx)); serr != nil {
		werr = errors.Join(werr, fmt.Errorf("gocloud shutdown: %w", serr))
	}
	return werr
}

// overHTTP measures consume against the HTTP fake set for c, preloaded with
// n messages, and checks that it deleted every one of them.
func overHTTP(ctx context.Context, n int, c cell, name string, consume func(h *httpFake, p *progress) error) (latencyRun, error) {
	h, err := newHTTPFake(ctx, n, c.latency)
	if err != nil {
		return latencyRun{}, err
	}
	defer h.close()
	p := newProgress(n, sqsRequests(h.fake))
	m := startMeasuring()
	if err := consume(h, p); err != nil {
		return latencyRun{}, fmt.Errorf("%s: %w", name, err)
	}
	r := latencyRun{measured: m.stop(n, p), conns: h.conns.Load(), maxReceives: h.maxReceives.Load(), calls: h.fake.CallCounts()}
	r.g1 = runtime.NumGoroutine()
	if st := h.fake.Stats(h.url); st.Deleted != int64(n) {
		return r, fmt.Errorf("%s deleted %d of %d", name, st.Deleted, n)
	}
	return r, nil
}

// LatencyRun consumes n messages over the HTTP fake with sqspool, or with
// gocloud.dev, for go test benchmarks.
func LatencyRun(ctx context.Context, n int, gocloud bool) (Result, error) {
	run := func(ctx context.Context, n int) (latencyRun, error) { return runLatencyGocloud(ctx, n, latencyCell) }
	if !gocloud {
		run = func(ctx context.Context, n int) (latencyRun, error) { return runLatencyPool(ctx, n) }
	}
	r, err := run(ctx, n)
	res := r.result("bench", "bench")
	res.Msgs = int64(n)
	return res, err
}

// bestOf runs a measurement rounds times and keeps the fastest: other
// processes on the machine only ever slow a run down.
func bestOf(rounds int, run func() (latencyRun, error)) (latencyRun, error) {
	var best latencyRun
	for range rounds {
		r, err := run()
		if err != nil {
			return r, err
		}
		if r.rate > best.rate {
			best = r
		}
	}
	return best, nil
}

func (r latencyRun) result(scenario, variant string) Result {
	return Result{
		Scenario: scenario, Variant: variant, Rate: r.rate, ReqPer1000: r.reqPer1000,
		AllocsPerMsg: r.allocs, BytesPerMsg: r.bytes, CPUPerMsg: r.cpu, PeakHeap: r.peakHeap,
		GStart: r.g0, GPeak: r.gPeak, GEnd: r.g1,
	}
}

// Latency is scenario 2: the pool over HTTP (the real SDK client against
// sqsfake.Handler on loopback) with 10 ms per SQS call, a 5 ms handler and
// 64 workers, against the bound min(workers/handler time, pollers x 10 /
// receive latency).
func Latency(ctx context.Context, o Opts) ([]Result, error) {
	n := o.size(30_000, 2_000)
	r, err := bestOf(o.size(2, 1), func() (latencyRun, error) { return runLatencyPool(ctx, n) })
	if err != nil {
		return nil, err
	}
	bound := latencyCell.bound()
	// What the pool can do when a worker slot is held from the receive on:
	// each slot turns over once per receive latency plus handler time.
	slotBound := float64(httpWorkers) / (httpLatency + handlerTime).Seconds()
	res := r.result("2 latency", fmt.Sprintf("sqspool HTTP, %d workers, %v/call, %v handler", httpWorkers, httpLatency, handlerTime))
	res.Msgs = int64(n)
	res.Target = fmt.Sprintf(">= 90%% of bound %.0f/s", bound)
	res.Verdict = verdict(r.rate >= 0.9*bound)
	res.Note = fmt.Sprintf("best of %d rounds; %.0f%% of bound workers/handler (most concurrent receives seen %d); slot-held bound workers/(recv+handler)=%.0f/s; %d TCP conns opened; calls %v",
		o.size(2, 1), 100*r.rate/bound, r.maxReceives, slotBound, r.conns, r.calls)
	o.logf("latency: %.0f msgs/s (%.0f%% of bound %.0f), %.1f req/1000", r.rate, 100*r.rate/bound, bound, r.reqPer1000)
	out := []Result{res}
	if o.Short {
		return out, nil
	}
	// Diagnostics: the same pool with one knob turned, to show what holds
	// the rate down. Not targets.
	idle64 := func(o *sqs.Options) {
		o.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) { t.MaxIdleConnsPerHost = 64 })
	}
	for _, d := range []struct {
		name string
		sdk  []func(*sqs.Options)
		opts []sqspool.Option
	}{
		{"diagnostic: WithPollers(10)", nil, []sqspool.Option{sqspool.WithPollers(10)}},
		{"diagnostic: WithPollers(7), the old fixed ceil(workers/10) as the bound", nil, []sqspool.Option{sqspool.WithPollers(7)}},
		{"diagnostic: SDK HTTP client with MaxIdleConnsPerHost 64 (default 10)", []func(*sqs.Options){idle64}, nil},
	} {
		r, err := runLatencyPoolSDK(ctx, n/2, latencyCell, d.sdk, d.opts...)
		if err != nil {
			return out, fmt.Errorf("%s: %w", d.name, err)
		}
		dr := r.result("2 latency", d.name)
		dr.Msgs = int64(n / 2)
		dr.Note = fmt.Sprintf("%.0f%% of the workers/handler bound %.0f/s; most concurrent receives %d; %d TCP conns opened; calls %v", 100*r.rate/bound, bound, r.maxReceives, r.conns, r.calls)
		o.logf("latency: %s: %.0f msgs/s, %.1f req/1000", d.name, r.rate, r.reqPer1000)
		out = append(out, dr)
	}
	return out, nil
}

// SideBySide is scenario 4: the pool and a gocloud.dev awssnssqs
// subscription against the same HTTP fake setup, same latency and handler
// concurrency, in the same run.
func SideBySide(ctx context.Context, o Opts) ([]Result, error) {
	n := o.size(30_000, 2_000)
	var pr, gr latencyRun
	for round := range o.size(2, 1) {
		r, err := runLatencyPool(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("sqspool: %w", err)
		}
		o.logf("gocloud side by side, round %d: sqspool %.0f msgs/s, %.1f req/1000 (load %s)", round+1, r.rate, r.reqPer1000, LoadAvg())
		if r.rate > pr.rate {
			pr = r
		}
		r, err = runLatencyGocloud(ctx, n, latencyCell)
		if err != nil {
			return nil, fmt.Errorf("gocloud: %w", err)
		}
		o.logf("gocloud side by side, round %d: gocloud %.0f msgs/s, %.1f req/1000 (load %s)", round+1, r.rate, r.reqPer1000, LoadAvg())
		if r.rate > gr.rate {
			gr = r
		}
	}
	a := pr.result("4 vs gocloud", fmt.Sprintf("sqspool, %d workers", httpWorkers))
	a.Msgs = int64(n)
	a.Target = "rate >= gocloud, fewer req/msg"
	a.Verdict = verdict(pr.rate >= gr.rate && pr.reqPer1000 < gr.reqPer1000)
	a.Note = fmt.Sprintf("best of %d rounds each, alternating; %.2fx gocloud rate, %.2fx its requests; %d TCP conns; calls %v", o.size(2, 1), pr.rate/gr.rate, pr.reqPer1000/gr.reqPer1000, pr.conns, pr.calls)
	b := gr.result("4 vs gocloud", fmt.Sprintf("gocloud.dev awssnssqs, %d handler goroutines", httpWorkers))
	b.Msgs = int64(n)
	b.Note = fmt.Sprintf("most concurrent receives %d; %d TCP conns; calls %v", gr.maxReceives, gr.conns, gr.calls)
	return []Result{a, b}, nil
}
