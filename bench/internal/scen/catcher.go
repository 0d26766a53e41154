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

	"github.com/sqspool/sqspool/catcher"
	"github.com/sqspool/sqspool/sqsfake"
)

// catcherRun drives a catcher served on 127.0.0.1 with conc keep-alive
// clients for warm+window, counting over the window.
// With null set, the server is a bare net/http handler that reads the body
// and answers 202 at once: the ceiling of net/http plus the load generator
// on this machine.
func catcherRun(ctx context.Context, variant string, conc int, latency, warm, window time.Duration, maxRequests int64, null bool) (Result, error) {
	f := sqsfake.New(sqsfake.WithSeed(1))
	url := f.MustCreateQueue("catcher", nil)
	if latency > 0 {
		f.SetFaults(sqsfake.Faults{sqsfake.OpSendMessageBatch: {Latency: latency}})
	}
	h, err := catcher.New(ctx, f, url)
	if err != nil {
		return Result{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Result{}, err
	}
	sctx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	if null {
		srv := catcher.NewServer("", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"messageId":"00000000-0000-4000-8000-000000000000"}` + "\n"))
		}))
		go func() {
			err := srv.Serve(ln)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			served <- err
		}()
		go func() { <-sctx.Done(); _ = srv.Shutdown(context.Background()) }()
	} else {
		go func() { served <- catcher.Serve(sctx, ln, h) }()
	}

	tr := &http.Transport{MaxIdleConns: conc, MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	endpoint := "http://" + ln.Addr().String() + "/"
	body := []byte(MakeBody(1))

	var sent, ok atomic.Int64
	var failMu sync.Mutex
	var firstFail error
	fail := func(err error) {
		failMu.Lock()
		if firstFail == nil {
			firstFail = err
		}
		failMu.Unlock()
	}
	lctx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lctx.Err() == nil && sent.Add(1) <= maxRequests {
				req, _ := http.NewRequestWithContext(lctx, http.MethodPost, endpoint, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					if lctx.Err() == nil {
						fail(err)
					}
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					fail(fmt.Errorf("catcher answered %d", resp.StatusCode))
					return
				}
				ok.Add(1)
			}
		}()
	}
	time.Sleep(warm)
	st0, n0, t0 := h.Stats(), ok.Load(), time.Now()
	a := startAllocs()
	s := startSampler()
	g0 := runtime.NumGoroutine()
	if window > 0 {
		time.Sleep(window)
	} else {
		wg.Wait() // until maxRequests are sent
	}
	st1, n1, t1 := h.Stats(), ok.Load(), time.Now()
	res := Result{Scenario: "6 catcher", Variant: variant, Msgs: n1 - n0, GStart: g0}
	res.CPUPerMsg = a.cpuPerMsg(n1 - n0)
	res.AllocsPerMsg, res.BytesPerMsg = a.perMsg(n1 - n0)
	res.PeakHeap, res.GPeak = s.end()
	res.GEnd = runtime.NumGoroutine()
	stopLoad()
	wg.Wait()
	tr.CloseIdleConnections()
	stopServer()
	serr := <-served
	var errs []error
	if firstFail != nil {
		errs = append(errs, firstFail)
	}
	if serr != nil {
		errs = append(errs, fmt.Errorf("serve: %w", serr))
	}
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	if stored := f.Stats(url).Sent; !null && stored < ok.Load() {
		return res, fmt.Errorf("catcher: %d requests accepted, %d messages stored", ok.Load(), stored)
	}
	res.Rate = float64(n1-n0) / t1.Sub(t0).Seconds()
	entries := st1.Entries - st0.Entries
	if entries > 0 {
		res.ReqPer1000 = float64(st1.Calls-st0.Calls) * 1000 / float64(entries)
	}
	res.Note = fmt.Sprintf("%d concurrent keep-alive clients over %v; SendMessageBatch calls per 1000 requests %.1f; CPU and allocs include the load generator and the fake",
		conc, window, res.ReqPer1000)
	return res, nil
}

// CatcherRun sends requests requests through the catcher with conc
// clients, for go test benchmarks.
func CatcherRun(ctx context.Context, conc int, latency time.Duration, requests int64) (Result, error) {
	return catcherRun(ctx, "bench", conc, latency, 0, 0, requests, false)
}

// Catcher is scenario 6: HTTP requests through the catcher into the fake,
// from a load generator in the same process on loopback.
func Catcher(ctx context.Context, o Opts) ([]Result, error) {
	warm := time.Duration(o.size(1000, 200)) * time.Millisecond
	window := time.Duration(o.size(5000, 1000)) * time.Millisecond
	r, err := catcherRun(ctx, "64 clients, fake 0 latency", 64, 0, warm, window, 10_000_000, false)
	if err != nil {
		return nil, err
	}
	r.Target = ">= 20000 req/s, <= 110 calls/1000"
	r.Verdict = verdict(r.Rate >= 20000 && r.ReqPer1000 <= 110)
	o.logf("catcher: %.0f req/s, %.1f calls/1000", r.Rate, r.ReqPer1000)
	out := []Result{r}
	nr, err := catcherRun(ctx, "diagnostic: bare net/http handler (202, no catcher)", 64, 0, warm, window/2, 10_000_000, true)
	if err != nil {
		return out, err
	}
	nr.ReqPer1000 = 0
	ceil := func(cpu float64) float64 { return float64(runtime.NumCPU()) * 1e6 / cpu }
	nr.Note = fmt.Sprintf("net/http + this load generator alone: CPU-bound ceiling %.0f req/s on %d cores; the catcher adds %+.1f CPU µs/request, its CPU-bound ceiling is %.0f req/s (%.0f%% of bare)",
		ceil(nr.CPUPerMsg), runtime.NumCPU(), r.CPUPerMsg-nr.CPUPerMsg, ceil(r.CPUPerMsg), 100*nr.CPUPerMsg/r.CPUPerMsg)
	o.logf("catcher: bare net/http %.0f req/s", nr.Rate)
	out = append(out, nr)
	r, err = catcherRun(ctx, "64 clients, fake 10ms/SendMessageBatch", 64, httpLatency, warm, window/2, 10_000_000, false)
	if err != nil {
		return out, err
	}
	o.logf("catcher: %.0f req/s, %.1f calls/1000 (10ms)", r.Rate, r.ReqPer1000)
	return append(out, r), nil
}
