package sqspool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/sqspool/sqspool/internal/backoff"
	"github.com/sqspool/sqspool/internal/batch"
	"github.com/sqspool/sqspool/internal/clock"
)

// maxBatch is SQS's limit on entries in one batch call.
const maxBatch = 10

// entryIDs are the batch entry ids: an entry's index, distinct in a call by
// construction, as SQS requires.
var entryIDs = func() (ids [maxBatch]string) {
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	return ids
}()

// change is a visibility change for one message.
type change struct {
	rec     *record
	timeout int32 // seconds
	extend  bool  // a heartbeat's: moot once the handler has finished
}

// dequeuer sends deletes and visibility changes in batches of up to ten,
// across all workers, and retries entries that failed transiently.
type dequeuer struct {
	client   Client
	queueURL string
	attempts int
	clock    clock.Clock
	counters *counters
	log      *slog.Logger
	onError  func(*Message, error)
	forget   func(*record) // the message stays in SQS
	gone     func(*record) // SQS deleted the message
	observe  func(a api, entries int, began time.Time, err error)
	deleted  func(*Message)
	jitter   backoff.Source

	deletes   *batch.Batcher[*record]
	changes   *batch.Batcher[change]
	closing   atomic.Bool  // the final flush has begun
	stopped   atomic.Bool  // the stop has begun: a delete failing for good now is the stop's loss
	unflushed atomic.Int64 // entries that failed in the final flush, or were not sent because it ended
}

func newDequeuer(ctx context.Context, d *dequeuer, cfg *config) *dequeuer {
	// Workers that finish faster than deletes are made wait while as many
	// batches wait for a call slot as there are slots: records waiting for
	// their delete stay in memory, and nothing else would bound them.
	d.deletes = batch.New(ctx, batch.Options{
		MaxItems: maxBatch, Linger: cfg.deleteLinger, MaxInFlight: cfg.batchConcurrency,
		MaxReady: cfg.batchConcurrency, Clock: cfg.clock,
	}, nil, d.flushDeletes)
	// Visibility changes (retry delays, FIFO holds, heartbeats) come one
	// message at a time; the same linger makes them share calls. Shutdown
	// flushes the give-backs at once.
	d.changes = batch.New(ctx, batch.Options{
		MaxItems: maxBatch, Linger: cfg.deleteLinger, MaxInFlight: cfg.batchConcurrency, Clock: cfg.clock,
	}, nil, d.flushChanges)
	return d
}

// delete queues a finished message for deletion. The record stays in flight
// (so duplicates are still dropped and its newest handle is used) until SQS
// confirms or refuses the delete.
func (d *dequeuer) delete(rec *record) {
	if err := d.deletes.Add(rec); err != nil {
		d.unsent(rec, "DeleteMessageBatch", err)
	}
}

// deleteAll queues finished messages for deletion in calls of their own,
// sent as soon as a call may start: nothing else fills them (see
// dispatcher.keep).
func (d *dequeuer) deleteAll(recs []*record) {
	if err := d.deletes.AddBatch(recs); err != nil {
		for _, rec := range recs {
			d.unsent(rec, "DeleteMessageBatch", err)
		}
	}
}

// setVisibility queues the visibility change a message's outcome asks for
// (a retry delay, a give-back). The record leaves the in-flight set at once:
// the message is no longer this process's to handle (and an older delivery
// arriving later is not either: see dispatcher.track). From now on no
// heartbeat extension of it is sent; if one is on its way, SQS could apply it
// after this change and hide the message for a whole timeout, so the change
// waits for its answer (see endExtension).
func (d *dequeuer) setVisibility(rec *record, timeout time.Duration) {
	c := change{rec: rec, timeout: visibilitySeconds(rec, timeout, d.clock.Now())}
	rec.mu.Lock()
	rec.outcome = true // before it is forgotten: see dispatcher.track
	parked := rec.extending > 0
	if parked {
		rec.parked = &c
	}
	rec.mu.Unlock()
	d.forget(rec)
	if parked {
		return
	}
	if err := d.changes.Add(c); err != nil {
		d.unsent(rec, "ChangeMessageVisibilityBatch", err)
	}
}

// startExtension is called as an extension's batch entry is built. It
// reports false, and the entry is not sent, when the extension is moot: the
// handler has finished (its delete may be on its way) or the outcome's change
// was made. Otherwise the extension counts as on its way (once: *sent).
func startExtension(rec *record, sent *bool) bool {
	if rec.state.Load() == recFinished {
		return false
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.outcome {
		return false
	}
	if !*sent {
		*sent = true
		rec.extending++
	}
	return true
}

// endExtension is called once an extension that was on its way (*sent) has
// its answer, or will not be sent again. It returns the outcome's change if
// that waited for this extension, to be sent now.
func endExtension(rec *record, sent *bool) *change {
	if !*sent {
		return nil
	}
	*sent = false
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.extending--
	var c *change
	if rec.extending == 0 {
		c, rec.parked = rec.parked, nil
	}
	return c
}

// extend queues a heartbeat: rec stays invisible for timeout from now. At
// SQS's 12 hour cap there is nothing left to extend by, and an "extension" of
// 0 would make the message visible at once: none is sent.
func (d *dequeuer) extend(rec *record, timeout time.Duration) {
	secs := visibilitySeconds(rec, timeout, d.clock.Now())
	if secs <= 0 {
		return
	}
	// A closed batcher means the pool is stopping; the handler's deadline
	// has passed or is about to, so the extension is not needed.
	_ = d.changes.Add(change{rec: rec, timeout: secs, extend: true})
}

// visibilityMargin keeps visibility changes this far inside SQS's 12 hour
// cap: the cap counts from SQS's receive, which we know only to within the
// poll's response time, and a visibility change takes effect only when its
// request reaches SQS. A minute covers both legs of calls slow by tens of
// seconds each; a change past the cap is refused, and the message comes back
// while its handler still runs.
const visibilityMargin = time.Minute

// visibilitySeconds rounds a visibility timeout up to whole seconds and caps
// it, rounding down, so that the message is not kept invisible past 12 hours
// (less visibilityMargin) from its newest receive, which SQS refuses.
func visibilitySeconds(rec *record, timeout time.Duration, now time.Time) int32 {
	left := max(rec.capAt().Sub(now), 0)
	if timeout >= left {
		return int32(left / time.Second)
	}
	return int32((max(timeout, 0) + time.Second - 1) / time.Second)
}

func (d *dequeuer) unsent(rec *record, api string, err error) {
	d.unflushed.Add(1)
	rec.changeAnswered()
	d.forget(rec)
	d.onError(rec.msg, &APIError{API: api, Err: err})
}

// close flushes what is pending and waits for every call to end.
func (d *dequeuer) close(ctx context.Context) error {
	return errors.Join(d.deletes.Close(ctx), d.changes.Close(ctx))
}

func (d *dequeuer) flushDeletes(ctx context.Context, recs []*record) {
	var gens [maxBatch]uint32
	var lay layout
	entries := make([]types.DeleteMessageBatchRequestEntry, 0, maxBatch)
	d.send(ctx, apiDeleteMessageBatch, len(recs), nil,
		func(ctx context.Context, idx []int) ([]string, []types.BatchResultErrorEntry, []int, error) {
			later := lay.reset(idx, func(i int) []string {
				hs, gen := recs[i].receipt()
				gens[i] = gen
				return hs
			})
			entries = entries[:0]
			for j := range lay.n {
				entries = append(entries, types.DeleteMessageBatchRequestEntry{Id: &entryIDs[j], ReceiptHandle: &lay.handles[j]})
			}
			out, err := d.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &d.queueURL, Entries: entries})
			if err != nil {
				return nil, nil, later, err
			}
			succeeded, failed := lay.results(successIDs(out.Successful, func(e types.DeleteMessageBatchResultEntry) *string { return e.Id }), out.Failed)
			return succeeded, failed, later, nil
		},
		func(i int, err error, final bool) bool {
			rec := recs[i]
			if _, gen := rec.receipt(); gen != gens[i] && !final {
				// A newer delivery came meanwhile. The old handle's delete
				// may have deleted nothing, or been refused (as stale or
				// expired): delete with the newer one.
				return true
			}
			if err == nil {
				d.gone(rec)
				d.counters.deleted.Add(1)
				d.deleted(rec.msg)
			} else {
				d.forget(rec)
				d.counters.deleteErrors.Add(1)
				d.failed(rec, err, d.stopped.Load(), false)
			}
			return false
		})
}

func (d *dequeuer) flushChanges(ctx context.Context, chs []change) {
	sent := d.clock.Now()
	var gens [maxBatch]uint32
	var lay layout
	var extending [maxBatch]bool // see startExtension
	var released []change        // outcome changes that waited for an extension here
	end := func(i int) {
		if c := endExtension(chs[i].rec, &extending[i]); c != nil {
			released = append(released, *c)
		}
	}
	entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, 0, maxBatch)
	d.send(ctx, apiChangeMessageVisibilityBatch, len(chs),
		func(idx []int) []int {
			kept := idx[:0]
			for _, i := range idx {
				if !chs[i].extend || startExtension(chs[i].rec, &extending[i]) {
					kept = append(kept, i)
				} else {
					end(i)
				}
			}
			return kept
		},
		func(ctx context.Context, idx []int) ([]string, []types.BatchResultErrorEntry, []int, error) {
			later := lay.reset(idx, func(i int) []string {
				hs, gen := chs[i].rec.receipt()
				gens[i] = gen
				return hs
			})
			entries = entries[:0]
			for j := range lay.n {
				entries = append(entries, types.ChangeMessageVisibilityBatchRequestEntry{
					Id: &entryIDs[j], ReceiptHandle: &lay.handles[j], VisibilityTimeout: chs[lay.owner[j]].timeout,
				})
			}
			out, err := d.client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: &d.queueURL, Entries: entries})
			if err != nil {
				return nil, nil, later, err
			}
			succeeded, failed := lay.results(successIDs(out.Successful, func(e types.ChangeMessageVisibilityBatchResultEntry) *string { return e.Id }), out.Failed)
			return succeeded, failed, later, nil
		},
		func(i int, err error, final bool) bool {
			c := chs[i]
			if _, gen := c.rec.receipt(); gen != gens[i] && !final {
				return true // as for deletes: the newer handle is the one SQS honours
			}
			if c.extend {
				defer end(i)
			} else {
				c.rec.changeAnswered()
			}
			switch {
			case err == nil && c.extend:
				c.rec.extended(sent, time.Duration(c.timeout)*time.Second)
				d.counters.extended.Add(1)
			case err != nil && c.extend && c.rec.state.Load() == recFinished:
				// The handler finished while the heartbeat was on its way,
				// and the message may be deleted already: nothing is lost.
			case err != nil:
				// The message still comes back when its visibility timeout
				// ends; only the timing is lost.
				d.failed(c.rec, err, false, noLongerInFlight(err))
			}
			return false
		})
	if len(released) > 0 {
		// After the extensions they waited for: SQS applies them last.
		d.flushChanges(ctx, released)
	}
}

// failed reports an entry SQS did not apply. lost says it is work the stop
// leaves undone whenever it happened (a finished message's delete once the
// stop has begun: Shutdown's error must count it, see ShutdownError); moot
// says that nothing is left undone by it (see noLongerInFlight).
func (d *dequeuer) failed(rec *record, err error, lost, moot bool) {
	if !moot && (lost || d.closing.Load() || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		d.unflushed.Add(1)
	}
	d.log.Warn("sqspool: batch entry failed; the message will be delivered again", "message_id", rec.msg.ID, "error", err)
	d.onError(rec.msg, err)
}

// noLongerInFlight reports whether SQS refused a visibility change because
// the message is no longer in flight under the handle it was made with: it
// is visible again or was received again (MessageNotInflight), or a newer
// delivery was deleted (InvalidParameterValue: "Message does not exist").
// A retry delay or give-back refused so has nothing left to do: the message
// is back already, or done.
func noLongerInFlight(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.EntryCode {
	case "AWS.SimpleQueueService.MessageNotInflight", "MessageNotInflight":
		return true
	case "InvalidParameterValue":
		return ae.Err != nil && strings.Contains(ae.Err.Error(), "Message does not exist")
	}
	return false
}

func successIDs[E any](es []E, id func(E) *string) []string {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = aws.ToString(id(e))
	}
	return ids
}

// layout lays out one batch call: an entry for each receipt handle of each
// message (two for a message whose deliveries tie; see record.redelivered),
// at most maxBatch in all. Entry j is named entryIDs[j] and made with
// handles[j] for message owner[j].
type layout struct {
	handles [maxBatch]string
	owner   [maxBatch]int
	n       int
}

// reset lays out the messages idx names, with the handles each has now,
// and returns those that did not fit.
func (l *layout) reset(idx []int, handles func(i int) []string) (later []int) {
	l.n = 0
	for _, i := range idx {
		hs := handles(i)
		if l.n+len(hs) > maxBatch {
			later = append(later, i)
			continue
		}
		for _, h := range hs {
			l.handles[l.n], l.owner[l.n] = h, i
			l.n++
		}
	}
	return later
}

// results turns the entries' results into their messages', named
// entryIDs[i] for message i. A refusal is expected of one of a message's
// handles, the stale one: a message succeeded when one of its entries did
// and each of the others was refused for good. It failed when all were
// refused, or for now, when one failed transiently; it has no result while
// one of its entries has none.
func (l *layout) results(succeeded []string, failed []types.BatchResultErrorEntry) ([]string, []types.BatchResultErrorEntry) {
	// An entry's result, ranked: a message's result is its entries' highest.
	const (
		refused = iota + 1
		ok
		transient
		unknown
	)
	var rank [maxBatch]int
	var fail [maxBatch]*types.BatchResultErrorEntry
	for _, id := range succeeded {
		if j, found := entryIndex(id, l.n); found {
			rank[j] = ok
		}
	}
	for k := range failed {
		if j, found := entryIndex(aws.ToString(failed[k].Id), l.n); found && rank[j] == 0 {
			rank[j], fail[j] = refused, &failed[k]
			if !failed[k].SenderFault {
				rank[j] = transient
			}
		}
	}
	var okIDs []string
	var fails []types.BatchResultErrorEntry
	for j := 0; j < l.n; {
		i, worst, first := l.owner[j], 0, j
		for ; j < l.n && l.owner[j] == i; j++ {
			r := cmp.Or(rank[j], unknown)
			if r > worst {
				worst, first = r, j
			}
		}
		switch worst {
		case ok:
			okIDs = append(okIDs, entryIDs[i])
		case refused, transient:
			f := *fail[first]
			f.Id = &entryIDs[i]
			fails = append(fails, f)
		}
	}
	return okIDs, fails
}

// send makes a batch call for entries 0..n-1 and settles each entry's
// outcome through done. Entries that failed transiently (the whole call, or
// the entry with SenderFault false) are sent again, with backoff, up to the
// configured attempts; a permanent failure goes to done at once. done may ask
// for any entry, succeeded or failed, to be sent again (its message has a
// newer receipt handle now): that is a new request, not a retry, and is made
// whatever the attempts so far, until ctx ends. Once done is called with
// final set, no attempt is left and it must settle the entry. prepare, if
// set, picks before each attempt the entries still worth sending; it settles
// those it drops. call reports by entry index; the entries it had no room
// for (see layout) it returns as later, and they go in the next call.
func (d *dequeuer) send(ctx context.Context, a api, n int,
	prepare func(idx []int) []int,
	call func(ctx context.Context, idx []int) (succeeded []string, failed []types.BatchResultErrorEntry, later []int, err error),
	done func(i int, err error, final bool) (again bool),
) {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	pause := backoff.Policy{Base: 50 * time.Millisecond, Max: maxBatchBackoff, Jitter: d.jitter}
	for attempt := 1; ; attempt++ {
		if prepare != nil {
			if idx = prepare(idx); len(idx) == 0 {
				return
			}
		}
		d.counters.api.add(a)
		began := d.clock.Now()
		succeeded, failed, again, err := call(ctx, idx)
		idx = slices.DeleteFunc(idx, func(i int) bool { return slices.Contains(again, i) })
		d.observe(a, len(idx), began, err)
		var retry []int
		transient := false // only SQS's own failures earn a backoff
		last := attempt >= d.attempts || ctx.Err() != nil
		settle := func(i int, err error) {
			if done(i, err, ctx.Err() != nil) {
				again = append(again, i)
			}
		}
		if err != nil {
			d.counters.api.fail(a)
			err = &APIError{API: a.String(), Err: err}
			if retryable(err) && !last {
				retry, transient = idx, true
			} else {
				for _, i := range idx {
					settle(i, err)
				}
			}
		} else {
			reported := make([]bool, n)
			for _, id := range succeeded {
				if i, ok := entryIndex(id, n); ok && !reported[i] {
					reported[i] = true
					settle(i, nil)
				}
			}
			for _, f := range failed {
				i, ok := entryIndex(aws.ToString(f.Id), n)
				if !ok || reported[i] {
					continue
				}
				reported[i] = true
				ferr := &APIError{API: a.String(), EntryCode: aws.ToString(f.Code), Err: errors.New(aws.ToString(f.Message))}
				if f.SenderFault || last {
					settle(i, ferr)
					continue
				}
				retry, transient = append(retry, i), true
			}
			for _, i := range idx {
				switch {
				case reported[i]:
				case last:
					settle(i, &APIError{API: a.String(), Err: errors.New("no result for the entry")})
				default: // neither succeeded nor failed: ask again
					retry, transient = append(retry, i), true
				}
			}
		}
		if len(retry)+len(again) == 0 {
			return
		}
		if ctx.Err() != nil || (len(retry) > 0 && transient && sleep(ctx, d.clock, pause.Delay(attempt-1)) != nil) {
			cut := fmt.Errorf("sqspool: %s not sent after %d attempts: %w", a, attempt, context.Cause(ctx))
			for _, i := range append(retry, again...) {
				done(i, cut, true)
			}
			return
		}
		idx = append(retry, again...)
		slices.Sort(idx)
	}
}

func entryIndex(id string, n int) (int, bool) {
	i, err := strconv.Atoi(id)
	return i, err == nil && i >= 0 && i < n
}

// maxBatchBackoff caps the wait between attempts of a batch call.
const maxBatchBackoff = 10 * time.Second

// retryable reports whether a failed call may succeed if made again: a
// throttle, a server fault, or a transport error. A client fault (a bad
// request, missing permission, no such queue) is final.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return backoff.Throttle(ae.ErrorCode()) || ae.ErrorFault() != smithy.FaultClient
	}
	return true
}

// sleep waits d on clk, or until ctx ends.
func sleep(ctx context.Context, clk clock.Clock, d time.Duration) error {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
