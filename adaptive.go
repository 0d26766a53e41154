package sqspool

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// AdaptiveConcurrency configures WithAdaptiveConcurrency. Zero fields take
// the defaults in their comments.
//
// The limit follows the downstream, Vegas-style (after Netflix's
// concurrency-limits): every Interval it estimates how many handlers are
// only waiting inside the downstream, queue = limit × (1 − baseline ÷
// latency), where latency is the handlers' mean over the interval and
// baseline the lowest mean seen (re-learned when even the minimum limit is
// slower than it, i.e. the downstream got slower for good). Below
// 3·log10(limit) waiting, the limit grows by log10(limit) (by half while
// latency is within 10% of the baseline: a slow start); above
// 6·log10(limit), it shrinks by log10(limit). A downstream whose latency starts
// to climb at K concurrent calls thus holds the limit a few above K, where
// throughput is already at its best, instead of at Max. A limit that is not
// in use, because the queue runs dry, shrinks toward what is. The limit stays
// within [Min, Max]; receives ask only for what it leaves free.
type AdaptiveConcurrency struct {
	// Min and Max bound the number of handlers running at once (defaults 1
	// and the pool's worker count).
	Min, Max int
	// Interval is how often the limit is adjusted (default 100ms). An
	// interval with fewer than three outcomes is skipped.
	Interval time.Duration
}

func (a *AdaptiveConcurrency) withDefaults(workers int) AdaptiveConcurrency {
	d := *a
	if d.Max <= 0 {
		d.Max = workers
	}
	d.Min = min(max(d.Min, 1), d.Max)
	if d.Interval <= 0 {
		d.Interval = 100 * time.Millisecond
	}
	return d
}

// limiter holds the live concurrency limit and the samples that move it.
type limiter struct {
	cfg AdaptiveConcurrency

	limit    float64 // the credits hold its rounded value
	baseline time.Duration

	// Written by workers, drained by adjust.
	latencySum atomic.Int64 // nanoseconds
	samples    atomic.Int64
	peak       atomic.Int64 // most handlers running at once this interval
}

func newLimiter(cfg AdaptiveConcurrency) *limiter {
	return &limiter{cfg: cfg, limit: float64(cfg.Min)}
}

// observe records a handler's latency and how many were running with it.
func (l *limiter) observe(d time.Duration, running int64) {
	l.latencySum.Add(int64(d))
	l.samples.Add(1)
	for {
		p := l.peak.Load()
		if running <= p || l.peak.CompareAndSwap(p, running) {
			return
		}
	}
}

// adjust computes the next limit from the interval's samples and the number
// of handlers running now. It reports false when the interval had too few
// samples to judge.
func (l *limiter) adjust(running int64) (int, bool) {
	n := l.samples.Swap(0)
	sum := l.latencySum.Swap(0)
	peak := float64(l.peak.Swap(0))
	lo, hi := float64(l.cfg.Min), float64(l.cfg.Max)
	switch {
	case n == 0 && running == 0:
		// Idle: the queue is empty. Give back concurrency slowly.
		l.limit = math.Max(lo, l.limit*0.9)
		return int(math.Round(l.limit)), true
	case n < 3:
		return int(math.Round(l.limit)), false
	}
	latency := time.Duration(sum / n)
	if l.baseline == 0 || latency < l.baseline || (l.limit <= lo && float64(latency) > 1.5*float64(l.baseline)) {
		l.baseline = latency
	}
	step := math.Max(1, math.Log10(l.limit))
	queued := l.limit * (1 - float64(l.baseline)/float64(latency))
	switch {
	case peak < 0.5*l.limit:
		// The limit is not in use (the queue runs dry): shrink toward use.
		l.limit = math.Max(peak+step, l.limit*0.9)
	case latency < l.baseline+l.baseline/10:
		// Latency has not risen: a slow start, multiplying the limit until
		// it does, reaches the knee in a few intervals instead of one step
		// at a time.
		l.limit = math.Max(l.limit*1.5, l.limit+1)
	case queued < 3*step:
		l.limit += step
	case queued > 6*step:
		l.limit -= step
	}
	l.limit = math.Min(math.Max(l.limit, lo), hi)
	return int(math.Round(l.limit)), true
}

// adapt runs the limiter until ctx ends, moving the pool's credits.
func (p *Pool) adapt(ctx context.Context) {
	for {
		t := p.cfg.clock.NewTimer(p.limiter.cfg.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		if next, ok := p.limiter.adjust(p.running.Load()); ok {
			p.setLimit(next)
		}
	}
}

// setLimit moves the number of handlers that may run at once, and the slots
// receives may fill with it. Shrinking takes effect as handlers finish.
func (p *Pool) setLimit(n int) {
	if old := p.limit.Swap(int64(n)); old != int64(n) {
		p.credits.release(n - int(old))
		p.run.release(n - int(old))
	}
}

// sizer sets the read-ahead: how many messages may be received beyond the
// handlers that can run, so that the next receive is already on its way when
// handlers free up instead of starting only then. It is the work the pool
// finishes in one receive's latency, or in readAheadHorizon if that is
// longer, plus two receives' worth, and at most one receive per poller
// running plus one (gocloud's pubsub sizes its buffer the same way, on a 2 s
// horizon). Those messages wait about that long for a worker, and the
// heartbeat keeps them invisible meanwhile (see readAheadFor).
type sizer struct {
	mu      sync.Mutex
	latency time.Duration // moving average of non-empty receives
	// transit averages the non-empty receives that took under
	// maxReceiveGrace/2, which waited little or not at all: about what a
	// response takes to come back (see Pool.endReceives).
	transit  time.Duration
	rate     float64 // messages finished a second, over the last resize
	lastAt   time.Time
	lastDone int64
}

const (
	// resizeEvery is how often the read-ahead is recomputed at most.
	resizeEvery = 100 * time.Millisecond
	// readAheadHorizon is the least work the read-ahead covers, so that a
	// pool whose receives are fast still overlaps receiving and handling.
	readAheadHorizon = 50 * time.Millisecond
)

// load returns the last measured rate (messages a second) and the receive
// latency.
func (s *sizer) load() (rate float64, latency time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rate, s.latency
}

// resize is called by pollers after each receive that brought messages.
func (p *Pool) resize(latency time.Duration) {
	s := &p.sizer
	s.mu.Lock()
	if s.latency == 0 {
		s.latency = latency
	} else {
		s.latency += (latency - s.latency) / 4
	}
	if latency < maxReceiveGrace/2 {
		if s.transit == 0 {
			s.transit = latency
		} else {
			s.transit += (latency - s.transit) / 4
		}
	}
	now := p.cfg.clock.Now()
	elapsed := now.Sub(s.lastAt)
	if elapsed < resizeEvery {
		s.mu.Unlock()
		return
	}
	c := &p.counters
	done := c.processed.Load() + c.failed.Load() + c.decodeErrors.Load()
	rate := float64(done-s.lastDone) / elapsed.Seconds()
	s.lastAt, s.lastDone, s.rate = now, done, rate
	horizon := max(s.latency, readAheadHorizon)
	// The receivers read the rate under their own lock (a poller deciding
	// whether to go), so theirs is taken only after this one is let go.
	s.mu.Unlock()
	// At most one receive for each poller running and one more, so that the
	// read-ahead follows the receive concurrency (and through it the live
	// limit) while leaving the controller room to add a poller.
	active, _ := p.recv.running()
	ceiling := min(active+1, p.cfg.pollers) * p.cfg.maxMessages
	ahead := readAheadFor(rate, horizon, p.queue.visibility, p.cfg.maxMessages, ceiling)
	// Concurrent resizes may swap in either order: each releases the
	// difference its own swap made, so the credits stay exact.
	if old := p.readAhead.Swap(ahead); old != ahead {
		p.credits.release(int(ahead - old))
	}
}
