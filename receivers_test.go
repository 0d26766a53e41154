package sqspool

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sqsfake"
)

// gatedReceives is the fake with every ReceiveMessage held until the test
// releases it, so that a test decides when each receive in flight returns.
// Receives short-poll the fake (no wait on the clock), or, while empty is
// set, find the queue empty.
type gatedReceives struct {
	*sqsfake.Fake
	arrived chan gatedReceive
	empty   atomic.Bool
}

type gatedReceive struct {
	asked   int32
	release chan struct{}
}

func newGated(f *sqsfake.Fake) *gatedReceives {
	return &gatedReceives{Fake: f, arrived: make(chan gatedReceive, 1000)}
}

func (g *gatedReceives) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	r := gatedReceive{asked: in.MaxNumberOfMessages, release: make(chan struct{})}
	g.arrived <- r
	select {
	case <-r.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if g.empty.Load() {
		return &sqs.ReceiveMessageOutput{}, nil
	}
	short := *in
	short.WaitTimeSeconds = 0
	return g.Fake.ReceiveMessage(ctx, &short, optFns...)
}

// next returns the next receive to arrive, or fails the test.
func (g *gatedReceives) next(t *testing.T) gatedReceive {
	t.Helper()
	select {
	case r := <-g.arrived:
		return r
	case <-time.After(30 * time.Second): // a hang guard
		t.Fatal("no receive arrived")
		return gatedReceive{}
	}
}

func (e *env) startGated(g *gatedReceives, h Handler[order], more ...Option) *Pool {
	e.t.Helper()
	p, err := StartPool(context.Background(), &Consumer{Client: g, Queue: e.queue}, h, e.opts(more...)...)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p
}

func TestPollersRampUpWhileReceivesComeBackFullAndShedWhenIdle(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(200)
	g := newGated(e.fake)
	hold := make(chan struct{}) // handlers hold their messages (and slots) until closed
	started := make(chan struct{}, 200)
	p := e.startGated(g, func(ctx context.Context, o *order) error {
		started <- struct{}{}
		<-hold
		return nil
	}, WithWorkers(64))
	require.EqualValues(t, 1, p.Stats().Pollers, "a pool starts with one long poll")

	// Each release returns one full receive. While 10 or more of the 64
	// slots are left unclaimed after it, a poller is added; then the new
	// poller and the old each claim 10 for their next receive.
	steps := []struct {
		arrivals, pollers int
	}{
		{2, 2}, // 10 held, 20 claimed: 34 unclaimed
		{2, 3}, // 20 held, 30 claimed: 14 unclaimed
		{1, 4}, // 30 held, 30 claimed: 4 unclaimed, one poller waits for slots
		{0, 4}, // 4 unclaimed: no poller added from here on
		{0, 4},
		{0, 4},
	}
	inFlight := []gatedReceive{g.next(t)}
	for i, s := range steps {
		r := inFlight[0]
		inFlight = inFlight[1:]
		assert.EqualValues(t, 10, r.asked, "step %d: receives ask for full batches", i)
		close(r.release)
		for range s.arrivals {
			inFlight = append(inFlight, g.next(t))
		}
		if s.arrivals > 0 { // the new poller has arrived: it was counted first
			assert.EqualValues(t, s.pollers, p.Stats().Pollers, "step %d", i)
		}
	}
	require.Empty(t, inFlight)
	for range 60 {
		<-started
	}
	// Every poller now waits for slots, holding none.
	require.Eventually(t, func() bool { p.credits.mu.Lock(); defer p.credits.mu.Unlock(); return len(p.credits.waiters) == 4 }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, 4, p.Stats().Pollers)
	select {
	case r := <-g.arrived:
		t.Fatalf("a receive of %d arrived with no slot free for it", r.asked)
	default:
	}

	// The queue goes idle: each empty receive sheds its poller but the last.
	g.empty.Store(true)
	close(hold)
	for range 4 {
		close(g.next(t).release)
	}
	last := g.next(t)
	assert.EqualValues(t, 1, p.Stats().Pollers, "one long poll for the whole pool when idle")
	_, peak := p.recv.running()
	assert.Equal(t, 4, peak)
	close(last.release)
	g.next(t) // the survivor polls on
	assert.EqualValues(t, 1, p.Stats().Pollers)
	e.shutdown(p)
}

func TestPollersNeverPassTheSlotBound(t *testing.T) {
	// 25 workers and no read-ahead (the manual clock never moves, so the
	// sizer never measures a rate): 25 slots, room for three receives.
	e := newEnv(t, nil)
	e.sendOrders(600)
	g := newGated(e.fake)
	s := newSeen()
	p := e.startGated(g, s.handler, WithWorkers(25))
	bound := pollersFor(25, 10)
	require.Equal(t, 3, bound)
	var inFlight []gatedReceive
	most := 0
	for len(s.snapshot()) < 600 {
		// Let every poller with slots reach the gate before releasing one.
		for len(inFlight) == 0 {
			inFlight = append(inFlight, g.next(t))
		}
		for drained := false; !drained; {
			select {
			case r := <-g.arrived:
				inFlight = append(inFlight, r)
			default:
				drained = true
			}
		}
		most = max(most, len(inFlight))
		require.LessOrEqual(t, len(inFlight), bound, "receives in flight")
		active, _ := p.recv.running()
		require.LessOrEqual(t, active, bound, "pollers")
		r := inFlight[0]
		inFlight = inFlight[1:]
		close(r.release)
	}
	_, peak := p.recv.running()
	assert.LessOrEqual(t, peak, bound)
	assert.GreaterOrEqual(t, peak, 2, "the pool did add pollers under load")
	e.shutdown(p)
	assert.EqualValues(t, 600, p.Stats().Processed)
}

func TestReceivesFollowTheLiveAdaptiveLimitNotMax(t *testing.T) {
	// The limit starts at Min and moves only on the clock, which stands
	// still: receives must size to Min, not to Max's 128 workers.
	e := newEnv(t, nil)
	e.sendOrders(100)
	g := newGated(e.fake)
	s := newSeen()
	p := e.startGated(g, s.handler, WithAdaptiveConcurrency(AdaptiveConcurrency{Min: 5, Max: 128}))
	for handled := 0; handled < 100; {
		r := g.next(t)
		assert.EqualValues(t, 5, r.asked)
		close(r.release)
		handled += len(s.wait(t, 5))
	}
	_, peak := p.recv.running()
	assert.Equal(t, 1, peak, "5 slots fill one receive; Max would allow 13")
	e.shutdown(p)
}

func TestIdlePoolMakesAtMostThreeReceivesAMinute(t *testing.T) {
	// 64 workers used to mean 7 long polls: 21 requests a minute on an
	// empty queue. Now the whole pool polls once per 20 s wait.
	e := newEnv(t, nil)
	p := e.start(newSeen().handler, WithWorkers(64))
	// At rest: the watchdog's timer and the one long poll's.
	const rest = 2
	require.True(t, e.clk.BlockUntil(rest, nil))
	const minutes = 5
	for range minutes * 3 {
		e.clk.Advance(20 * time.Second)
		require.True(t, e.clk.BlockUntil(rest, nil))
	}
	calls := p.Stats().Calls["ReceiveMessage"]
	// One more than 3 a minute: the receive that began as the 5 minutes ended.
	assert.EqualValues(t, 3*minutes+1, calls)
	assert.EqualValues(t, 1, p.Stats().Pollers)
	e.shutdown(p)
}

func TestReceiversAddShedAndBound(t *testing.T) {
	free, slots := 64, 64
	spawned := 0
	r := &receivers{
		max:   5,
		want:  func() int { return 10 },
		slots: func() int { return slots },
		free:  func() int { return free },
		spawn: func() bool { spawned++; return true },
	}
	r.start()
	assert.Equal(t, 1, spawned)
	assert.False(t, r.after(10, 10, 0), "full, slots unclaimed: keep and add")
	assert.Equal(t, 2, spawned)
	free = 9
	assert.False(t, r.after(10, 10, 0), "full, but workers have work: no poller added")
	assert.Equal(t, 2, spawned)
	free = 64
	assert.True(t, r.after(4, 4, 0), "a receive that found less than a batch's slots free: shed")
	assert.False(t, r.after(4, 4, 0), "but never below one poller")
	for range 10 {
		r.after(10, 10, 0)
	}
	active, peak := r.running()
	assert.Equal(t, 5, active, "WithPollers is an upper bound")
	assert.Equal(t, 5, peak)
	slots = 25 // the adaptive limit shrank: room for 3 receives
	assert.True(t, r.after(10, 10, 0), "past the slot bound: shed")
	assert.True(t, r.after(10, 10, 0))
	assert.False(t, r.after(10, 10, 0))
	assert.True(t, r.after(10, 3, 0), "partial: shed")
	assert.True(t, r.after(10, 0, 0), "empty: shed")
	assert.False(t, r.after(10, 0, 0), "never below one poller")
	active, _ = r.running()
	assert.Equal(t, 1, active)
}

func TestReadAheadStaysWithinHalfAVisibilityTimeout(t *testing.T) {
	assert.EqualValues(t, 70, readAheadFor(1000, 50*time.Millisecond, 30*time.Second, 10, 1000), "one horizon of work and two batches")
	assert.EqualValues(t, 100, readAheadFor(10000, 50*time.Millisecond, 30*time.Second, 10, 100), "at most one receive per poller")
	assert.EqualValues(t, 5, readAheadFor(10, 2*time.Second, time.Second, 10, 1000), "what is handled in half a visibility timeout")
	assert.EqualValues(t, 0, readAheadFor(0, 50*time.Millisecond, 30*time.Second, 10, 1000), "nothing measured, nothing read ahead")
}

func TestPollersWaitForFullBatchesWhileWorkersHaveWork(t *testing.T) {
	p := &Pool{cfg: config{receiveFill: 10 * time.Millisecond}, work: make(chan *record, 100)}
	assert.Equal(t, 10*time.Millisecond, p.fillWait(), "nothing measured yet")
	p.sizer.rate, p.sizer.latency = 128, 100*time.Millisecond // 64 workers, 500 ms handlers
	assert.Equal(t, 10*time.Millisecond, p.fillWait(), "workers wait for work: receive what is free soon")
	for range 30 {
		p.work <- &record{}
	}
	// 30 messages keep the workers busy 234 ms; the next receive takes 100.
	assert.InDelta(t, 134*time.Millisecond, p.fillWait(), float64(time.Millisecond))
	p.sizer.rate = 1
	assert.Equal(t, maxFill, p.fillWait())
	p.cfg.receiveFill = 0
	assert.Zero(t, p.fillWait(), "withReceiveFill(0) receives as soon as a slot is free")
}

func TestReadAheadFollowsThePollersRunning(t *testing.T) {
	clk := clock.NewManual(time.Now())
	p := &Pool{cfg: config{pollers: 100, maxMessages: 10, clock: clk}, credits: newCredits(0), recv: &receivers{active: 2}}
	p.queue.visibility = 30 * time.Second
	p.sizer.lastAt = clk.Now()
	clk.Advance(time.Second)
	p.counters.processed.Add(10_000) // 10,000/s: 520 for a 50 ms horizon
	p.resize(10 * time.Millisecond)
	assert.EqualValues(t, 30, p.readAhead.Load(), "one receive for each of 2 pollers, and one more")
	p.recv.active = 5
	clk.Advance(time.Second)
	p.counters.processed.Add(10_000)
	p.resize(10 * time.Millisecond)
	assert.EqualValues(t, 60, p.readAhead.Load())
	assert.Equal(t, 60, p.credits.unclaimed(), "the slots moved with it")
}

// A full receive that waited at SQS for its messages adds no poller; on a
// FIFO queue it sheds its own: the pollers take groups as fast as they
// unlock. Elsewhere a slow receive is most often a busy CPU, and the
// pollers stay. Pollers never pass
// twice the receives the handling rate needs (the rate × the quickest
// receive time / a batch), so that a CPU that is the limit, or FIFO groups
// that SQS holds, do not draw ever more long polls.
func TestReceiversFollowWaitsAndTheHandlingRate(t *testing.T) {
	spawned, rate := 0, 0.0
	r := &receivers{
		max:   100,
		want:  func() int { return 10 },
		slots: func() int { return 640 },
		free:  func() int { return 640 },
		spawn: func() bool { spawned++; return true },
		rate:  func() float64 { return rate },
		fifo:  true,
	}
	r.start()
	const quick = 10 * time.Millisecond
	assert.False(t, r.after(10, 10, quick), "full and quick: add")
	assert.False(t, r.after(10, 10, quick))
	assert.Equal(t, 3, spawned)
	assert.True(t, r.after(10, 10, 3*quick), "full, but waited at SQS: shed")
	assert.Equal(t, 3, spawned, "and nothing added")
	assert.True(t, r.after(10, 10, 3*quick))
	assert.False(t, r.after(10, 10, 3*quick), "never below one poller")
	for range 20 {
		r.after(10, 10, quick)
	}
	active, _ := r.running()
	require.Greater(t, active, 8)
	rate = 2000 // 2 receives in flight at 10 ms: at most 6 pollers
	for range 20 {
		r.after(10, 10, quick)
	}
	active, _ = r.running()
	assert.Equal(t, 6, active)
	r.fifo, rate = false, 0 // no rate bound: only the wait keeps it from adding
	assert.False(t, r.after(10, 10, 3*quick), "not FIFO: a slow receive keeps its poller")
	active, _ = r.running()
	assert.Equal(t, 6, active, "and adds none")
}

// A poller sizing the read-ahead (resize) and one deciding whether to go
// (after, which reads the handling rate under the receivers' lock) each
// need the sizer's and the receivers' locks; taken in opposite orders they
// deadlocked the pool (simulator seed 1529, under -race).
func TestResizeAndThePollerControllerShareLocksSafely(t *testing.T) {
	clk := clock.NewManual(time.Now())
	p := &Pool{cfg: config{pollers: 100, maxMessages: 10, clock: clk}, credits: newCredits(0)}
	p.queue.visibility = 30 * time.Second
	p.recv = &receivers{active: 2, fastest: time.Millisecond, want: func() int { return 10 }, rate: func() float64 {
		rate, _ := p.sizer.load()
		return rate
	}}
	const rounds = 20_000
	errc := make(chan error, 2)
	go func() {
		for range rounds {
			p.sizer.mu.Lock()
			p.sizer.lastAt = clk.Now().Add(-time.Second) // so that each resize reads the pollers running
			p.sizer.mu.Unlock()
			p.counters.processed.Add(1)
			p.resize(time.Millisecond)
		}
		errc <- nil
	}()
	var bound atomic.Int64
	go func() {
		for range rounds {
			p.recv.mu.Lock()
			bound.Store(int64(p.recv.demandLocked()))
			p.recv.mu.Unlock()
		}
		errc <- nil
	}()
	for range 2 {
		require.NoError(t, within(t, errc, "resize and the poller controller deadlocked"))
	}
	assert.Positive(t, bound.Load())
	assert.Positive(t, p.readAhead.Load(), "the resizes ran to the end")
}
