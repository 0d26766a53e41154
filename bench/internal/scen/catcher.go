package scen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/catcher"
	"github.com/sqspool/sqspool/sqsfake"
)

// endpoint is a server on 127.0.0.1 and the keep-alive clients for it.
type endpoint struct {
	url    string
	client *http.Client
	tr     *http.Transport
	stop   func() error // stops the server and returns its error
}

// noopSQS answers every SendMessageBatch entry as stored and stores
// nothing: what the catcher costs without the in-process fake's work.
type noopSQS struct{ *sqsfake.Fake }

func (noopSQS) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	out := &sqs.SendMessageBatchOutput{Successful: make([]types.SendMessageBatchResultEntry, len(in.Entries))}
	for i, e := range in.Entries {
		out.Successful[i] = types.SendMessageBatchResultEntry{Id: e.Id, MessageId: aws.String("00000000-0000-4000-8000-000000000000")}
	}
	return out, nil
}

// serveCatcher serves a catcher for a new fake queue on 127.0.0.1; with
// noop, the fake only answers GetQueueAttributes (see noopSQS).
func serveCatcher(ctx context.Context, conc int, latency time.Duration, noop bool) (*endpoint, *catcher.Handler, *sqsfake.Fake, string, error) {
	f := sqsfake.New(sqsfake.WithSeed(1))
	url := f.MustCreateQueue("catcher", nil)
	if latency > 0 {
		f.SetFaults(sqsfake.Faults{sqsfake.OpSendMessageBatch: {Latency: latency}})
	}
	var c catcher.Client = f
	if noop {
		c = noopSQS{f}
	}
	h, err := catcher.New(ctx, c, url)
	if err != nil {
		return nil, nil, nil, "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, nil, "", errors.Join(err, h.Close(ctx))
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- catcher.Serve(sctx, ln, h) }()
	e := newEndpoint(ln, conc, func() error { cancel(); return <-served })
	return e, h, f, url, nil
}

// serveBare serves a bare net/http handler that reads the body and answers
// 202 at once: the ceiling of net/http plus the load generator.
func serveBare(conc int) (*endpoint, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := catcher.NewServer("", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"messageId":"00000000-0000-4000-8000-000000000000"}` + "\n"))
	}))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	return newEndpoint(ln, conc, func() error {
		err := srv.Shutdown(context.Background())
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	}), nil
}

func newEndpoint(ln net.Listener, conc int, stop func() error) *endpoint {
	tr := &http.Transport{MaxIdleConns: conc, MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, DisableCompression: true}
	return &endpoint{
		url:    "http://" + ln.Addr().String() + "/",
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		tr:     tr,
		stop:   stop,
	}
}

func (e *endpoint) close() error {
	e.tr.CloseIdleConnections()
	return e.stop()
}

// drive sends requests to e from conc keep-alive clients for d, or until
// max requests were sent when d is 0, and returns how many got 202. Any
// other answer is an error: the scenarios never overload the catcher.
func (e *endpoint) drive(ctx context.Context, conc int, d time.Duration, maxRequests int64) (int64, error) {
	body := []byte(MakeBody(1))
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	var sent, ok atomic.Int64
	var failOnce sync.Once
	var fail error
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil && sent.Add(1) <= maxRequests {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := e.client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						failOnce.Do(func() { fail = err })
					}
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					failOnce.Do(func() { fail = fmt.Errorf("answered %d", resp.StatusCode) })
					return
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return ok.Load(), fail
}

// tally sums measured slices of one variant into a row.
type tally struct {
	msgs              int64
	secs              float64
	cpu, objs, bytes  float64 // totals over msgs
	peakHeap          uint64
	gStart, gPeak     int
	calls, entries    uint64
	scenario, variant string
}

// measure runs fn (which returns the requests it got answered) with the
// row's measurements around it.
func (t *tally) measure(fn func() (int64, error)) error {
	a := startAllocs()
	s := startSampler()
	if t.gStart == 0 {
		t.gStart = runtime.NumGoroutine()
	}
	t0 := time.Now()
	n, err := fn()
	t.secs += time.Since(t0).Seconds()
	heap, g := s.end()
	t.peakHeap, t.gPeak = max(t.peakHeap, heap), max(t.gPeak, g)
	objs, bytes := a.perMsg(n)
	t.cpu += a.cpuPerMsg(n) * float64(n)
	t.objs += objs * float64(n)
	t.bytes += bytes * float64(n)
	t.msgs += n
	return err
}

func (t *tally) result() Result {
	r := Result{Scenario: t.scenario, Variant: t.variant, Msgs: t.msgs, PeakHeap: t.peakHeap, GStart: t.gStart, GPeak: t.gPeak, GEnd: runtime.NumGoroutine()}
	if t.msgs > 0 {
		n := float64(t.msgs)
		r.Rate = n / t.secs
		r.CPUPerMsg, r.AllocsPerMsg, r.BytesPerMsg = t.cpu/n, t.objs/n, t.bytes/n
	}
	if t.entries > 0 {
		r.ReqPer1000 = float64(t.calls) * 1000 / float64(t.entries)
	}
	return r
}

// catcherVsBare serves the catcher (on sqsfake, and on noopSQS) and the
// bare handler side by side and drives them in turn in short slices, so
// that whatever else loads the machine weighs on all alike. A second bare
// handler, driven the same way, measures the run's own noise. The rows come
// in that order: catcher, no-op, bare, second bare.
func catcherVsBare(ctx context.Context, conc int, warm, slice time.Duration, slices int) ([4]Result, error) {
	type variant struct {
		e *endpoint
		h *catcher.Handler // nil: bare
		t *tally
	}
	var (
		rows     [4]Result
		variants []variant
	)
	closeAll := func() error {
		errs := make([]error, len(variants))
		for i, v := range variants {
			errs[i] = v.e.close()
		}
		return errors.Join(errs...)
	}
	add := func(e *endpoint, h *catcher.Handler, name string) {
		variants = append(variants, variant{e, h, &tally{scenario: "6 catcher", variant: name}})
	}
	ce, h, f, url, err := serveCatcher(ctx, conc, 0, false)
	if err != nil {
		return rows, err
	}
	add(ce, h, "64 clients, fake 0 latency")
	ne, nh, _, _, err := serveCatcher(ctx, conc, 0, true)
	if err != nil {
		return rows, errors.Join(err, closeAll())
	}
	add(ne, nh, "diagnostic: catcher on a no-op SQS client (no fake)")
	for _, name := range []string{"diagnostic: bare net/http handler (202, no catcher)", "diagnostic: a second bare handler, the run's noise"} {
		be, err := serveBare(conc)
		if err != nil {
			return rows, errors.Join(err, closeAll())
		}
		add(be, nil, name)
	}
	var accepted int64
	run := func() error {
		for i, v := range variants {
			n, err := v.e.drive(ctx, conc, warm, 1<<62)
			if i == 0 {
				accepted += n
			}
			if err != nil {
				return err
			}
		}
		for range slices {
			for _, v := range variants {
				var st0 catcher.Stats
				if v.h != nil {
					st0 = v.h.Stats()
				}
				err := v.t.measure(func() (int64, error) { return v.e.drive(ctx, conc, slice, 1<<62) })
				if v.h != nil {
					st1 := v.h.Stats()
					v.t.calls += st1.Calls - st0.Calls
					v.t.entries += st1.Entries - st0.Entries
				}
				if err != nil {
					return err
				}
			}
		}
		return nil
	}
	err = errors.Join(run(), closeAll())
	ct := variants[0].t
	if stored := f.Stats(url).Sent; err == nil && stored < accepted+ct.msgs {
		err = fmt.Errorf("catcher: %d requests accepted, %d messages stored", accepted+ct.msgs, stored)
	}
	for i, v := range variants {
		rows[i] = v.t.result()
	}
	return rows, err
}

// catcherRun drives a catcher for a new fake with the latency on every
// SendMessageBatch, from conc clients, for warm and then window (or, with
// window 0, until maxRequests are sent), measuring after the warm-up.
func catcherRun(ctx context.Context, variant string, conc int, latency, warm, window time.Duration, maxRequests int64) (Result, error) {
	e, h, f, url, err := serveCatcher(ctx, conc, latency, false)
	if err != nil {
		return Result{}, err
	}
	t := &tally{scenario: "6 catcher", variant: variant}
	var warmed int64
	if warm > 0 {
		warmed, err = e.drive(ctx, conc, warm, maxRequests)
	}
	if err == nil {
		st0 := h.Stats()
		err = t.measure(func() (int64, error) { return e.drive(ctx, conc, window, maxRequests) })
		st1 := h.Stats()
		t.calls, t.entries = st1.Calls-st0.Calls, st1.Entries-st0.Entries
	}
	err = errors.Join(err, e.close())
	if stored := f.Stats(url).Sent; err == nil && stored < warmed+t.msgs {
		err = fmt.Errorf("catcher: %d requests accepted, %d messages stored", warmed+t.msgs, stored)
	}
	r := t.result()
	r.Note = fmt.Sprintf("%d concurrent keep-alive clients over %v; SendMessageBatch calls per 1000 requests %.1f; CPU and allocs include the load generator and the fake",
		conc, window, r.ReqPer1000)
	return r, err
}

// CatcherRun sends requests requests through the catcher with conc
// clients, for go test benchmarks.
func CatcherRun(ctx context.Context, conc int, latency time.Duration, requests int64) (Result, error) {
	return catcherRun(ctx, "bench", conc, latency, 0, 0, requests)
}

// Catcher is scenario 6: HTTP requests through the catcher into the fake,
// from a load generator in the same process on loopback. The target is the
// catcher's rate against a bare net/http handler on the same generator,
// measured in alternating slices.
func Catcher(ctx context.Context, o Opts) ([]Result, error) {
	warm := time.Duration(o.size(1000, 200)) * time.Millisecond
	window := time.Duration(o.size(6000, 1000)) * time.Millisecond
	slices := o.size(12, 2)
	slice := window / time.Duration(slices)
	rows, err := catcherVsBare(ctx, 64, warm, slice, slices)
	if err != nil {
		return nil, err
	}
	r, noop, nr, nr2 := rows[0], rows[1], rows[2], rows[3]
	ratio := r.Rate / nr.Rate
	r.Target = ">= 90% of bare net/http req/s, <= 110 calls/1000"
	r.Verdict = verdict(ratio >= 0.9 && r.ReqPer1000 <= 110)
	r.Note = fmt.Sprintf("64 concurrent keep-alive clients, %d slices of %v alternating with the bare handler: %.1f%% of its req/s; SendMessageBatch calls per 1000 requests %.1f; CPU and allocs include the load generator and the fake",
		slices, slice, 100*ratio, r.ReqPer1000)
	o.logf("catcher: %.0f req/s, %.1f calls/1000, %.1f%% of bare net/http (%.0f req/s)", r.Rate, r.ReqPer1000, 100*ratio, nr.Rate)
	ceil := func(cpu float64) float64 { return float64(runtime.NumCPU()) * 1e6 / cpu }
	nr.Note = fmt.Sprintf("net/http + this load generator alone: CPU-bound ceiling %.0f req/s on %d cores; the catcher adds %+.1f CPU µs/request, its CPU-bound ceiling is %.0f req/s (%.0f%% of bare)",
		ceil(nr.CPUPerMsg), runtime.NumCPU(), r.CPUPerMsg-nr.CPUPerMsg, ceil(r.CPUPerMsg), 100*nr.CPUPerMsg/r.CPUPerMsg)
	noop.Note = fmt.Sprintf("the same catcher, its SendMessageBatch answered at once without storing: %.1f%% of the bare handler's req/s, %+.1f CPU µs/request over it; the rest of the first row's gap is the in-process fake's work",
		100*noop.Rate/nr.Rate, noop.CPUPerMsg-nr.CPUPerMsg)
	o.logf("catcher on a no-op SQS: %.1f%% of bare net/http", 100*noop.Rate/nr.Rate)
	nr2.Note = fmt.Sprintf("the same bare handler again, alternated with the others: %.1f%% of the first; how far from 100%% this is, is how far this run's ratios can be from the truth",
		100*nr2.Rate/nr.Rate)
	o.logf("a second bare handler: %.1f%% of the first", 100*nr2.Rate/nr.Rate)
	out := []Result{r, noop, nr, nr2}
	r, err = catcherRun(ctx, "64 clients, fake 10ms/SendMessageBatch", 64, httpLatency, warm, window/2, 1<<62)
	if err != nil {
		return out, err
	}
	o.logf("catcher: %.0f req/s, %.1f calls/1000 (10ms)", r.Rate, r.ReqPer1000)
	return append(out, r), nil
}
