package sqspool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sqspool/sqspool/internal/clock"
)

// BatchHandler handles up to WithBatchSize decoded messages at once, in the
// order they were received (on a FIFO queue, each group's in its order).
// Returning nil means the work of every message is done and durable: they
// are deleted. A BatchErrors (possibly wrapped) gives the outcome of each
// message: those it has an error for fail alone, each with its own
// RetryAfter or NoRetry, and the rest succeed. Any other error, or a
// panic, fails every message of the batch. MessagesFrom(ctx) gives the
// messages' metadata, index for index.
//
// ctx ends when the first of the messages' handler timeouts does, or when a
// stop cuts the batch short.
type BatchHandler[T any] func(ctx context.Context, msgs []T) error

// BatchErrors is a batch handler's outcome per message: the error of
// msgs[i] at key i. Messages without an entry, or with a nil one, succeeded.
// Return it (or wrap it) from a BatchHandler; an empty or nil BatchErrors
// means that every message succeeded.
type BatchErrors map[int]error

func (e BatchErrors) Error() string {
	keys := make([]int, 0, len(e))
	for i, err := range e {
		if err != nil {
			keys = append(keys, i)
		}
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for k, i := range keys {
		parts[k] = fmt.Sprintf("[%d] %v", i, e[i])
	}
	return fmt.Sprintf("sqspool: %d messages of the batch failed: %s", len(keys), strings.Join(parts, "; "))
}

type batchKey struct{}

// MessagesFrom returns the metadata of the messages whose batch handler
// received ctx: msgs[i]'s at index i. MessageFrom reports false in a batch
// handler.
func MessagesFrom(ctx context.Context) ([]*Message, bool) {
	ms, ok := ctx.Value(batchKey{}).([]*Message)
	return ms, ok
}

// Defaults of StartBatchPool.
const (
	defaultBatchSize   = 10
	defaultBatchLinger = 20 * time.Millisecond
)

type batchConfig struct {
	size      int
	sizeSet   bool
	linger    time.Duration
	lingerSet bool
	waiting   func(n int) // tests: a gatherer waits on its linger holding n messages
}

// WithBatchSize sets the most messages a batch handler gets at once
// (default 10). Batches are gathered across receives: a batch larger than
// ten holds the messages of several. A batch pool holds up to WithWorkers
// batches of messages. StartBatchPool only.
func WithBatchSize(n int) Option { return func(c *config) { c.batch.size, c.batch.sizeSet = n, true } }

// WithBatchLinger sets how long a batch that is not full may wait for more
// messages before its handler is called (default 20ms). Under load batches
// fill well before it; at low load it bounds the latency it adds. Zero calls
// the handler with the messages ready at once. StartBatchPool only.
func WithBatchLinger(d time.Duration) Option {
	return func(c *config) { c.batch.linger, c.batch.lingerSet = d, true }
}

func (c *config) validateBatch(batch bool) error {
	b := &c.batch
	if !batch {
		if b.sizeSet || b.lingerSet {
			return errors.New("sqspool: WithBatchSize and WithBatchLinger apply to StartBatchPool only")
		}
		return nil
	}
	switch {
	case b.sizeSet && b.size < 1:
		return fmt.Errorf("sqspool: batch size must be at least 1, got %d", b.size)
	case b.linger < 0:
		return fmt.Errorf("sqspool: batch linger must not be negative, got %v", b.linger)
	case c.adaptive != nil:
		// The limit moves one handler at a time, a batch holds many.
		return errors.New("sqspool: WithAdaptiveConcurrency does not apply to a batch pool")
	}
	if !b.sizeSet {
		b.size = defaultBatchSize
	}
	if !b.lingerSet {
		b.linger = defaultBatchLinger
	}
	return nil
}

// StartBatchPool is StartPool for a BatchHandler: workers gather up to
// WithBatchSize decoded messages, across receives, for at most
// WithBatchLinger, and call h with them. Everything the single-message pool
// does holds for each message of a batch: duplicates are dropped, the
// newest receipt handle is used, the heartbeat keeps every message of a
// running batch invisible, and each message's outcome is settled on its
// own (deleted, retried after its backoff or RetryAfter, or dropped on
// NoRetry), counted in Stats and recorded by the circuit breaker. A body
// that does not decode never enters a batch: the decode policy applies to
// it alone. On a FIFO queue a batch holds the messages of a group in
// order; when one of them fails, the later ones of its group are handled
// as the single pool handles a FIFO failure (retried here behind it, or
// given back with it), whatever the handler said of them. WithWorkers sets
// how many batch handlers run at once; WithAdaptiveConcurrency does not
// apply.
func StartBatchPool[T any](ctx context.Context, c *Consumer, h BatchHandler[T], opts ...Option) (*Pool, error) {
	if c == nil || h == nil {
		return nil, errors.New("sqspool: StartBatchPool needs a Consumer and a handler")
	}
	p, decode, client, err := newPool[T](ctx, c, true, opts)
	if err != nil {
		return nil, err
	}
	b := &batcher[T]{p: p, decode: decode, h: h, size: p.cfg.batch.size, linger: p.cfg.batch.linger, gather: make(chan struct{}, 1)}
	p.serve = b.serve
	p.start(ctx, client)
	return p, nil
}

// batcher runs a batch pool's workers.
type batcher[T any] struct {
	p      *Pool
	decode decoder[T]
	h      BatchHandler[T]
	size   int
	linger time.Duration
	// gather holds a token while a worker gathers a batch: one at a time,
	// so that batches fill instead of every idle worker taking a message.
	// A channel, not a mutex: a worker waiting for its turn is blocked as
	// a channel receive is, which testing/synctest can see (the
	// simulation's clock moves only when every goroutine is).
	gather chan struct{}
}

// serve is a batch pool's worker loop. What a batch leaves to run next (a
// FIFO group's next messages, a retry in place) starts the worker's next
// batch, as the single pool's worker goes on with it.
func (b *batcher[T]) serve() {
	var carry []*record
	for {
		recs, open := b.collect(carry)
		if len(recs) > 0 {
			carry = b.run(recs)
		} else {
			carry = nil
		}
		if !open && len(carry) == 0 {
			return
		}
	}
}

// collect gathers a batch: carry, then what the work channel brings, up to
// the batch size or until the linger ends. It reports false once the work
// channel is closed.
func (b *batcher[T]) collect(carry []*record) (recs []*record, open bool) {
	p := b.p
	recs = make([]*record, 0, b.size)
	for _, rec := range carry {
		recs = b.add(recs, rec)
	}
	if len(recs) >= b.size {
		return recs, true
	}
	if len(recs) > 0 {
		// Work in hand does not wait for another worker's linger.
		select {
		case b.gather <- struct{}{}:
		default:
			return recs, true
		}
	} else {
		b.gather <- struct{}{}
	}
	defer func() { <-b.gather }()
	if len(recs) == 0 {
		rec, ok := <-p.work
		if !ok {
			return nil, false
		}
		recs = b.add(recs, rec)
	}
	// Work in hand (a FIFO group's next messages, a retry in place) takes
	// what is ready but does not linger.
	linger := b.linger
	if len(carry) > 0 {
		linger = 0
	}
	var t clock.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for len(recs) < b.size {
		var rec *record
		var ok bool
		select {
		case rec, ok = <-p.work:
		default:
			if linger <= 0 {
				return recs, true
			}
			if t == nil {
				t = p.cfg.clock.NewTimer(linger)
			}
			if p.cfg.batch.waiting != nil {
				p.cfg.batch.waiting(len(recs))
			}
			select {
			case rec, ok = <-p.work:
			case <-t.C():
				return recs, true
			}
		}
		if !ok {
			return recs, false
		}
		recs = b.add(recs, rec)
	}
	return recs, true
}

// add appends rec to the batch and, on a FIFO queue, the messages waiting
// behind it in its group, in order, as far as the batch has room.
func (b *batcher[T]) add(recs []*record, rec *record) []*record {
	recs = append(recs, rec)
	if b.p.queue.fifo {
		recs = b.p.disp.follow(rec, recs, b.size)
	}
	return recs
}

// A message's place in a batch run.
type batchItem struct {
	rec      *record
	ctx      context.Context
	decodeEr error
	started  bool // its attempt began (startAttempt)
	ran      bool // in the handler's msgs
	done     func(error)
	err      error // the handler's outcome for it
	ok       bool
	delay    time.Duration
	deferred bool // not settled: an earlier message of its FIFO group failed
}

// errGroupFailed is the outcome the observer sees for a FIFO message that
// ran in a batch after a message of its group that failed: it goes back
// with that one, whatever the handler said of it.
var errGroupFailed = errors.New("sqspool: an earlier message of its FIFO group failed")

// run handles one batch and returns what the worker goes on with.
func (b *batcher[T]) run(recs []*record) (carry []*record) {
	p := b.p
	if p.stopping.Load() || (p.brk != nil && !p.brk.allows()) {
		return b.refuse(recs)
	}
	fifo := p.queue.fifo
	items := make([]batchItem, len(recs))
	// A malformed FIFO message stops its group's batch where it stands:
	// the later ones must not run before its fate is known.
	var stopped map[string]bool // FIFO only: written only there
	vals := make([]T, 0, len(recs))
	msgs := make([]*Message, 0, len(recs))
	ran := make([]int, 0, len(recs))
	for i, rec := range recs {
		it := &items[i]
		it.rec = rec
		if fifo && stopped[rec.msg.GroupID] {
			continue
		}
		ctx, v, err := startAttempt(p, rec, b.decode)
		it.ctx, it.started = ctx, true
		if err != nil {
			it.decodeEr = err
			if fifo {
				if stopped == nil {
					stopped = map[string]bool{}
				}
				stopped[rec.msg.GroupID] = true
			}
			continue
		}
		it.ran = true
		vals = append(vals, *v)
		msgs = append(msgs, rec.msg)
		ran = append(ran, i)
	}
	if len(ran) > 0 {
		b.call(items, ran, vals, msgs)
	}
	return b.settle(items)
}

// call runs the handler on the decoded messages (items[ran[k]] is msgs[k])
// and records each one's outcome.
func (b *batcher[T]) call(items []batchItem, ran []int, vals []T, msgs []*Message) {
	p := b.p
	bc := &batchContext{msgs: msgs}
	bc.values, bc.pool = p.handlerCtx, p
	// The batch ends at its earliest message's deadline, and so does the
	// heartbeat of every message in it: a batch handler that ignores its
	// context keeps none of them from everyone else past that.
	var deadline time.Time
	for k, i := range ran {
		it := &items[i]
		if d := it.rec.deadlineAt(true); k == 0 || d.Before(deadline) {
			deadline, bc.deadline = d, it.rec.ctx.deadline
		}
	}
	for _, i := range ran {
		it := &items[i]
		it.rec.mu.Lock()
		it.rec.deadline = deadline
		it.rec.mu.Unlock()
		it.done = func(error) {}
		if p.cfg.observer != nil {
			_, it.done = p.cfg.observer.Start(it.ctx, it.rec.msg)
		}
	}
	for _, i := range ran {
		rec := items[i].rec
		rec.state.Store(recRunning)
		// The watchdog and the stop cancel a message's own context: each
		// ends the batch's.
		rec.ctx.onCancel(bc.cancel)
	}
	if p.handlerCtx.Err() != nil {
		bc.cancel(context.Canceled) // started as the stop cancelled the rest
	}
	p.running.Add(int64(len(ran)))
	err := callBatch(bc, b.h, vals)
	p.running.Add(-int64(len(ran)))
	bc.cancel(context.Canceled)
	for k, e := range p.cfg.batchOutcomes(err, len(ran)) {
		items[ran[k]].err = e
	}
}

// settle settles each message of a batch in order, as the single pool
// settles one, and ends each FIFO group's turn. It returns what the worker
// goes on with.
func (b *batcher[T]) settle(items []batchItem) (carry []*record) {
	p := b.p
	fifo := p.queue.fifo
	var failed map[string]int // FIFO group -> index of its first failure
	for i := range items {
		it := &items[i]
		if fifo {
			if _, ok := failed[it.rec.msg.GroupID]; ok || (!it.ran && it.decodeEr == nil) {
				it.deferred = true
				if it.ran {
					it.rec.state.Store(recFinished)
					it.done(errGroupFailed)
					it.rec.ctx.cancel(context.Canceled)
				}
				continue
			}
		}
		switch {
		case it.decodeEr != nil:
			it.ok, it.delay = p.malformed(it.ctx, it.rec, it.decodeEr)
		default:
			it.rec.state.Store(recFinished)
			it.done(it.err)
			it.rec.ctx.cancel(context.Canceled) // as a WithTimeout's cancel would
			it.ok, it.delay = p.settle(it.ctx, it.rec, it.err)
		}
		if fifo && !it.ok {
			if failed == nil {
				failed = map[string]int{}
			}
			failed[it.rec.msg.GroupID] = i
		}
	}
	if !fifo {
		for i := range items {
			if rec := p.ended(items[i].rec, items[i].ok, items[i].delay); rec != nil {
				carry = append(carry, rec)
			}
		}
		return carry
	}
	// Each group's turn ends with its first failure, or its last message.
	last := map[string]int{}
	back := map[string][]*record{}
	for i := range items {
		it := &items[i]
		gid := it.rec.msg.GroupID
		if it.deferred {
			// Unstarted again: it waits behind its group as it did.
			if it.started {
				it.rec.attempts--
				it.rec.ctx.reset()
			}
			it.rec.state.Store(recQueued)
			back[gid] = append(back[gid], it.rec)
			continue
		}
		last[gid] = i
	}
	for i := range items {
		it := &items[i]
		gid := it.rec.msg.GroupID
		end, isFailed := failed[gid]
		if !isFailed {
			end = last[gid]
		}
		switch {
		case it.deferred:
		case i != end:
			p.releaseSlot()
		default:
			p.disp.requeue(gid, back[gid])
			if rec := p.ended(it.rec, it.ok, it.delay); rec != nil {
				carry = append(carry, rec)
			}
		}
	}
	return carry
}

// refuse gives back a batch that no handler will start, each FIFO group
// once with the rest of its messages.
func (b *batcher[T]) refuse(recs []*record) []*record {
	p := b.p
	seen := map[string]bool{}
	for _, rec := range recs {
		if p.queue.fifo && seen[rec.msg.GroupID] {
			p.giveBack(p.retryLeft(rec), rec)
			continue
		}
		seen[rec.msg.GroupID] = true
		p.refuse(rec)
	}
	return nil
}

// callBatch runs h, turning a panic into a *PanicError.
func callBatch[T any](ctx context.Context, h BatchHandler[T], msgs []T) error {
	return protect(func() error { return h(ctx, msgs) })
}

// batchContext is a batch handler's context: a handlerContext whose value
// is the batch's messages instead of one.
type batchContext struct {
	handlerContext
	msgs []*Message
}

func (c *batchContext) Value(key any) any {
	switch key {
	case batchKey{}:
		return c.msgs
	case messageKey{}:
		return nil
	}
	return c.handlerContext.Value(key)
}

func (c *batchContext) String() string { return "sqspool.batchContext" }

// onCancel calls f with the context's error when it is cancelled, or at
// once if it is already: without a goroutine, unlike AfterFunc then.
func (c *handlerContext) onCancel(f func(error)) {
	c.mu.Lock()
	if err := c.err; err != nil {
		c.mu.Unlock()
		f(err)
		return
	}
	g := func() { f(c.Err()) }
	c.after = append(c.after, &g)
	c.mu.Unlock()
}

// follow appends to recs the messages waiting behind rec in its FIFO group,
// in order, up to size in all. They leave the group's queue: the batch
// holds them, and its worker ends the group's turn (see batcher.settle).
func (d *dispatcher) follow(rec *record, recs []*record, size int) []*record {
	d.groupsMu.Lock()
	defer d.groupsMu.Unlock()
	g := d.groups[rec.msg.GroupID]
	if g == nil {
		return recs
	}
	n := min(size-len(recs), len(g.waiting))
	if n <= 0 {
		return recs
	}
	recs = append(recs, g.waiting[:n]...)
	g.waiting = slices.Clone(g.waiting[n:])
	return recs
}

// requeue puts recs back at the head of group gid's waiting messages, in
// order: a batch took them, and they did not run, or their outcome does not
// count.
func (d *dispatcher) requeue(gid string, recs []*record) {
	if len(recs) == 0 {
		return
	}
	d.groupsMu.Lock()
	defer d.groupsMu.Unlock()
	g := d.groups[gid]
	if g == nil {
		// The group's turn is this batch's: it cannot have ended.
		panic("sqspool: requeue on a group not running")
	}
	g.waiting = append(slices.Clone(recs), g.waiting...)
}
