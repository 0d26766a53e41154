package sqspool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sqspool/sqspool/internal/clock"
)

// Handler handles one decoded message. Returning nil means the work is done
// and durable: the message is then deleted. Any error, or a panic, leaves the
// message to come back. MessageFrom(ctx) gives the message's metadata.
type Handler[T any] func(ctx context.Context, msg *T) error

// Pool consumes one queue with a fixed number of workers. Create it with
// StartPool; stop it with Shutdown, or by cancelling StartPool's context.
type Pool struct {
	cfg   config
	queue queueInfo
	// tick is the watchdog's period; ahead is how far ahead of its visibility
	// timeout the heartbeat keeps a message (it extends one whose visibility
	// ends within ahead). Both follow from the queue and the options.
	tick, ahead time.Duration
	counters    counters
	credits     *credits
	limit       atomic.Int64 // handlers that may run at once: the workers, or the adaptive limit
	readAhead   atomic.Int64 // slots beyond limit, so that receives overlap handling
	sizer       sizer
	limiter     *limiter // nil unless WithAdaptiveConcurrency
	run         *credits // with it: handlers that may start, up to the limit
	brk         *breaker // nil unless WithCircuitBreaker
	disp        *dispatcher
	deq         *dequeuer
	work        chan *record
	process     func(*record) (ok bool, delay time.Duration) // the single-message pool's
	serve       func()                                       // a worker's loop: serveOne, or a batch pool's
	perWorker   int                                          // messages a worker handles at once: 1, or the batch size

	pollCtx       context.Context // ends when the stop begins
	pollCancel    context.CancelFunc
	recvCancel    context.CancelFunc // ends the receives in flight, a grace after pollCtx
	bgCancel      context.CancelFunc // watchdog and adaptive limit
	bg            sync.WaitGroup
	handlerCtx    context.Context // carries the parent's values, not its cancellation
	handlerCancel context.CancelFunc

	recv        *receivers     // sizes the pollers to demand
	pollers     sync.WaitGroup // every poller, whoever started it
	workersLeft atomic.Int64
	workersDone chan struct{} // closed when the last worker returns
	running     atomic.Int64  // handlers running now
	lastReceive atomic.Int64  // unix nanoseconds of the last successful receive

	stopping atomic.Bool

	retryMu       sync.Mutex
	retries       map[*record]clock.Timer // FIFO records waiting for a local retry
	retriesClosed bool                    // the stop took them back
	stopBegun     chan struct{}
	shutdownReq   chan shutdownRequest
	done          chan struct{} // closed when the stop sequence has finished
	err           error         // set before done is closed
}

// StartPool resolves the consumer's queue and starts consuming it: pollers
// long-poll SQS, workers decode each body into a T and call h, and finished
// messages are deleted in batches.
//
// ctx bounds the pool's life. When it is cancelled the pool stops gracefully,
// as Shutdown does, within WithShutdownTimeout; handlers keep ctx's values but
// are cancelled only when that grace runs out. StartPool returns an error,
// and starts nothing, if the options are invalid or the queue cannot be
// resolved.
func StartPool[T any](ctx context.Context, c *Consumer, h Handler[T], opts ...Option) (*Pool, error) {
	if c == nil || h == nil {
		return nil, errors.New("sqspool: StartPool needs a Consumer and a handler")
	}
	p, decode, client, err := newPool[T](ctx, c, false, opts)
	if err != nil {
		return nil, err
	}
	p.process = func(rec *record) (bool, time.Duration) { return handleOne(p, rec, decode, h) }
	p.serve = p.serveOne
	p.start(ctx, client)
	return p, nil
}

// newPool configures a pool for T and resolves its queue; batch says
// whether it is a batch pool (see StartBatchPool).
func newPool[T any](ctx context.Context, c *Consumer, batch bool, opts []Option) (*Pool, decoder[T], Client, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	decode := decoderFor[T]()
	if cfg.decoder != nil {
		d, ok := cfg.decoder.(decoder[T])
		if !ok {
			return nil, nil, nil, fmt.Errorf("sqspool: withDecoder got %T, the pool needs a decoder[%T]", cfg.decoder, *new(T))
		}
		decode = d
	}
	if err := cfg.validate(); err != nil {
		return nil, nil, nil, err
	}
	if err := cfg.validateBatch(batch); err != nil {
		return nil, nil, nil, err
	}
	if cfg.observer != nil {
		cfg.observer = guardedObserver{o: cfg.observer, log: cfg.logger}
	}
	p := &Pool{
		cfg:         cfg,
		perWorker:   max(cfg.batch.size, 1),
		workersDone: make(chan struct{}),
		stopBegun:   make(chan struct{}),
		shutdownReq: make(chan shutdownRequest),
		done:        make(chan struct{}),
	}
	client, err := c.client(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	q, err := c.resolve(ctx, client, cfg.visibility, &p.counters.api)
	if err != nil {
		return nil, nil, nil, err
	}
	p.queue = q
	p.tick = watchTick(q.visibility, p.deadline(time.Time{}, time.Time{}).Sub(time.Time{}))
	p.ahead = p.tick + q.visibility/3
	return p, decode, client, nil
}

func (p *Pool) start(parent context.Context, client Client) {
	cfg := &p.cfg
	slots := cfg.workers * p.perWorker
	want := min(cfg.maxMessages, slots)
	if cfg.adaptive != nil {
		p.limiter = newLimiter(*cfg.adaptive)
		slots = p.limiter.cfg.Min
		p.run = newCredits(slots)
	}
	p.limit.Store(int64(slots))
	p.credits = newCredits(p.heldSlots(slots))
	if cfg.breaker != nil {
		p.brk = newBreaker(*cfg.breaker, cfg.clock, func(from, to BreakerState) {
			cfg.logger.Warn("sqspool: circuit breaker "+to.String(), "queue", p.queue.url, "from", from.String())
		})
	}
	// Room for every slot, the most read-ahead included, and for a receive
	// that returned more than it asked for.
	p.work = make(chan *record, p.heldSlots(cfg.workers*p.perWorker)+cfg.pollers*cfg.maxMessages+maxBatch)
	p.disp = &dispatcher{
		queueURL:   p.queue.url,
		fifo:       p.queue.fifo,
		visibility: p.queue.visibility,
		deadline:   p.deadline,
		clock:      cfg.clock,
		credits:    p.credits,
		counters:   &p.counters,
		work:       p.work,
		hold:       func(rec *record, d time.Duration) { p.giveBack(d, rec) },
		deleteNow:  func(recs []*record) { p.deq.deleteAll(recs) },
		observer:   cfg.observer,
		breaker:    p.brk,
		groups:     make(map[string]*group),
		inflight:   make(map[string]*record),
	}
	p.handlerCtx, p.handlerCancel = context.WithCancel(context.WithoutCancel(parent))
	p.deq = newDequeuer(context.WithoutCancel(parent), &dequeuer{
		client:   client,
		queueURL: p.queue.url,
		attempts: cfg.batchAttempts,
		clock:    cfg.clock,
		counters: &p.counters,
		log:      cfg.logger,
		onError:  func(m *Message, err error) { p.report(p.handlerCtx, m, err) },
		jitter:   cfg.jitter,
		forget:   p.disp.forget,
		gone:     p.disp.forgetDeleted,
		observe:  p.observeCall,
		deleted: func(m *Message) {
			if p.cfg.observer != nil {
				p.cfg.observer.Deleted(m)
			}
		},
	}, cfg)

	pollCtx, pollCancel := context.WithCancel(parent)
	p.pollCtx, p.pollCancel = pollCtx, pollCancel
	// Not the parent's cancellation: the stop ends receives (see stop).
	recvCtx, recvCancel := context.WithCancel(context.WithoutCancel(parent))
	p.recvCancel = recvCancel
	input := newReceiveInput(p.queue.url, cfg)
	p.recv = &receivers{
		max:   cfg.pollers,
		want:  func() int { return min(want, max(int(p.limit.Load()), 1)) },
		slots: func() int { return p.heldSlots(int(p.limit.Load())) + int(p.readAhead.Load()) },
		free:  p.credits.unclaimed,
		fifo:  p.queue.fifo,
		rate: func() float64 {
			rate, _ := p.sizer.load()
			return rate
		},
	}
	p.recv.spawn = func() bool {
		if pollCtx.Err() != nil {
			return false
		}
		pl := &poller{
			client:   client,
			input:    input,
			want:     want,
			limit:    &p.limit,
			fill:     p.fillWait,
			clock:    cfg.clock,
			credits:  p.credits,
			breaker:  p.brk,
			ctl:      p.recv,
			dispatch: p.disp.dispatchProbes,
			calls:    &p.counters.api,
			observe:  p.observeCall,
			received: func(sent, at time.Time, n int) {
				p.lastReceive.Store(at.UnixNano())
				if n > 0 {
					p.resize(at.Sub(sent))
				}
			},
			onError: func(err error) { p.report(pollCtx, nil, err) },
			jitter:  cfg.jitter,
		}
		p.pollers.Add(1)
		go func() {
			defer p.pollers.Done()
			pl.run(pollCtx, recvCtx)
		}()
		return true
	}
	p.recv.start()
	bgCtx, bgCancel := context.WithCancel(context.Background())
	p.bgCancel = bgCancel
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		p.watch(bgCtx)
	}()
	if p.limiter != nil {
		p.bg.Add(1)
		go func() {
			defer p.bg.Done()
			p.adapt(bgCtx)
		}()
	}
	p.workersLeft.Store(int64(cfg.workers))
	for range cfg.workers {
		go p.worker()
	}
	go p.supervise(parent)
}

// heldSlots is how many received messages the pool holds for limit running
// handlers. On a FIFO queue the later messages of a group wait in memory
// behind its running one, so holding only one per worker would leave
// workers idle while a few groups drain: the pool holds up to a full
// receive per worker, which the heartbeat keeps invisible while they wait.
// Without the heartbeat, or under the adaptive limit, it holds one per
// worker. A batch pool's limit is a batch per worker, which a receive per
// worker fills unless the batches are smaller than receives.
func (p *Pool) heldSlots(limit int) int {
	if !p.queue.fifo || !p.cfg.heartbeat || p.cfg.adaptive != nil {
		return limit
	}
	return max(limit, limit/p.perWorker*p.cfg.maxMessages)
}

// deadline is when the handler of a message is cancelled. A handler timeout
// counts from when the message arrived: a message that came late in a long
// poll has the whole timeout. Without the heartbeat the handler must end
// before SQS would give the message to another consumer, and that visibility
// timeout may have started as early as when the poll was sent. With it, ten
// visibility timeouts, and never past the 12 hours (less a margin) after
// which SQS refuses to extend.
func (p *Pool) deadline(sent, arrived time.Time) time.Time {
	v := p.queue.visibility
	if !p.cfg.heartbeat {
		if p.cfg.handlerTimeout > 0 {
			return arrived.Add(p.cfg.handlerTimeout)
		}
		return sent.Add(v - min(v/10, 5*time.Second))
	}
	d := 10 * v
	if p.cfg.handlerTimeout > 0 {
		d = p.cfg.handlerTimeout
	}
	return minTime(arrived.Add(d), sent.Add(maxVisibility-visibilityMargin))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (p *Pool) worker() {
	defer func() {
		if p.workersLeft.Add(-1) == 0 {
			close(p.workersDone)
		}
	}()
	p.serve()
}

// serveOne is the single-message pool's worker loop.
func (p *Pool) serveOne() {
	w := &waiter{ch: make(chan struct{}, 1)} // for the adaptive limit's gate
	for rec := range p.work {
		for rec != nil {
			if p.stopping.Load() || (p.brk != nil && !p.brk.allows()) || !p.admitHandler(w) {
				rec = p.refuse(rec)
				continue
			}
			ok, delay := p.process(rec)
			if p.run != nil {
				p.run.release(1)
			}
			rec = p.ended(rec, ok, delay)
		}
	}
}

// refuse gives back rec, which no handler will start (the stop has begun, or
// the breaker is open), with the rest of its FIFO group. It returns what the
// worker goes on with: nothing.
func (p *Pool) refuse(rec *record) *record {
	p.giveBack(p.retryLeft(rec), rec)
	next, released := p.disp.next(rec, false, 0)
	p.giveBack(0, released...)
	return next
}

// ended settles rec's place here once its handling ended (ok and delay as
// handleOne reports them). It returns what the worker goes on with: on a
// FIFO queue the group's next message, or rec itself to run again at once.
func (p *Pool) ended(rec *record, ok bool, delay time.Duration) *record {
	if rec.state.Load() == recRetrying {
		// Its group stays here, in flight, behind it.
		if delay > 0 {
			return p.retryLater(rec, delay)
		}
		return rec
	}
	p.releaseSlot()
	next, released := p.disp.next(rec, ok, delay)
	p.giveBack(delay, released...)
	return next
}

// handleOne decodes rec's body and runs the handler on it. It reports whether
// the message is done with (succeeded, or dropped for good) and, if not, when
// it will be delivered again.
func handleOne[T any](p *Pool, rec *record, decode decoder[T], h Handler[T]) (ok bool, delay time.Duration) {
	ctx, v, err := startAttempt(p, rec, decode)
	if err != nil {
		return p.malformed(ctx, rec, err)
	}
	m := rec.msg
	done := func(error) {}
	if p.cfg.observer != nil {
		ctx, done = p.cfg.observer.Start(ctx, m)
	}
	rec.state.Store(recRunning)
	if p.handlerCtx.Err() != nil {
		rec.ctx.cancel(context.Canceled) // started as the stop cancelled the rest
	}
	running := p.running.Add(1)
	began := p.cfg.clock.Now()
	err = callHandler(ctx, h, v)
	if p.limiter != nil {
		p.limiter.observe(p.cfg.clock.Now().Sub(began), running)
	}
	p.running.Add(-1)
	rec.state.Store(recFinished)
	done(err)
	rec.ctx.cancel(context.Canceled) // as a WithTimeout's cancel would
	return p.settle(ctx, rec, err)
}

// startAttempt readies rec's handler context for another run and decodes
// its body.
func startAttempt[T any](p *Pool, rec *record, decode decoder[T]) (context.Context, *T, error) {
	m := rec.msg
	if rec.attempts++; rec.attempts > 1 {
		rec.ctx.reset()
	}
	// The deadline is on the pool's clock; the context's is the wall clock's.
	rec.ctx.values, rec.ctx.msg, rec.ctx.pool = p.handlerCtx, m, p
	now := p.cfg.clock.Now()
	var fresh func(sent, now time.Time) time.Time
	if p.cfg.heartbeat {
		fresh = p.deadline
	}
	rec.ctx.deadline = time.Now().Add(rec.beginAttempt(now, fresh, p.ahead).Sub(now))
	ctx := context.Context(&rec.ctx)
	v := new(T)
	err := p.cfg.decodeBody(m, func(body string) error { return callDecoder(decode, body, v) })
	return ctx, v, err
}

// malformed settles a message whose body did not decode (err), by the
// decode policy; it returns what handleOne does.
func (p *Pool) malformed(ctx context.Context, rec *record, err error) (ok bool, delay time.Duration) {
	m := rec.msg
	// The message's fate is settled before the hook hears of it, so that
	// its next delivery is never mistaken for a duplicate of this one.
	if p.cfg.decodePolicy == DeleteMalformed {
		p.finish(rec)
		ok = true
	} else {
		// Left for the redrive policy: it comes back when its visibility
		// timeout ends, and its FIFO group waits for it until then.
		p.disp.forget(rec)
		delay = rec.visibleAt().Sub(p.cfg.clock.Now())
	}
	// Counted once its fate is settled: counters follow the state they
	// count, so that what Stats says has happened has.
	p.counters.decodeErrors.Add(1)
	p.brk.unadmit(rec.takeProbe(), 1) // the message's fault, not the downstream's
	p.report(ctx, m, &DecodeError{MessageID: m.ID, Err: err})
	return ok, delay
}

// settle makes a finished handler's result (err) the message's outcome:
// deleted, retried here, or given back after the retry delay. It returns
// what handleOne does.
func (p *Pool) settle(ctx context.Context, rec *record, err error) (ok bool, delay time.Duration) {
	m := rec.msg
	if p.brk != nil {
		p.brk.record(err, rec.takeProbe())
	}
	if err == nil {
		p.finish(rec)
		p.counters.processed.Add(1)
		return true, 0
	}
	panicked := p.cfg.logFailure(m, err)
	delay, set, final := retryDelay(err, m.ReceiveCount, p.cfg.retryBackoff)
	localDelay, local := p.localRetry(rec, err)
	switch {
	case final:
		p.finish(rec)
		p.counters.dropped.Add(1)
		ok, delay = true, 0
	case local:
		rec.state.Store(recRetrying)
		delay = localDelay
		p.counters.retried.Add(1)
	case set:
		p.deq.setVisibility(rec, delay)
		p.counters.retried.Add(1)
	default:
		p.disp.forget(rec)
		delay = rec.visibleAt().Sub(p.cfg.clock.Now())
	}
	if panicked {
		p.counters.panics.Add(1)
	}
	p.counters.failed.Add(1)
	p.report(ctx, m, err)
	return ok, delay
}

// maxLocalAttempts is how many times a FIFO message runs in this process on
// one delivery before its group is given back to the queue.
const maxLocalAttempts = 3

// localRetry reports whether failed rec runs again here, and after how long.
// On a FIFO queue a failure would otherwise give the rest of the group back
// too, and each give-back counts as a receive of messages that did not
// fail: with a redrive policy, another message's failure could move them to
// the dead-letter queue. So the group stays in flight (the heartbeat keeps
// it), and the failed message runs again at once, then after the backoff
// of its first and second local failures, before the group goes back. The
// receive count of a message then counts its own deliveries.
func (p *Pool) localRetry(rec *record, err error) (time.Duration, bool) {
	if !p.queue.fifo || !p.cfg.heartbeat || rec.attempts >= maxLocalAttempts || p.stopping.Load() {
		return 0, false
	}
	if d, ok := RetryDelay(err); ok {
		return max(d, 0), true
	}
	if rec.attempts == 1 || p.cfg.retryBackoff == nil {
		return 0, true
	}
	return p.cfg.retryBackoff(rec.attempts - 1), true
}

// retryLater runs rec again after delay, unless the stop comes first. It
// returns what the worker goes on with: nothing, or rec given back if the
// stop has begun.
func (p *Pool) retryLater(rec *record, delay time.Duration) *record {
	rec.retryAt = p.cfg.clock.Now().Add(delay)
	p.retryMu.Lock()
	defer p.retryMu.Unlock()
	if p.retriesClosed {
		return rec // the worker sees stopping and gives it back with its group
	}
	if p.retries == nil {
		p.retries = make(map[*record]clock.Timer)
	}
	p.retries[rec] = p.cfg.clock.AfterFunc(delay, func() {
		p.retryMu.Lock()
		defer p.retryMu.Unlock()
		if _, ok := p.retries[rec]; !ok {
			return // the stop took it
		}
		delete(p.retries, rec)
		rec.state.Store(recQueued)
		p.work <- rec // never blocks: rec holds one of the slots work has room for
	})
	return nil
}

// retryLeft is how long a record given back must stay away: what is left of
// the delay its handler asked for (a retry in place the stop cut short), or
// nothing.
func (p *Pool) retryLeft(rec *record) time.Duration {
	return max(rec.retryAt.Sub(p.cfg.clock.Now()), 0)
}

// takeRetries ends the local retries waiting for their backoff and returns
// their records, for the stop to give back.
func (p *Pool) takeRetries() []*record {
	p.retryMu.Lock()
	defer p.retryMu.Unlock()
	p.retriesClosed = true
	var recs []*record
	for rec, t := range p.retries {
		t.Stop()
		recs = append(recs, rec)
	}
	p.retries = nil
	return recs
}

// finish deletes a message that is done with.
func (p *Pool) finish(rec *record) {
	rec.state.Store(recFinished)
	if p.disp.keep(rec, p.cfg.clock.Now()) {
		return // deleted with the rest of its FIFO group's run
	}
	p.deq.delete(rec)
}

// callHandler runs h, turning a panic into a *PanicError.
func callHandler[T any](ctx context.Context, h Handler[T], v *T) error {
	return protect(func() error { return h(ctx, v) })
}

// callDecoder runs decode, turning a panic into a *PanicError: a decoder
// that panics on a body has rejected it, and the decode policy applies.
func callDecoder[T any](decode decoder[T], body string, v *T) error {
	return protect(func() error { return decode(body, v) })
}

// admitHandler waits, under an adaptive limit, until fewer handlers run than
// the limit allows (workers, one per slot the limit may reach, outnumber it).
// It reports false when the pool began to stop meanwhile.
func (p *Pool) admitHandler(w *waiter) bool {
	if p.run == nil {
		return true
	}
	_, err := p.run.wait(p.pollCtx, w, 1, false, nil)
	return err == nil
}

// releaseSlot frees the slot of a message that is done with here.
func (p *Pool) releaseSlot() {
	p.counters.held.Add(-1)
	p.credits.release(1)
}

// giveBack returns unstarted messages to the queue, visible after delay.
func (p *Pool) giveBack(delay time.Duration, recs ...*record) {
	for _, rec := range recs {
		p.brk.unadmit(rec.takeProbe(), 1)
		p.releaseSlot()
		p.deq.setVisibility(rec, delay)
		p.counters.returned.Add(1)
	}
}

func (p *Pool) observeCall(a api, entries int, began time.Time, err error) {
	if p.cfg.observer != nil {
		p.cfg.observer.Call(a.String(), entries, p.cfg.clock.Now().Sub(began), err)
	}
}

func (p *Pool) report(ctx context.Context, m *Message, err error) { p.cfg.report(ctx, m, err) }

// Stats returns the pool's counters now.
func (p *Pool) Stats() Stats {
	limit := p.limit.Load()
	s := p.counters.snapshot()
	s.ConcurrencyLimit = limit
	s.ReadAhead = p.readAhead.Load()
	active, _ := p.recv.running()
	s.Pollers = int64(active)
	s.Breaker, s.BreakerOpens = p.brk.snapshot()
	return s
}

// QueueURL is the URL of the queue the pool consumes.
func (p *Pool) QueueURL() string { return p.queue.url }

// Shutdown stops the pool gracefully: it stops receiving (cancelling the long
// polls in flight), gives every received but unstarted message back to the
// queue at once, lets running handlers finish, and flushes pending deletes.
// When ctx ends first, running handlers are cancelled and Shutdown returns a
// *ShutdownError saying what was cut short. It returns nil when nothing was.
// Calling it again, or after StartPool's context ended, waits for the same
// stop.
//
// A handler may call Shutdown too, with its own context or one derived from
// it (also from a goroutine it starts and waits for). Then the stop begins,
// bounded by ctx's deadline only (the handler's own context ends with the
// handler), and Shutdown returns nil at once, since the stop waits for that
// handler: its message ends by its result, deleted if it returns nil. Wait
// elsewhere reports how the stop went. Called from a handler with an
// unrelated context, Shutdown waits for the stop, which waits for the
// handler: it returns only when that context ends.
func (p *Pool) Shutdown(ctx context.Context) error {
	if h, _ := ctx.Value(handlerKey{}).(*Pool); h == p {
		// The handler's context ends with the handler, which the stop
		// waits for, and lives again for its record's next attempt: the
		// stop keeps only its deadline, read now.
		req := shutdownRequest{ctx: context.Background(), fromHandler: true}
		req.deadline, _ = ctx.Deadline()
		select {
		case p.shutdownReq <- req:
		case <-p.stopBegun:
		}
		return nil
	}
	select {
	case p.shutdownReq <- shutdownRequest{ctx: ctx}:
		// This call's ctx bounds the stop, which always ends: wait for it,
		// final flush included.
		<-p.done
		return p.err
	case <-p.stopBegun:
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return &ShutdownError{Err: ctx.Err()}
	}
}

// Wait blocks until the pool has stopped and every goroutine it started has
// ended, including handlers that outlived a Shutdown deadline, and returns
// the stop's error.
func (p *Pool) Wait() error {
	<-p.done
	<-p.workersDone
	return p.err
}

// shutdownRequest asks supervise to begin the stop, bounded by ctx.
type shutdownRequest struct {
	ctx         context.Context
	fromHandler bool      // Shutdown was called by a handler of this pool
	deadline    time.Time // then: its context's deadline, if any
}

// supervise owns the stop: it begins on the first Shutdown or when the
// parent context ends.
func (p *Pool) supervise(parent context.Context) {
	defer close(p.done)
	var ctx context.Context
	select {
	case req := <-p.shutdownReq:
		ctx = req.ctx
		if req.fromHandler && !req.deadline.IsZero() {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, req.deadline)
			defer cancel()
		}
	case <-parent.Done():
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(parent), p.cfg.shutdownTimeout)
		defer cancel()
	}
	// Deletes that fail for good from now on are counted in the stop's
	// ShutdownError, not only reported to the hook.
	p.deq.stopped.Store(true)
	close(p.stopBegun)
	p.err = p.stop(ctx)
}

// maxReceiveGrace bounds how long a stop lets a receive in flight run on.
const maxReceiveGrace = time.Second

// endReceives waits for the pollers, letting a receive in flight run on for
// twice the time receives that did not wait took (under maxReceiveGrace;
// within ctx) before it cancels it. SQS does not notice that a client cancelled a
// ReceiveMessage: messages it took for it stay in flight for the visibility
// timeout, delivered to nobody. A response already on its way back arrives
// within about one receive latency; one that arrives is given back at once
// like every unstarted message. A long poll still waiting when the grace ends
// is cancelled; SQS keeps it until its wait ends, so a message sent in that
// window can still come back only after its visibility timeout.
func (p *Pool) endReceives(ctx context.Context) {
	p.sizer.mu.Lock()
	grace := 2 * p.sizer.transit
	p.sizer.mu.Unlock()
	done := make(chan struct{})
	go func() {
		p.pollers.Wait()
		close(done)
	}()
	if grace > 0 {
		t := p.cfg.clock.NewTimer(grace)
		select {
		case <-done:
		case <-t.C():
		case <-ctx.Done():
		}
		t.Stop()
	}
	p.recvCancel()
	<-done
}

// flushContext bounds the final flush: it ends when ctx has ended and
// flushTimeout has passed since the flush began, whichever is later.
// Deleting finished work is worth a moment even when the stop's deadline has
// passed or passes meanwhile (a handler that finished just before it), since
// otherwise the work runs again.
func flushContext(ctx context.Context, flushTimeout time.Duration) (context.Context, context.CancelFunc) {
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var mu sync.Mutex
	stopAfter := func() bool { return false }
	t := time.AfterFunc(flushTimeout, func() {
		mu.Lock()
		defer mu.Unlock()
		if fctx.Err() == nil {
			stopAfter = context.AfterFunc(ctx, cancel)
		}
	})
	return fctx, func() {
		t.Stop()
		cancel()
		mu.Lock()
		stopAfter()
		mu.Unlock()
	}
}

// abandonGrace is how long a stop waits for cancelled handlers to return.
const abandonGrace = time.Second

func (p *Pool) stop(ctx context.Context) error {
	log := p.cfg.logger
	// Receiving ends first: a worker that sees stopping gives its record
	// back, and a poller still receiving would take it again at once,
	// burning its receive count, for as long as the two overlap. What a
	// receive in flight still brings (see endReceives) is handled or given
	// back like any other record.
	p.pollCancel()
	p.endReceives(ctx)
	p.stopping.Store(true)
	// Nothing sends on work any more. Give back what no worker has taken.
	// Each record left there is received once, by the stop or by a worker,
	// and whoever receives it owns it: a worker gives it back itself, since
	// it sees stopping. So the stop takes without ever waiting: a worker may
	// take the last record between a look at the queue and a receive.
	var unstarted []*record
	for taking := true; taking; {
		select {
		case rec := <-p.work:
			unstarted = append(unstarted, rec)
		default:
			taking = false
		}
	}
	retrying := p.takeRetries()
	unstarted = append(unstarted, p.disp.drainGroups()...)
	p.giveBack(0, unstarted...)
	// A retry in place comes back after the delay its handler asked for,
	// as it would have without the stop; its group waits behind it in SQS.
	for _, rec := range retrying {
		p.giveBack(p.retryLeft(rec), rec)
	}
	unstarted = append(unstarted, retrying...)
	p.deq.changes.Flush() // at once, not after a linger
	close(p.work)
	p.cfg.verbose.Info("sqspool: stopping", "queue", p.queue.url, "returned", len(unstarted), "running", p.running.Load())

	var serr ShutdownError
	select {
	case <-p.workersDone:
	case <-ctx.Done():
		serr.Cancelled = int(p.running.Load())
		p.handlerCancel()
		for _, rec := range p.disp.inFlight() {
			if rec.state.Load() == recRunning {
				rec.ctx.cancel(context.Canceled)
			}
		}
		t := p.cfg.clock.NewTimer(abandonGrace)
		select {
		case <-p.workersDone:
		case <-t.C():
			serr.Abandoned = int(p.running.Load())
		}
		t.Stop()
	}
	p.bgCancel()
	p.bg.Wait()
	if done := p.disp.takeDone(); len(done) > 0 {
		p.deq.deleteAll(done)
	}
	// From here on, every delete or visibility change that fails is work
	// the stop leaves undone.
	p.deq.closing.Store(true)
	flushCtx, cancel := flushContext(ctx, p.cfg.flushTimeout)
	defer cancel()
	if err := p.deq.close(flushCtx); err != nil {
		log.Warn("sqspool: final flush cut short", "error", err)
	}
	serr.Unflushed = int(p.deq.unflushed.Load())
	p.handlerCancel()
	if serr.Cancelled == 0 && serr.Abandoned == 0 && serr.Unflushed == 0 {
		p.cfg.verbose.Info("sqspool: stopped", "queue", p.queue.url)
		return nil
	}
	serr.Err = ctx.Err()
	log.Warn("sqspool: stopped", "queue", p.queue.url, "error", &serr)
	return &serr
}
