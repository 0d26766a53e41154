package sqspool

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sqspool/sqspool/internal/clock"
)

// BreakerState is the state of a pool's circuit breaker.
type BreakerState int32

const (
	// BreakerClosed lets messages flow.
	BreakerClosed BreakerState = iota
	// BreakerOpen receives nothing: the downstream is failing.
	BreakerOpen
	// BreakerHalfOpen lets a few probe messages test whether it recovered.
	BreakerHalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	default:
		return "closed"
	}
}

// CircuitBreaker configures the breaker set with WithCircuitBreaker. Zero
// fields take the defaults in their comments.
//
// When the downstream a handler writes to is down, a plain consumer keeps
// receiving, fails every message, burns receive counts and pushes good
// messages into the dead-letter queue. With the breaker, once the failure
// ratio over Window passes FailureRatio, the pool stops receiving, gives back
// messages it received but has not started (visibility 0; not counted as
// failures), and lets running handlers finish. After CoolDown it lets Probes
// messages through: if they succeed it closes, if one fails it opens again.
// A probe that reaches no handler (an undecodable body, a duplicate, a
// message given back) makes room for another; a handler that started before
// the breaker opened is no probe, and its outcome is ignored.
type CircuitBreaker struct {
	// Window is the sliding window over which outcomes count (default 30s).
	Window time.Duration
	// MinRequests is how many outcomes the window needs before it can open
	// the breaker (default 20).
	MinRequests int
	// FailureRatio opens the breaker when failures/outcomes reaches it
	// (default 0.5).
	FailureRatio float64
	// CoolDown is how long the breaker stays open (default 30s).
	CoolDown time.Duration
	// Probes is how many messages half-open lets through (default 3).
	Probes int
	// IsFailure says which handler errors count against the downstream
	// (default: every error but ErrNoRetry; undecodable bodies never count,
	// they are the message's fault).
	IsFailure func(error) bool
	// OnStateChange, if set, is called on every state change (which is also
	// logged and counted in Stats). It runs under the breaker's lock: keep it
	// quick, and do not call the pool from it.
	OnStateChange func(from, to BreakerState)
}

func (c *CircuitBreaker) withDefaults() CircuitBreaker {
	d := *c
	if d.Window <= 0 {
		d.Window = 30 * time.Second
	}
	if d.MinRequests <= 0 {
		d.MinRequests = 20
	}
	if d.FailureRatio <= 0 || d.FailureRatio > 1 {
		d.FailureRatio = 0.5
	}
	if d.CoolDown <= 0 {
		d.CoolDown = 30 * time.Second
	}
	if d.Probes <= 0 {
		d.Probes = 3
	}
	if d.IsFailure == nil {
		d.IsFailure = func(err error) bool { return !errors.Is(err, ErrNoRetry) }
	}
	return d
}

const breakerBuckets = 10

// breaker implements CircuitBreaker. Pollers ask it for admission before
// they receive; workers report outcomes to it.
type breaker struct {
	cfg   CircuitBreaker
	clock clock.Clock
	log   func(from, to BreakerState)

	mu       sync.Mutex
	state    BreakerState
	buckets  [breakerBuckets]struct{ ok, fail int }
	bucketAt time.Time // start of the newest bucket
	newest   int
	openedAt time.Time
	epoch    uint64        // counts half-open periods; a probe carries the one it was let in for
	admitted int           // half-open: probes let in and not yet finished
	passed   int           // half-open: probes that succeeded
	changed  chan struct{} // closed and replaced on every state change, and when probes are given back
	opens    int64
}

func newBreaker(cfg CircuitBreaker, clk clock.Clock, log func(from, to BreakerState)) *breaker {
	return &breaker{cfg: cfg.withDefaults(), clock: clk, log: log, changed: make(chan struct{}), bucketAt: clk.Now()}
}

// admit waits until messages may be received and returns how many: want
// when closed, the probes left when half-open. probe is zero when closed;
// half-open, it names the period the probes were let in for, and every
// message received with it must end in exactly one record or unadmit, or the
// breaker waits for it for ever.
func (b *breaker) admit(ctx context.Context, want int) (n int, probe uint64, err error) {
	for {
		b.mu.Lock()
		now := b.clock.Now()
		if b.state == BreakerOpen && !now.Before(b.openedAt.Add(b.cfg.CoolDown)) {
			b.setLocked(BreakerHalfOpen)
		}
		switch b.state {
		case BreakerClosed:
			b.mu.Unlock()
			return want, 0, nil
		case BreakerHalfOpen:
			if n := min(want, b.cfg.Probes-b.admitted-b.passed); n > 0 {
				b.admitted += n
				epoch := b.epoch // under the lock: a failing probe may start the next period
				b.mu.Unlock()
				return n, epoch, nil
			}
		}
		coolAt := b.openedAt.Add(b.cfg.CoolDown)
		changed := b.changed
		b.mu.Unlock()
		var timeout <-chan time.Time
		var t clock.Timer
		if wait := coolAt.Sub(now); wait > 0 {
			t = b.clock.NewTimer(wait)
			timeout = t.C()
			// The clock may have moved since now was read: a timer armed
			// for the stale wait would then fire late, or on a manual
			// clock that moved once, never.
			if !b.clock.Now().Before(coolAt) {
				t.Stop()
				continue
			}
		}
		select {
		case <-changed:
		case <-timeout:
		case <-ctx.Done():
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
	}
}

// unadmit gives back n probe admissions that no handler's outcome will
// settle: a receive did not use them, or the message did not reach a handler
// (undecodable, a duplicate, given back unstarted). It wakes the pollers
// waiting for a probe.
func (b *breaker) unadmit(probe uint64, n int) {
	if b == nil || probe == 0 || n <= 0 {
		return
	}
	b.mu.Lock()
	if b.state == BreakerHalfOpen && probe == b.epoch {
		b.admitted = max(b.admitted-n, 0)
		b.wakeLocked()
	}
	b.mu.Unlock()
}

// allows reports whether a received message may start now. An open breaker
// has its unstarted messages given back.
func (b *breaker) allows() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state != BreakerOpen
}

// record counts one handler outcome; probe is the admission its message was
// received with (see admit).
func (b *breaker) record(err error, probe uint64) {
	failed := err != nil && b.cfg.IsFailure(err)
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	switch b.state {
	case BreakerHalfOpen:
		if probe != b.epoch {
			// Not one of this period's probes: a handler that started
			// before the breaker opened says nothing of the downstream now.
			return
		}
		b.admitted = max(b.admitted-1, 0)
		if failed {
			b.openLocked(now)
			return
		}
		if b.passed++; b.passed >= b.cfg.Probes {
			b.buckets = [breakerBuckets]struct{ ok, fail int }{}
			b.setLocked(BreakerClosed)
		}
		return
	case BreakerOpen:
		return // a handler that was running when it opened
	}
	b.rotateLocked(now)
	if failed {
		b.buckets[b.newest].fail++
	} else {
		b.buckets[b.newest].ok++
	}
	var ok, fail int
	for _, bk := range b.buckets {
		ok, fail = ok+bk.ok, fail+bk.fail
	}
	if ok+fail >= b.cfg.MinRequests && float64(fail) >= b.cfg.FailureRatio*float64(ok+fail) {
		b.openLocked(now)
	}
}

// rotateLocked moves the window so that its newest bucket covers now.
func (b *breaker) rotateLocked(now time.Time) {
	width := b.cfg.Window / breakerBuckets
	for steps := 0; !now.Before(b.bucketAt.Add(width)); steps++ {
		if steps >= breakerBuckets { // idle for a whole window: start afresh
			b.buckets = [breakerBuckets]struct{ ok, fail int }{}
			b.bucketAt = now
			return
		}
		b.newest = (b.newest + 1) % breakerBuckets
		b.buckets[b.newest] = struct{ ok, fail int }{}
		b.bucketAt = b.bucketAt.Add(width)
	}
}

func (b *breaker) openLocked(now time.Time) {
	b.openedAt = now
	b.admitted, b.passed = 0, 0
	b.opens++
	b.setLocked(BreakerOpen)
}

func (b *breaker) setLocked(to BreakerState) {
	from := b.state
	b.state = to
	if to == BreakerHalfOpen && from != to {
		b.epoch++
	}
	b.wakeLocked()
	if from != to {
		b.log(from, to)
		if b.cfg.OnStateChange != nil {
			b.cfg.OnStateChange(from, to)
		}
	}
}

// wakeLocked wakes the pollers waiting in admit.
func (b *breaker) wakeLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *breaker) snapshot() (BreakerState, int64) {
	if b == nil {
		return BreakerClosed, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state, b.opens
}
