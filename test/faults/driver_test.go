package faults

import (
	"sync"
	"testing"
	"time"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/internal/clock"
)

// driver moves a manual clock forward while a test runs, so that visibility
// timeouts, retry delays, lingers and backoffs (on the fake, the pool and
// the sink) pass in milliseconds of wall time. Every wall-clock millisecond
// it advances the clock by busyStep while busy() reports work in progress
// (messages visible or held by the pool), else by idleStep: slow enough
// while handlers run for the heartbeat to keep their messages invisible,
// fast when everything left waits for a timeout to end.
//
// Tests never sleep to synchronise: they wait with waitFor for a condition,
// which is checked after every step.
type driver struct {
	clk      *clock.Manual
	busy     func() bool
	busyStep time.Duration
	idleStep time.Duration

	mu    sync.Mutex
	stepC chan struct{} // closed and replaced after every step

	stop chan struct{}
	done chan struct{}
}

func startDriver(t *testing.T, clk *clock.Manual, busyStep, idleStep time.Duration, busy func() bool) *driver {
	d := &driver{
		clk: clk, busy: busy, busyStep: busyStep, idleStep: idleStep,
		stepC: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go d.run()
	t.Cleanup(d.halt)
	return d
}

func (d *driver) run() {
	defer close(d.done)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-tick.C:
		}
		step := d.idleStep
		if d.busy() {
			step = d.busyStep
		}
		d.clk.Advance(step)
		d.mu.Lock()
		close(d.stepC)
		d.stepC = make(chan struct{})
		d.mu.Unlock()
	}
}

// halt stops the driver; the clock stays where it is. It may be called more
// than once.
func (d *driver) halt() {
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	<-d.done
}

// waitFor returns once cond holds, checking it after every clock step. The
// wall-clock timeout only guards against a hang: reaching it fails the test.
func (d *driver) waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for !cond() {
		d.mu.Lock()
		next := d.stepC
		d.mu.Unlock()
		select {
		case <-next:
		case <-d.done:
			t.Fatalf("driver stopped while waiting for %s", what)
		case <-deadline.C:
			t.Fatalf("hang guard: %s did not happen within %v of wall time (clock at %v)", what, timeout, d.clk.Now())
		}
	}
}

// eventually polls cond every 50 ms of wall time, for tests on real time
// (the emulators, child processes). The timeout only guards against a hang.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("hang guard: %s did not happen within %v", what, timeout)
		}
		<-tick.C
	}
}

// held is how many received messages the pool still holds: received, not a
// dropped duplicate, and not yet handled, rejected or given back.
func held(s sqspool.Stats) int64 {
	return s.Received - s.Duplicates - s.Processed - s.Failed - s.DecodeErrors - s.Returned
}
