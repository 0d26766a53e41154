package sqspool

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/internal/clock"
)

// The life of a record.
const (
	recQueued   int32 = iota // received, waiting for a worker (or behind its FIFO group)
	recRunning               // a handler has it
	recFinished              // handled; a delete or visibility change may be pending
	recRetrying              // failed, to run again here after a backoff (FIFO; see Pool.localRetry)
)

// record is the one in-flight entry of a message in this process, from
// receive until it is deleted or given back. It serves dedup (one record per
// MessageId), deletes and visibility changes (the newest receipt handles), the
// heartbeat (when SQS would hand the message out again) and FIFO ordering.
type record struct {
	msg      *Message // points at m
	m        Message
	ctx      handlerContext
	state    atomic.Int32
	attempts int // handler runs of this delivery; only its worker touches it
	// cut says that the receive that brought rec may have left more of its
	// FIFO group at SQS: rec was the last message of a full response.
	cut     bool
	retryAt time.Time     // when its retry in place is due; its worker sets it, the stop reads it after takeRetries
	probe   atomic.Uint64 // the breaker admission it holds, if a probe; see takeProbe

	mu           sync.Mutex
	handles      []string  // the newest delivery's receipt handle; more than one if receive counts tie (see redelivered)
	receives     int       // the receive count of that delivery
	gen          uint32    // bumped whenever handles change
	receivedAt   time.Time // when the poll of that delivery was sent: SQS's 12 h count began no earlier
	visibleUntil time.Time // when SQS would deliver the message again
	deadline     time.Time // when the handler's context ends (the current or last attempt's)
	// nextDeadline is the newest delivery's: the next attempt of a record
	// kept here (a FIFO retry in place) has its handler timeout from the
	// delivery that came after the last, not from the first.
	nextDeadline time.Time

	// The message's visibility changes, kept in order (see
	// dequeuer.setVisibility): the last one SQS applies must be the one
	// its outcome asked for.
	extending int     // heartbeat extensions sent and not yet answered
	outcome   bool    // the outcome's change was made: extensions are moot
	parked    *change // that change, waiting for the extensions on their way
	answered  bool    // SQS answered the outcome's change (or it will not be sent)
}

// changing reports whether rec's outcome asked for a visibility change that
// SQS has not answered yet: until then SQS may still apply it.
func (r *record) changing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.outcome && !r.answered
}

// changeAnswered records that the outcome's change has its answer.
func (r *record) changeAnswered() {
	r.mu.Lock()
	r.answered = true
	r.mu.Unlock()
}

// newest returns the receive count of the newest delivery rec knows.
func (r *record) newest() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.receives
}

// takeProbe takes the breaker admission rec was received with (0 if none),
// so that whichever path ends rec's life settles it exactly once.
func (r *record) takeProbe() uint64 { return r.probe.Swap(0) }

// receipt returns the newest receipt handles and their generation. The
// slice is never changed in place: it is the caller's to read.
func (r *record) receipt() ([]string, uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.handles, r.gen
}

// redelivered records another delivery of the message, given as the record
// it would have had: its handle, when it was received, and the visibility
// timeout it started. Concurrent receives can hand deliveries over out of
// order; the receive count tells which is newer. With equal counts nothing
// does (ApproximateReceiveCount is approximate), so both handles are kept
// and deletes and visibility changes are made with each: SQS honours the
// newer one, and refuses or ignores the other. Timing is taken from the
// earlier delivery, so that the heartbeat stays ahead of both.
func (r *record) redelivered(d *record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := d.handles[0]
	switch {
	case d.receives > r.receives:
		r.handles, r.receives = d.handles, d.receives
		r.receivedAt, r.visibleUntil = d.receivedAt, d.visibleUntil
		if d.deadline.After(r.nextDeadline) {
			r.nextDeadline = d.deadline
		}
	case d.receives == r.receives && len(r.handles) < maxBatch && !slices.Contains(r.handles, h):
		r.handles = append(r.handles[:len(r.handles):len(r.handles)], h) // a copy: see receipt
		if d.receivedAt.Before(r.receivedAt) {
			r.receivedAt = d.receivedAt
		}
		if d.visibleUntil.Before(r.visibleUntil) {
			r.visibleUntil = d.visibleUntil
		}
	default:
		return
	}
	r.gen++
}

// capAt is when the newest delivery's visibility reaches SQS's 12 hour cap,
// less a margin for the time between SQS's receive and ours.
func (r *record) capAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.receivedAt.Add(maxVisibility - visibilityMargin)
}

// beginAttempt returns the deadline of an attempt starting at now: the
// newest delivery's, if one came since the record was made. With fresh set
// (the heartbeat is on) a message that waited here for its turn (behind its
// FIFO group, read ahead, or for a retry in place) gets its whole handler
// timeout from now, as fresh gives it for the newest delivery's poll sent
// at sent: the timeout bounds a handler's run, not the wait before it. That
// holds only while SQS keeps the message invisible for keep more, time for
// the heartbeat to take it on; past that SQS may have handed it to another
// consumer, and the attempt keeps the deadline it had.
func (r *record) beginAttempt(now time.Time, fresh func(sent, now time.Time) time.Time, keep time.Duration) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nextDeadline.After(r.deadline) {
		r.deadline = r.nextDeadline
	}
	if fresh != nil && r.visibleUntil.Sub(now) >= keep {
		if d := fresh(r.receivedAt, now); d.After(r.deadline) {
			r.deadline = d
		}
	}
	return r.deadline
}

// deadlineAt is when the heartbeat stops keeping rec: its running attempt's
// deadline, or the one its next attempt will have.
func (r *record) deadlineAt(running bool) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !running && r.nextDeadline.After(r.deadline) {
		return r.nextDeadline
	}
	return r.deadline
}

func (r *record) visibleAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.visibleUntil
}

// extended records that SQS accepted a visibility change made at sent.
func (r *record) extended(sent time.Time, timeout time.Duration) {
	r.mu.Lock()
	if t := sent.Add(timeout); t.After(r.visibleUntil) {
		r.visibleUntil = t
	}
	r.mu.Unlock()
}

// group is the state of one FIFO message group in this process.
type group struct {
	running bool      // a worker has one of its messages
	waiting []*record // received, in order, behind the running one
	// After a failure the group is held until the failed message comes
	// back (or until its delay ends, in case it never does).
	heldUntil time.Time
	heldFor   string // MessageId of the failed message
	// done are the group's finished messages whose deletes wait for the
	// end of its run here (see dispatcher.keep).
	done []*record
}

// dispatcher turns received SQS messages into records, drops duplicates of
// messages already in flight here, keeps FIFO groups in order, and queues
// the rest for the workers.
type dispatcher struct {
	queueURL   string
	fifo       bool
	visibility time.Duration
	deadline   func(sent, arrived time.Time) time.Time
	clock      clock.Clock
	credits    *credits
	counters   *counters
	work       chan *record
	hold       func(rec *record, d time.Duration) // gives a held FIFO message back
	// deleteNow deletes a FIFO group's finished messages in calls of their
	// own, sent at once (see keep).
	deleteNow func(recs []*record)
	observer  Observer // nil: none
	breaker   *breaker // nil: none

	inflightMu sync.Mutex
	inflight   map[string]*record // MessageId -> its record
	gone       map[string]gone    // MessageId -> what its record knew when it was forgotten undeleted

	groupsMu   sync.Mutex
	groups     map[string]*group
	doneClosed bool // the stop took the held deletes: keep holds no more
}

// dispatch is called by pollers with what one receive returned; sent is when
// the receive was sent, the earliest moment SQS may have started the
// messages' visibility timeouts, which is what the heartbeat counts from.
// Handler timeouts count from now, when the messages arrived. It never
// blocks: the work channel holds as many records as there are slots.
func (d *dispatcher) dispatch(msgs []types.Message, sent time.Time) {
	d.dispatchProbes(msgs, sent, 0, 0)
}

// dispatchProbes is dispatch for messages received with the breaker's probe
// admission probe (see breaker.admit), which each new record holds, by a
// receive that asked for asked messages (0: unknown).
//
// Every message of the response takes its place (behind its FIFO group's
// running message, or among those ready to start) before any reaches a
// worker. A worker could otherwise finish a group's first message, failed
// and given back, before the next one of the same response entered the
// group: that one would find no group and start as its head, ahead of the
// message before it.
func (d *dispatcher) dispatchProbes(msgs []types.Message, sent time.Time, probe uint64, asked int) {
	now := d.clock.Now()
	var buf [maxBatch]*record
	ready := buf[:0]
	for i := range msgs {
		rec := &record{
			handles: []string{deref(msgs[i].ReceiptHandle)}, deadline: d.deadline(sent, now),
			receivedAt: sent, visibleUntil: sent.Add(d.visibility),
		}
		m := &rec.m
		fillMessage(m, d.queueURL, msgs[i], now)
		rec.msg, rec.receives = m, m.ReceiveCount
		if d.observer != nil {
			d.observer.Received(m)
		}
		if old, loaded := d.track(rec, now); loaded {
			// A second delivery of a message still in flight here: keep only
			// its newest receipt handle, which is the one SQS honours (or
			// both, when nothing tells which is newer). Or an older delivery
			// of one given back (old is nil; see track): dropped.
			if old != nil {
				old.redelivered(rec)
			}
			// Counted once the handle is stored: what Stats says has happened has.
			d.counters.received.Add(1)
			d.counters.duplicates.Add(1)
			d.credits.release(1)
			d.breaker.unadmit(probe, 1)
			continue
		}
		rec.probe.Store(probe)
		d.counters.received.Add(1)
		d.counters.held.Add(1)
		if d.fifo {
			// SQS fills a FIFO receive with as many of a group's messages
			// as it can before it moves on to another group: only the last
			// group of a full response may have more at SQS.
			rec.cut = asked > 0 && i == len(msgs)-1 && len(msgs) >= asked
			start, holdFor := d.enterGroup(rec, now)
			if !start {
				if holdFor > 0 {
					d.hold(rec, holdFor)
				}
				continue
			}
		}
		ready = append(ready, rec)
	}
	for _, rec := range ready {
		d.work <- rec
	}
}

// enterGroup reports whether rec may start now. If its group is busy, rec
// waits behind the group's running message; if the group is held after a
// failure, rec must go back to the queue for holdFor.
func (d *dispatcher) enterGroup(rec *record, now time.Time) (start bool, holdFor time.Duration) {
	d.groupsMu.Lock()
	defer d.groupsMu.Unlock()
	g := d.groups[rec.msg.GroupID]
	if g == nil {
		g = &group{}
		d.groups[rec.msg.GroupID] = g
	}
	if !g.heldUntil.IsZero() {
		if rec.msg.ID != g.heldFor && now.Before(g.heldUntil) {
			return false, g.heldUntil.Sub(now)
		}
		g.heldUntil, g.heldFor = time.Time{}, ""
	}
	if g.running {
		g.waiting = append(g.waiting, rec)
		return false, 0
	}
	g.running = true
	return true, 0
}

// next is called when rec's handling ended. On a FIFO queue it returns the
// group's next message if rec succeeded. If rec failed and comes back after
// delay, the group's waiting messages are returned as released (handling
// them now would break the group's order) and the group is held until rec
// is delivered again.
func (d *dispatcher) next(rec *record, ok bool, delay time.Duration) (next *record, released []*record) {
	if !d.fifo {
		return nil, nil
	}
	var done []*record
	d.groupsMu.Lock()
	defer func() {
		d.groupsMu.Unlock()
		if len(done) > 0 {
			d.deleteNow(done)
		}
	}()
	gid := rec.msg.GroupID
	g := d.groups[gid]
	if g == nil {
		return nil, nil
	}
	if !ok || len(g.waiting) == 0 {
		// The run ends here: its held deletes go now.
		done, g.done = g.done, nil
	}
	if !ok {
		released, g.waiting, g.running = g.waiting, nil, false
		if delay > 0 {
			g.heldUntil, g.heldFor = d.clock.Now().Add(delay), rec.msg.ID
		}
	} else if len(g.waiting) > 0 {
		next = g.waiting[0]
		g.waiting = g.waiting[1:]
		return next, nil
	}
	g.running = false
	if g.heldUntil.IsZero() {
		delete(d.groups, gid)
	}
	return nil, released
}

// keep holds the delete of rec, which is done with, until the end of its
// FIFO group's run here, if that run ends with a message that may have more
// of the group behind it at SQS (see record.cut). SQS delivers no more of a
// group until every message of it in flight is deleted: the run's deletes
// then go in one call, at once, when its last message finishes, rather
// than each waiting for a batch to fill with others. A delete is held only
// while its message has more than half a visibility timeout left; the
// watchdog lets it go before that runs out (see releaseDone). It reports
// whether rec is held.
func (d *dispatcher) keep(rec *record, now time.Time) bool {
	if !d.fifo || d.deleteNow == nil {
		return false
	}
	d.groupsMu.Lock()
	defer d.groupsMu.Unlock()
	g := d.groups[rec.msg.GroupID]
	switch {
	case d.doneClosed || g == nil:
		return false
	case !rec.cut && (len(g.waiting) == 0 || !g.waiting[len(g.waiting)-1].cut):
		return false
	case rec.visibleAt().Sub(now) <= d.visibility/2:
		return false
	}
	g.done = append(g.done, rec)
	return true
}

// releaseDone deletes now the held deletes of each group one of whose
// messages is visible again within soon: a long handler (or a retry's
// backoff) later in the run must not outlast their visibility.
func (d *dispatcher) releaseDone(now time.Time, soon time.Duration) {
	if !d.fifo {
		return
	}
	var due [][]*record
	d.groupsMu.Lock()
	for _, g := range d.groups {
		for _, rec := range g.done {
			if rec.visibleAt().Sub(now) <= soon {
				due, g.done = append(due, g.done), nil
				break
			}
		}
	}
	d.groupsMu.Unlock()
	for _, recs := range due {
		d.deleteNow(recs)
	}
}

// takeDone ends the holding of deletes and returns those held, for the
// stop to send.
func (d *dispatcher) takeDone() []*record {
	if !d.fifo {
		return nil
	}
	d.groupsMu.Lock()
	defer d.groupsMu.Unlock()
	d.doneClosed = true
	var out []*record
	for _, g := range d.groups {
		out = append(out, g.done...)
		g.done = nil
	}
	return out
}

// pruneGroups forgets holds that have ended, so that the group map does not
// grow with every group that ever failed.
func (d *dispatcher) pruneGroups(now time.Time) {
	if !d.fifo {
		return
	}
	d.groupsMu.Lock()
	defer d.groupsMu.Unlock()
	for id, g := range d.groups {
		if !g.running && len(g.waiting) == 0 && len(g.done) == 0 && !now.Before(g.heldUntil) {
			delete(d.groups, id)
		}
	}
}

// drainGroups removes every FIFO message still waiting behind its group.
func (d *dispatcher) drainGroups() []*record {
	if !d.fifo {
		return nil
	}
	d.groupsMu.Lock()
	defer d.groupsMu.Unlock()
	var out []*record
	for _, g := range d.groups {
		out = append(out, g.waiting...)
		g.waiting = nil
	}
	return out
}

// gone is what a forgotten record knew: an older delivery of its message,
// from a receive that overlapped the newest, may still arrive.
type gone struct {
	receives int       // the newest delivery's receive count
	rec      *record   // its outcome's visibility change may be on its way
	until    time.Time // when it is forgotten too
}

// track adds rec to the in-flight set, unless its message is there already
// (old is that record), or rec is an older delivery of a message whose
// record was forgotten (old is nil). SQS applies a visibility change or
// delete only with the newest delivery's handle: an older delivery that ran
// would have its message made visible under it by the given-back record's
// change, or could not delete it, or would run a message deleted already.
// So it is dropped: an undeleted message comes back when the newest
// delivery's visibility ends. With equal receive counts nothing tells which
// is newer; it is dropped only while the forgotten record's change may
// still be applied.
func (d *dispatcher) track(rec *record, now time.Time) (old *record, loaded bool) {
	d.inflightMu.Lock()
	defer d.inflightMu.Unlock()
	id := rec.msg.ID
	if old, loaded = d.inflight[id]; loaded {
		return old, true
	}
	if g, ok := d.gone[id]; ok {
		if rec.receives < g.receives || rec.receives == g.receives && g.rec.changing() {
			return nil, true
		}
		delete(d.gone, id)
	}
	d.inflight[id] = rec
	return rec, false
}

// forget ends rec's in-flight life in this process, its message not
// deleted: what rec knew is kept for a visibility timeout (see track).
func (d *dispatcher) forget(rec *record) {
	d.untrack(rec, false)
}

// forgetDeleted ends the in-flight life of rec, whose message SQS deleted.
// What it knew is kept too if an older delivery can exist (the newest was
// not the first): most messages are received once and leave nothing.
func (d *dispatcher) forgetDeleted(rec *record) {
	d.untrack(rec, true)
}

func (d *dispatcher) untrack(rec *record, deleted bool) {
	rec.state.Store(recFinished)
	receives := rec.newest()
	remember := !deleted || receives > 1
	d.inflightMu.Lock()
	defer d.inflightMu.Unlock()
	id := rec.msg.ID
	if d.inflight[id] != rec {
		return
	}
	delete(d.inflight, id)
	if remember {
		if d.gone == nil {
			d.gone = make(map[string]gone)
		}
		d.gone[id] = gone{receives: receives, rec: rec, until: d.clock.Now().Add(d.visibility)}
	}
}

// pruneGone forgets what forgotten records knew once no older delivery of
// theirs can be on its way any more: a visibility timeout later, and their
// change answered.
func (d *dispatcher) pruneGone(now time.Time) {
	d.inflightMu.Lock()
	defer d.inflightMu.Unlock()
	for id, g := range d.gone {
		if now.After(g.until) && !g.rec.changing() {
			delete(d.gone, id)
		}
	}
}

// inFlight returns the records in flight now.
func (d *dispatcher) inFlight() []*record {
	d.inflightMu.Lock()
	defer d.inflightMu.Unlock()
	recs := make([]*record, 0, len(d.inflight))
	for _, r := range d.inflight {
		recs = append(recs, r)
	}
	return recs
}
