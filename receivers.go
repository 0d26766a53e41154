package sqspool

import (
	"math"
	"sync"
	"time"
)

// receivers sizes the pool's receive concurrency to demand, the way a cost
// conscious gocloud would: it adds a poller while receives come back full and
// slots that no receive claims wait for work, and sheds one for every receive
// that comes back partial or empty, or that found fewer than a batch's slots
// free, down to a single long poll for the whole pool when the queue is idle.
// Pollers never outnumber what the slots the handlers and the read-ahead
// leave can fill (the slot bound), nor the upper bound WithPollers sets.
//
// A poller consults it after each successful receive; receive errors and
// backoffs change nothing. The pool owns every poller goroutine (Pool.pollers),
// whichever poller asked for it to be started.
type receivers struct {
	max    int            // WithPollers, or the default bound
	want   func() int     // messages a full receive asks for now
	slots  func() int     // the live limit plus the read-ahead
	free   func() int     // slots no message holds and no poller claims
	spawn  func() bool    // starts one more poller; false once the pool stops
	rate   func() float64 // messages handled a second lately (0: not known yet)
	fifo   bool           // a FIFO queue: see after
	mu     sync.Mutex
	active int // pollers running
	peak   int // most pollers running at once
	// fastest follows the quickest receives that brought messages: what a
	// receive takes that finds them waiting at SQS (rising slowly, so that
	// a slower network is learnt).
	fastest time.Duration
}

// pollersFor is how many pollers n slots can keep busy: a receive takes want
// of them.
func pollersFor(slots, want int) int {
	return max(1, (slots+want-1)/max(want, 1))
}

// bound is the most pollers that may run now.
func (r *receivers) bound() int {
	return min(r.max, pollersFor(r.slots(), r.want()))
}

// start starts the first poller.
func (r *receivers) start() {
	r.mu.Lock()
	r.active, r.peak = 1, 1
	r.mu.Unlock()
	r.spawn()
}

// after is told what a receive asked for and got, and how long it took, and
// reports whether its poller should stop (be shed).
func (r *receivers) after(asked, got int, took time.Duration) (stop bool) {
	bound := r.bound()
	full := got >= asked && asked >= r.want()
	waiting := full && r.free() >= r.want()
	r.mu.Lock()
	defer r.mu.Unlock()
	waited := false
	if got > 0 {
		// A full receive that took long waited at SQS for its messages
		// (on a FIFO queue, for a group to unlock), or was slowed by a
		// busy CPU, which more pollers load more: either way one more
		// poller would not bring more. On a FIFO queue the pollers take
		// groups as fast as they unlock, and this one goes; elsewhere a
		// slow receive is a busy CPU far more often than a wait (a wait
		// for a trickle comes back partial), and the pollers stay.
		if r.fastest == 0 || took < r.fastest {
			r.fastest = took
		} else {
			r.fastest += (took - r.fastest) / 32
		}
		waited = took > 2*r.fastest+time.Millisecond
	}
	waiting = waiting && !waited
	bound = min(bound, r.demandLocked())
	switch {
	case r.active > 1 && (got < asked || asked < r.want() || r.active > bound || (waited && r.fifo)):
		// Partial or empty: the queue has less than the pollers can take.
		// Asked for less than a batch: the handlers, not the receives, are
		// the limit, and pollers that share the freed slots only make
		// smaller receives. Waited (FIFO): see above.
		r.active--
		return true
	case waiting && r.active < bound:
		// Started under the lock: a poller that is shed meanwhile cannot
		// take the count below one.
		if r.spawn() {
			r.active++
			r.peak = max(r.peak, r.active)
		}
	}
	return false
}

// demandLocked bounds the pollers by the rate messages are handled at: the
// receives in flight that rate needs, each bringing a full batch in the
// quickest receive time, twice over, so that the pollers can still double
// while the rate follows them. Past it, pollers outrun the handlers (a CPU
// that is the limit, or FIFO groups that SQS holds until their deletes land),
// and each one more only adds load.
func (r *receivers) demandLocked() int {
	if r.rate == nil || r.fastest <= 0 {
		return math.MaxInt
	}
	rate := r.rate()
	if rate <= 0 {
		return math.MaxInt
	}
	return 2*int(math.Ceil(rate*r.fastest.Seconds()/float64(max(r.want(), 1)))) + 2
}

// running returns the pollers running now and the most seen at once.
func (r *receivers) running() (active, peak int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active, r.peak
}

// readAheadFor is how many messages may be received beyond the handlers that
// can run: the work done in one horizon at rate (messages a second), plus two
// receives' worth (batch each) so that a poller can wait for a full batch
// while workers still have work; never more than ceiling, and never more
// than can be handled in half a visibility timeout, so that a message read
// ahead is handled long before SQS would give it to another consumer,
// heartbeat or not.
func readAheadFor(rate float64, horizon, visibility time.Duration, batch, ceiling int) int64 {
	if rate <= 0 {
		return 0
	}
	ahead := math.Ceil(rate*horizon.Seconds()) + float64(2*batch)
	if visibility > 0 {
		ahead = min(ahead, math.Floor(rate*visibility.Seconds()/2))
	}
	return int64(max(0, min(ahead, float64(ceiling))))
}

// maxFill bounds how long a poller waits for a full batch's slots.
const maxFill = time.Second

// fillWait is how long a poller that has some slots free, but not a full
// batch's, waits for more before it receives what it has: receiveFill,
// or, while received messages wait for workers, as long as those keep the
// workers busy less one receive latency, so that a pool of slow handlers
// still receives ten at a time without a worker waiting for it.
func (p *Pool) fillWait() time.Duration {
	base := p.cfg.receiveFill
	rate, latency := p.sizer.load()
	waiting := len(p.work)
	if base == 0 || rate <= 0 || waiting == 0 {
		return base
	}
	d := time.Duration(float64(waiting)/rate*float64(time.Second)) - latency
	return min(max(base, d), maxFill)
}

// unclaimed is how many slots are free with no poller waiting for them: work
// that workers will wait for unless another receive brings it.
func (c *credits) unclaimed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiters) > 0 {
		return 0
	}
	return max(c.free, 0)
}
