package scen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sqspool/sqspool"
)

// downstream is what the adaptive scenario's handlers call: a server with k
// slots, each serving one call for base. Up to k calls at once its latency is
// base; beyond, calls queue for a slot and latency grows in proportion
// (about base × running/k), while throughput stays at k/base: more
// concurrency only adds latency. (Sleeping base × running/k instead would
// favour high concurrency, since time.Sleep overshoots short sleeps by a
// fixed amount.)
type downstream struct {
	base  time.Duration
	k     int64
	slots chan struct{} // capacity k; made on first use
	once  sync.Once

	running atomic.Int64
	handled atomic.Int64
	record  atomic.Bool // keep handler latencies (the measured window)

	mu  sync.Mutex
	lat []time.Duration
}

// call is the handler's work: one call to the downstream, slept for.
func (d *downstream) call() {
	began := time.Now()
	d.once.Do(func() { d.slots = make(chan struct{}, d.k) })
	d.running.Add(1)
	d.slots <- struct{}{}
	time.Sleep(d.base)
	<-d.slots
	d.running.Add(-1)
	d.handled.Add(1)
	if d.record.Load() {
		el := time.Since(began)
		d.mu.Lock()
		d.lat = append(d.lat, el)
		d.mu.Unlock()
	}
}

// adaptiveProfile is one downstream shape.
type adaptiveProfile struct {
	name string
	base time.Duration
	k    int
}

// maxRate is the downstream's best throughput, k calls per base.
func (p adaptiveProfile) maxRate() float64 { return float64(p.k) / p.base.Seconds() }

func (p adaptiveProfile) label() string {
	return fmt.Sprintf("%s: %v base, knee K=%d", p.name, p.base, p.k)
}

// adaptiveRun is one timed pool run against a downstream.
type adaptiveRun struct {
	rate       float64 // msgs/s over the measured window
	reqPer1000 float64 // SQS requests per 1000 msgs over the window
	cpu        float64 // process CPU µs/msg over the window
	p50        time.Duration
	msgs       int64 // handled in the window
	meanLimit  float64
	finalLimit int64
	// meanRunning and meanAhead are the handlers inside the downstream and
	// Stats().ReadAhead, sampled over the window like the limit.
	meanRunning, meanAhead float64
	// limits samples Stats().ConcurrencyLimit every limitEvery from the
	// start of the pool.
	limits []int64
}

// limitEvery is how often the concurrency limit is sampled.
const limitEvery = 50 * time.Millisecond

// runAdaptive preloads enough messages for the downstream's best rate over
// warm+measure (with half again to spare), runs a pool with opts for warm,
// then measures the handled rate, handler latencies and the concurrency
// limit for measure, and shuts the pool down. Messages left in the queue
// are fine; a queue that ran dry before the end is an error (the rate would
// be the queue's, not the pool's).
func runAdaptive(ctx context.Context, prof adaptiveProfile, warm, measure time.Duration, opts ...sqspool.Option) (adaptiveRun, error) {
	runtime.GC() // the last run's fake and queue are garbage now
	n := int(math.Ceil(prof.maxRate()*(warm+measure).Seconds()*1.5)) + 2_000
	n = (n + 9) / 10 * 10
	f, url, err := newPreloaded(ctx, "adaptive", n)
	if err != nil {
		return adaptiveRun{}, err
	}
	reqs := sqsRequests(f)
	d := &downstream{base: prof.base, k: int64(prof.k)}
	pool, err := sqspool.StartPool(ctx, &sqspool.Consumer{Client: f, Queue: url},
		func(context.Context, *Body) error { d.call(); return nil },
		append([]sqspool.Option{sqspool.WithLogger(quiet)}, opts...)...)
	if err != nil {
		return adaptiveRun{}, err
	}
	var r adaptiveRun
	// Sample the limit from the start, so that its climb shows.
	var limMu sync.Mutex
	var running, ahead []int64 // sampled with the limit
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(limitEvery)
		defer t.Stop()
		for {
			st := pool.Stats()
			limMu.Lock()
			r.limits = append(r.limits, st.ConcurrencyLimit)
			running = append(running, d.running.Load())
			ahead = append(ahead, st.ReadAhead)
			limMu.Unlock()
			select {
			case <-t.C:
			case <-stopSampling:
				return
			}
		}
	}()
	sleep := func(dur time.Duration) error {
		t := time.NewTimer(dur)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	werr := sleep(warm)
	limMu.Lock()
	first := len(r.limits) // the first sample of the measured window
	limMu.Unlock()
	c0, q0, cpu0, t0 := d.handled.Load(), reqs(), cpuTime(), time.Now()
	d.record.Store(true)
	if werr == nil {
		werr = sleep(measure)
	}
	d.record.Store(false)
	c1, q1, cpu1, t1 := d.handled.Load(), reqs(), cpuTime(), time.Now()
	close(stopSampling)
	<-sampled
	r.finalLimit = pool.Stats().ConcurrencyLimit
	serr := pool.Shutdown(ctx)
	if werr != nil || serr != nil {
		return r, errors.Join(werr, serr)
	}
	if err := pool.Wait(); err != nil {
		return r, err
	}
	st := pool.Stats()
	switch {
	case st.Failed != 0 || st.DecodeErrors != 0:
		return r, fmt.Errorf("%d handlers failed, %d decode errors", st.Failed, st.DecodeErrors)
	case st.Deleted != st.Processed || st.Processed != d.handled.Load():
		return r, fmt.Errorf("handled %d, processed %d, deleted %d", d.handled.Load(), st.Processed, st.Deleted)
	case st.Processed >= int64(n):
		return r, fmt.Errorf("the queue of %d messages ran dry: the rate would be the queue's", n)
	}
	r.msgs = c1 - c0
	if r.msgs <= 0 {
		return r, fmt.Errorf("no message handled in the %v window", measure)
	}
	r.rate = float64(r.msgs) / t1.Sub(t0).Seconds()
	r.reqPer1000 = float64(q1-q0) * 1000 / float64(r.msgs)
	r.cpu = float64(cpu1-cpu0) / float64(time.Microsecond) / float64(r.msgs)
	mean := func(xs []int64) float64 {
		xs = xs[min(first, len(xs)-1):]
		var sum float64
		for _, x := range xs {
			sum += float64(x)
		}
		return sum / float64(len(xs))
	}
	r.meanLimit, r.meanRunning, r.meanAhead = mean(r.limits), mean(running), mean(ahead)
	d.mu.Lock()
	r.p50 = percentile(d.lat, 50)
	d.mu.Unlock()
	return r, nil
}

// limitAt is the sampled limit at time t after the start.
func (r adaptiveRun) limitAt(t time.Duration) int64 {
	if len(r.limits) == 0 {
		return 0
	}
	return r.limits[min(int(t/limitEvery), len(r.limits)-1)]
}

// reached is when the sampled limit first reached k (false: never).
func (r adaptiveRun) reached(k int) (time.Duration, bool) {
	for i, l := range r.limits {
		if l >= int64(k) {
			return time.Duration(i) * limitEvery, true
		}
	}
	return 0, false
}

// Adaptive is scenario 8: WithAdaptiveConcurrency{Min: 1, Max: 128} against
// the best of a sweep of fixed worker counts and against the default (10
// workers), on the interface-level fake with zero latency, with handlers
// calling a downstream whose latency is base up to K calls at once and
// grows in proportion beyond (two profiles: 2 ms/K=8 and 5 ms/K=32). The
// downstream's throughput is flat at K/base from K calls on, so the best
// fixed count is any count >= K, and a good adaptive limit settles a few
// above K, not at Max. Each run is timed: the fixed ones are measured after
// a short warm-up, the adaptive ones after a longer one, so that the limit
// (adjusted every 250 ms) has climbed; rates are over the measured window.
// Every row also shows how many handlers were inside the downstream (and
// the pool's read-ahead), sampled like the limit: the concurrency the
// downstream saw, whatever the limit said. A diagnostic adaptive run with
// one poller receiving one message at a time keeps the read-ahead at most
// 1, so that the limit alone bounds the handlers.
func Adaptive(ctx context.Context, o Opts) ([]Result, error) {
	profiles := []adaptiveProfile{{"a", 2 * time.Millisecond, 8}, {"b", 5 * time.Millisecond, 32}}
	if o.Short {
		profiles = profiles[:1]
	}
	sweep := []int{4, 8, 16, 32, 64, 128}
	fixedWarm, fixedMeasure := 250*time.Millisecond, 2*time.Second
	adaptWarm, adaptMeasure := time.Second, 3*time.Second
	if o.Short {
		fixedWarm, fixedMeasure = 100*time.Millisecond, 400*time.Millisecond
		adaptWarm, adaptMeasure = time.Second, time.Second
	}
	const (
		sc       = "8 adaptive"
		maxLimit = 128
	)
	seen := func(r adaptiveRun) string {
		return fmt.Sprintf("handler p50 %s; handlers running mean %.1f, read-ahead mean %.1f", ms(r.p50), r.meanRunning, r.meanAhead)
	}
	var out []Result
	for _, prof := range profiles {
		// The fixed sweep: report the best count.
		var best adaptiveRun
		bestW := 0
		var swept []string
		for _, w := range sweep {
			r, err := runAdaptive(ctx, prof, fixedWarm, fixedMeasure, sqspool.WithWorkers(w))
			if err != nil {
				return out, fmt.Errorf("%s, %d workers: %w", prof.label(), w, err)
			}
			o.logf("adaptive %s: fixed %3d workers: %6.0f msgs/s, %s  load %s", prof.label(), w, r.rate, seen(r), LoadAvg())
			swept = append(swept, fmt.Sprintf("%d:%.0f", w, r.rate))
			if r.rate > best.rate {
				best, bestW = r, w
			}
		}
		out = append(out, Result{
			Scenario: sc, Variant: fmt.Sprintf("%s; best fixed: %d workers", prof.label(), bestW),
			Msgs: best.msgs, Rate: best.rate, ReqPer1000: best.reqPer1000, CPUPerMsg: best.cpu,
			Note: fmt.Sprintf("sweep workers:msgs/s %s; %s; downstream max %.0f msgs/s (K/base); each fixed run %v after %v warm-up",
				strings.Join(swept, " "), seen(best), prof.maxRate(), fixedMeasure, fixedWarm),
		})

		def, err := runAdaptive(ctx, prof, fixedWarm, fixedMeasure)
		if err != nil {
			return out, fmt.Errorf("%s, defaults: %w", prof.label(), err)
		}
		o.logf("adaptive %s: defaults (10 workers): %6.0f msgs/s, %s  load %s", prof.label(), def.rate, seen(def), LoadAvg())
		out = append(out, Result{
			Scenario: sc, Variant: fmt.Sprintf("%s; default fixed (10 workers)", prof.label()),
			Msgs: def.msgs, Rate: def.rate, ReqPer1000: def.reqPer1000, CPUPerMsg: def.cpu,
			Note: fmt.Sprintf("%.2fx best fixed; %s", def.rate/best.rate, seen(def)),
		})

		adaptive := func(variant string, target bool, opts ...sqspool.Option) error {
			opts = append(opts, sqspool.WithAdaptiveConcurrency(sqspool.AdaptiveConcurrency{Min: 1, Max: maxLimit}))
			ad, err := runAdaptive(ctx, prof, adaptWarm, adaptMeasure, opts...)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", prof.label(), variant, err)
			}
			var traj []string
			for t := 500 * time.Millisecond; t <= adaptWarm+adaptMeasure; t += 500 * time.Millisecond {
				traj = append(traj, fmt.Sprintf("%gs:%d", t.Seconds(), ad.limitAt(t)))
			}
			reach := "never reached K"
			if at, ok := ad.reached(prof.k); ok {
				reach = fmt.Sprintf("first reached K at %.2fs", at.Seconds())
			}
			o.logf("adaptive %s: %s: %6.0f msgs/s, limit mean %.1f final %d, %s; limit %s  load %s",
				prof.label(), variant, ad.rate, ad.meanLimit, ad.finalLimit, seen(ad), strings.Join(traj, " "), LoadAvg())
			res := Result{
				Scenario: sc, Variant: fmt.Sprintf("%s; %s", prof.label(), variant),
				Msgs: ad.msgs, Rate: ad.rate, ReqPer1000: ad.reqPer1000, CPUPerMsg: ad.cpu,
				Note: fmt.Sprintf("%.2fx best fixed; limit mean %.1f, final %d over the %v after a %v warm-up (should settle near K=%d, not at Max %d); limit at %s (%s); %s (best fixed p50 %s)",
					ad.rate/best.rate, ad.meanLimit, ad.finalLimit, adaptMeasure, adaptWarm, prof.k, maxLimit,
					strings.Join(traj, " "), reach, seen(ad), ms(best.p50)),
			}
			if ad.meanRunning > 1.5*ad.meanLimit+2 {
				// The downstream saw far more handlers than the limit allows.
				res.Note = fmt.Sprintf("LIMIT NOT ENFORCED: %.1f handlers running on average under a limit of %.1f (read-ahead %.1f, %d workers); ",
					ad.meanRunning, ad.meanLimit, ad.meanAhead, maxLimit) + res.Note
			}
			if target {
				res.Target = "within 10% of best fixed"
				res.Verdict = verdict(ad.rate >= 0.9*best.rate)
			}
			out = append(out, res)
			return nil
		}
		if err := adaptive(fmt.Sprintf("adaptive Min 1, Max %d", maxLimit), true); err != nil {
			return out, err
		}
		if err := adaptive(fmt.Sprintf("diagnostic: adaptive Min 1, Max %d, 1 poller, max messages 1 (read-ahead <= 1)", maxLimit), false,
			sqspool.WithPollers(1), sqspool.WithMaxMessages(1)); err != nil {
			return out, err
		}
	}
	return out, nil
}
