// Package batch groups items handed in by many concurrent callers into
// bounded batches and flushes them with a bounded number of concurrent calls.
//
// A batch is cut when it holds MaxItems items, when the next item would take it
// past MaxBytes, or when its oldest item has waited Linger. While MaxInFlight
// flushes are already running, cut batches wait their turn and new items keep
// filling the pending batch, so batches grow under load by themselves (the
// design of gocloud.dev's batcher, plus a linger so that light load still
// leaves within a bound).
//
// Flushes run on goroutines of the batcher's own, at most MaxInFlight, which
// wait for the next batch between flushes and end in Close.
//
// Every item that Add accepted reaches the flush function exactly once, even
// when Close gives up waiting: then the flush runs with a cancelled context so
// that it can tell its callers the item was not sent. Reporting per-item
// results is the flush function's business.
package batch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sqspool/sqspool/internal/clock"
)

// ErrClosed is returned by Add after Close was called.
var ErrClosed = errors.New("batch: batcher is closed")

// Options configure a Batcher. Zero values take the documented defaults.
type Options struct {
	// MaxItems is the most items in one batch. Required.
	MaxItems int
	// MaxBytes caps the summed size of a batch's items (0: no limit). An item
	// larger than MaxBytes on its own still goes, alone.
	MaxBytes int
	// Linger is how long the first item of a partial batch may wait for more.
	// Zero flushes a partial batch at once when a flush slot is free.
	Linger time.Duration
	// MaxInFlight is how many flushes may run at once (default 1).
	MaxInFlight int
	// MaxReady bounds the cut batches waiting for a flush slot (0: no
	// bound): while that many wait, Add blocks, so that callers that
	// produce items faster than the flushes take them slow down instead
	// of piling them up.
	MaxReady int
	// Clock drives the linger timer (default clock.Real).
	Clock clock.Clock
	// TargetItems, if positive, lets Nudge cut a partial batch before its
	// linger ends while the batches keep TargetItems items on average: every
	// cut adds its size minus TargetItems to a budget (kept within 0 and
	// MaxItems), and an early cut may not take the budget below zero. So
	// full batches pay for the early ones, and at low load (no full
	// batches) partial batches still wait their linger.
	TargetItems float64
}

// Batcher batches items of type T. Create it with New.
type Batcher[T any] struct {
	opts  Options
	size  func(T) int
	flush func(context.Context, []T)

	ctx    context.Context // passed to flushes; cancelled when Close gives up
	cancel context.CancelFunc

	mu           sync.Mutex
	pending      []T
	pendingBytes int
	ready        [][]T
	inFlight     int
	timer        clock.Timer
	timerGen     uint64  // tells a stale linger callback from the armed one
	budget       float64 // items above TargetItems that past cuts saved up
	closed       bool
	room         sync.Cond     // signalled when a ready batch leaves, or on Close (see MaxReady)
	idle         chan struct{} // closed once closed and nothing is left to do
	starting     [][]T         // batches for new flushing goroutines, started by unlock
	handing      [][]T         // batches for parked flushing goroutines, handed over by unlock
	parked       int           // flushing goroutines waiting on work for a batch
	work         chan []T      // to parked flushing goroutines; closed by Close when all is done
	workClosed   bool
	wg           sync.WaitGroup
}

// New returns a Batcher that calls flush with each batch. size reports an
// item's size for MaxBytes; it may be nil when MaxBytes is 0. Flushes receive
// a context derived from ctx.
func New[T any](ctx context.Context, o Options, size func(T) int, flush func(context.Context, []T)) *Batcher[T] {
	if o.MaxItems <= 0 {
		panic("batch: MaxItems must be positive")
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1
	}
	if o.Clock == nil {
		o.Clock = clock.Real
	}
	if size == nil {
		size = func(T) int { return 0 }
	}
	b := &Batcher[T]{opts: o, size: size, flush: flush, idle: make(chan struct{}), work: make(chan []T, o.MaxInFlight)}
	b.room.L = &b.mu
	b.ctx, b.cancel = context.WithCancel(ctx)
	return b
}

// Add hands an item to the batcher. It blocks only while MaxReady batches
// wait for a flush slot; it returns ErrClosed once Close was called.
func (b *Batcher[T]) Add(item T) error {
	b.mu.Lock()
	defer b.unlock()
	for b.opts.MaxReady > 0 && len(b.ready) >= b.opts.MaxReady && !b.closed {
		b.room.Wait()
	}
	if b.closed {
		return ErrClosed
	}
	n := b.size(item)
	if b.opts.MaxBytes > 0 && len(b.pending) > 0 && b.pendingBytes+n > b.opts.MaxBytes {
		b.cutLocked()
	}
	if b.pending == nil {
		b.pending = make([]T, 0, b.opts.MaxItems)
	}
	b.pending = append(b.pending, item)
	b.pendingBytes += n
	if len(b.pending) >= b.opts.MaxItems || (b.opts.MaxBytes > 0 && b.pendingBytes >= b.opts.MaxBytes) {
		b.cutLocked()
	} else if b.opts.Linger <= 0 {
		if b.inFlight < b.opts.MaxInFlight && len(b.ready) == 0 {
			b.cutLocked()
		}
	} else if b.timer == nil {
		b.timerGen++
		gen := b.timerGen
		b.wg.Add(1) // Done by the callback, or by cutLocked when Stop wins
		b.timer = b.opts.Clock.AfterFunc(b.opts.Linger, func() { b.onLinger(gen) })
	}
	b.dispatchLocked()
	return nil
}

// AddBatch hands items to the batcher as batches of their own, of MaxItems
// at most (MaxBytes is not applied), ready to flush at once: for items that
// must not wait for others to fill a batch. It never blocks, whatever
// MaxReady: its callers bound what they hand in.
func (b *Batcher[T]) AddBatch(items []T) error {
	b.mu.Lock()
	defer b.unlock()
	if b.closed {
		return ErrClosed
	}
	for len(items) > 0 {
		n := min(len(items), b.opts.MaxItems)
		b.ready = append(b.ready, items[:n:n])
		items = items[n:]
	}
	b.dispatchLocked()
	return nil
}

// Flush cuts the pending partial batch now instead of waiting for the linger.
func (b *Batcher[T]) Flush() {
	b.mu.Lock()
	defer b.unlock()
	b.cutLocked()
	b.dispatchLocked()
}

// Nudge tells the batcher that no item is coming soon (every caller it
// serves is waiting on it): the pending partial batch leaves now, without
// waiting out its linger, if a flush slot is free and the budget of
// Options.TargetItems allows it. Without TargetItems it does nothing.
func (b *Batcher[T]) Nudge() {
	b.mu.Lock()
	defer b.unlock()
	if b.opts.TargetItems <= 0 || len(b.pending) == 0 || len(b.ready) > 0 || b.inFlight >= b.opts.MaxInFlight ||
		b.budget+float64(len(b.pending))-b.opts.TargetItems < 0 {
		return
	}
	b.cutLocked()
	b.dispatchLocked()
}

// Drain turns the linger off for good and cuts the pending partial batch:
// from now on a partial batch goes as soon as a flush slot is free. For an
// owner that is shutting down but still adds items (the last steps of its
// callers' work), so that they need not wait out a linger.
func (b *Batcher[T]) Drain() {
	b.mu.Lock()
	defer b.unlock()
	b.opts.Linger = 0
	b.cutLocked()
	b.dispatchLocked()
}

// Pending returns how many accepted items wait for a flush to start.
func (b *Batcher[T]) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.pending)
	for _, r := range b.ready {
		n += len(r)
	}
	return n
}

// Waiting calls f, under the batcher's lock, for every accepted item that no
// flush has taken yet, oldest first. f must not call the batcher.
func (b *Batcher[T]) Waiting(f func(T)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.ready {
		for _, item := range r {
			f(item)
		}
	}
	for _, item := range b.pending {
		f(item)
	}
}

// Close flushes everything pending and waits for all flushes to finish. If ctx
// ends first, the flushes still running are cancelled, the batches not yet
// started are flushed with a cancelled context, and Close returns ctx.Err()
// once every flush has returned. No goroutine of the batcher is left after
// Close returns.
func (b *Batcher[T]) Close(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		b.room.Broadcast() // blocked Adds return ErrClosed
		b.cutLocked()
		b.dispatchLocked()
		b.checkIdleLocked()
	}
	b.unlock()
	var err error
	select {
	case <-b.idle:
	case <-ctx.Done():
		err = ctx.Err()
		b.cancel()
		<-b.idle
	}
	b.mu.Lock()
	if !b.workClosed { // nothing is dispatched once idle: no send can follow
		b.workClosed = true
		close(b.work)
	}
	b.mu.Unlock()
	b.wg.Wait()
	b.cancel()
	return err
}

func (b *Batcher[T]) onLinger(gen uint64) {
	defer b.wg.Done()
	b.mu.Lock()
	defer b.unlock()
	if b.timer == nil || gen != b.timerGen {
		return // stopped after it had already fired
	}
	b.timer = nil
	b.cutLocked()
	b.dispatchLocked()
	b.checkIdleLocked()
}

// cutLocked moves the pending items into a ready batch.
func (b *Batcher[T]) cutLocked() {
	if b.timer != nil {
		if b.timer.Stop() {
			b.wg.Done()
		}
		b.timer = nil
	}
	if len(b.pending) == 0 {
		return
	}
	if b.opts.TargetItems > 0 {
		b.budget = min(max(b.budget+float64(len(b.pending))-b.opts.TargetItems, 0), float64(b.opts.MaxItems))
	}
	b.ready = append(b.ready, b.pending)
	b.pending = nil
	b.pendingBytes = 0
}

// dispatchLocked claims flush slots for ready batches while slots are free;
// unlock hands them to parked flushing goroutines, or starts new ones.
func (b *Batcher[T]) dispatchLocked() {
	for len(b.ready) > 0 && b.inFlight < b.opts.MaxInFlight {
		if b.parked > 0 {
			b.parked--
			b.handing = append(b.handing, b.claimLocked())
			continue
		}
		b.wg.Add(1)
		b.starting = append(b.starting, b.claimLocked())
	}
}

// claimLocked takes the oldest ready batch into a flush slot.
func (b *Batcher[T]) claimLocked() []T {
	items := b.ready[0]
	b.ready[0] = nil
	b.ready = b.ready[1:]
	b.room.Broadcast()
	b.inFlight++
	return items
}

// unlock releases mu and then starts the flushes dispatchLocked claimed:
// starting a goroutine under mu would hold up every concurrent Add.
func (b *Batcher[T]) unlock() {
	start, hand := b.starting, b.handing
	b.starting, b.handing = nil, nil
	b.mu.Unlock()
	for _, items := range hand {
		b.work <- items // never blocks: one buffered slot per flush slot
	}
	for _, items := range start {
		go b.run(items)
	}
}

// run flushes items, then the batches that are ready by then, and then
// waits, parked, for the next batch dispatchLocked hands it, until Close. A
// flushing goroutine that lives on keeps the stack its flushes grew (a call
// through the SDK is deep); one per batch would grow a new stack each time.
// There are at most MaxInFlight of them.
func (b *Batcher[T]) run(items []T) {
	defer b.wg.Done()
	for {
		b.flush(b.ctx, items)
		b.mu.Lock()
		b.inFlight--
		// With no linger, what piled up during this flush goes next.
		if b.opts.Linger <= 0 || b.closed {
			if len(b.ready) == 0 {
				b.cutLocked()
			}
		}
		if len(b.ready) > 0 {
			items = b.claimLocked()
			b.dispatchLocked() // more ready batches for free slots, if any
			b.unlock()
			continue
		}
		b.checkIdleLocked()
		b.parked++
		b.unlock()
		var ok bool
		if items, ok = <-b.work; !ok {
			return
		}
	}
}

func (b *Batcher[T]) checkIdleLocked() {
	if !b.closed || b.inFlight > 0 || len(b.ready) > 0 || len(b.pending) > 0 {
		return
	}
	select {
	case <-b.idle:
	default:
		close(b.idle)
	}
}
