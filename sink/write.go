package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/sqspool/sqspool/internal/backoff"
	"github.com/sqspool/sqspool/internal/batch"
	"github.com/sqspool/sqspool/sink/internal/ddbitem"
)

// entry is one item of a Put on its way through the batcher.
type entry struct {
	req   *request
	index int    // position in the Put call
	table string // the results table, or the idempotency table for a record
	item  map[string]types.AttributeValue
	key   string // table and canonical primary key, "" when the item lacks a key attribute
	wire  int    // estimated bytes in a BatchWriteItem request
	// lease, for the writes of an idempotent Put, must still be held when
	// the entry is sent.
	lease *lease
	done  bool // guarded by req.mu
}

// entryKey identifies an item by table and primary key; "" when the item
// lacks a key attribute.
func entryKey(table string, item map[string]types.AttributeValue, hash, rangeKey string) string {
	k, ok := ddbitem.Key(item, hash, rangeKey)
	if !ok {
		return ""
	}
	return table + "\x00" + k
}

// request tracks the entries one Put handed to the batcher and wakes the Put
// once every one of them is settled.
type request struct {
	ctx context.Context

	mu      sync.Mutex
	pending int
	failed  []ItemError
	lastErr error // the latest retryable failure, for the error if ctx ends
	done    chan struct{}
	// leave, if set, runs once: when done closes or the caller stops
	// waiting, whichever is first (not when the caller's goroutine runs
	// again, which may be much later under load).
	leave func()
}

func newRequest(ctx context.Context, n int) *request {
	return &request{ctx: ctx, pending: n, done: make(chan struct{})}
}

// settle records e's outcome: nil for durable.
func (r *request) settle(e *entry, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.done {
		return
	}
	e.done = true
	if err != nil {
		r.failed = append(r.failed, ItemError{Index: e.index, Err: err})
	}
	r.pending--
	if r.pending == 0 {
		close(r.done)
		r.leftLocked()
	}
}

// left runs leave unless it ran.
func (r *request) left() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leftLocked()
}

func (r *request) leftLocked() {
	if r.leave != nil {
		r.leave()
		r.leave = nil
	}
}

func (r *request) setLastErr(err error) {
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
}

// ctxErr is the failure of an item whose caller's context ended: the
// context's cause plus, if there was one, why the last attempt failed.
func (r *request) ctxErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ctxErrLocked()
}

func (r *request) ctxErrLocked() error {
	if r.lastErr != nil {
		return fmt.Errorf("%w (last attempt: %w)", context.Cause(r.ctx), r.lastErr)
	}
	return context.Cause(r.ctx)
}

// result returns the failures among entries; entries not settled yet (the
// caller's context ended first) count as failed.
func (r *request) result(entries []*entry) []ItemError {
	r.mu.Lock()
	defer r.mu.Unlock()
	failed := append([]ItemError(nil), r.failed...)
	for _, e := range entries {
		if !e.done {
			failed = append(failed, ItemError{Index: e.index, Err: r.ctxErrLocked()})
		}
	}
	return failed
}

// submit writes a Put's prepared entries and reports the failures. Entries
// sharing a key go in rounds, one after the other, so that the later write
// of a key lands last.
func (s *DynamoDB[T]) submit(ctx context.Context, entries []*entry) error {
	var failed []ItemError
	for i, round := range splitRounds(entries) {
		if i > 0 {
			s.st.deferred.Add(int64(len(round)))
		}
		if len(failed) > 0 || ctx.Err() != nil {
			// An earlier write failed (a later write of the same key must
			// not land in its place out of order) or the caller gave up.
			cause := ErrNotSent
			if ctx.Err() != nil {
				cause = context.Cause(ctx)
			}
			for _, e := range round {
				failed = append(failed, ItemError{Index: e.index, Err: cause})
			}
			continue
		}
		failed = append(failed, s.send(ctx, round)...)
	}
	return newWriteError(len(entries), failed)
}

// send hands entries to the batcher and waits until they are settled or ctx
// ends.
func (s *DynamoDB[T]) send(ctx context.Context, entries []*entry) []ItemError {
	req := newRequest(ctx, len(entries))
	req.leave = s.callers.leave
	s.callers.wait(s.o.clock.Now())
	for i, e := range entries {
		e.req = req
		if err := s.batcher.Add(e); err != nil {
			if errors.Is(err, batch.ErrClosed) {
				err = ErrClosed
			}
			for _, e := range entries[i:] {
				req.settle(e, err)
			}
			break
		}
	}
	if s.callers.allWaiting() {
		s.batcher.Nudge()
	}
	defer req.left()
	if s.handedOver != nil {
		s.handedOver(ctx, len(entries))
	}
	select {
	case <-req.done:
	case <-ctx.Done():
	}
	return req.result(entries)
}

// splitRounds splits entries into groups without repeated keys, keeping the
// order of the writes of each key: the n-th write of a key goes in group n.
func splitRounds(entries []*entry) [][]*entry {
	if len(entries) < 2 {
		return [][]*entry{entries}
	}
	var rounds [][]*entry
	seen := make(map[string]int, len(entries))
	for _, e := range entries {
		r := 0
		if e.key != "" {
			r = seen[e.key]
			seen[e.key] = r + 1
		}
		if r == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[r] = append(rounds[r], e)
	}
	return rounds
}

// flush is the batcher's flush function: it writes one batch, in rounds
// when keys repeat, and settles every entry.
func (s *DynamoDB[T]) flush(ctx context.Context, entries []*entry) {
	ctx, release := untilAllDone(ctx, entries)
	defer release()
	for i, round := range splitRounds(entries) {
		if i > 0 {
			s.st.deferred.Add(int64(len(round)))
		}
		s.writeBatch(ctx, round)
	}
}

// errCallersGone is the cause of a flush context cancelled because every
// caller waiting for the batch gave up.
var errCallersGone = errors.New("sink: every caller of the batch gave up")

// untilAllDone returns a context derived from parent that is also cancelled
// once the contexts of all callers with entries in the batch are done, so
// that a call or backoff nobody waits for any more stops.
func untilAllDone(parent context.Context, entries []*entry) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	seen := make(map[*request]bool, len(entries))
	var left atomic.Int64
	var stops []func() bool
	for _, e := range entries {
		if seen[e.req] {
			continue
		}
		seen[e.req] = true
		left.Add(1)
	}
	for r := range seen {
		stops = append(stops, context.AfterFunc(r.ctx, func() {
			if left.Add(-1) == 0 {
				cancel(errCallersGone)
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel(nil)
	}
}

// writeBatch writes entries, which have distinct keys, with BatchWriteItem,
// retrying what is unprocessed or throttled until it is written, its caller
// gives up or its lease ends (a loop on top of the SDK's retryer: see retry
// for why).
func (s *DynamoDB[T]) writeBatch(ctx context.Context, entries []*entry) {
	pending := entries
	for attempt := 0; ; attempt++ {
		if pending = s.dropAbandoned(pending); len(pending) == 0 {
			return
		}
		if ctx.Err() != nil {
			s.failAll(pending, context.Cause(ctx))
			return
		}
		var callCtx context.Context
		var leaseCut func() bool
		var release func()
		if pending, callCtx, leaseCut, release = s.boundByLeases(ctx, pending); len(pending) == 0 {
			release()
			return
		}
		reqs := make(map[string][]types.WriteRequest, 1)
		for _, e := range pending {
			reqs[e.table] = append(reqs[e.table], types.WriteRequest{PutRequest: &types.PutRequest{Item: e.item}})
		}
		s.st.batchWriteItem.Add(1)
		out, err := s.client.BatchWriteItem(callCtx, &dynamodb.BatchWriteItemInput{RequestItems: reqs})
		cut := leaseCut()
		release()
		switch {
		case err == nil:
			pending = s.settleProcessed(pending, out.UnprocessedItems)
			if len(pending) == 0 {
				return
			}
			s.st.unprocessed.Add(int64(len(pending)))
			err = fmt.Errorf("sink: %d items unprocessed by BatchWriteItem", len(pending))
		case cut:
			// A lease ended during the call: its entries fail on the next
			// turn, the others go again (a write is safe to repeat).
			continue
		case itemCaused(err):
			s.putEach(ctx, pending)
			return
		case !retryable(err):
			s.failAll(pending, fmt.Errorf("sink: BatchWriteItem: %w", err))
			return
		}
		for _, e := range pending {
			e.req.setLastErr(err)
		}
		s.st.retries.Add(1)
		if s.sleep(ctx, attempt) != nil {
			// The next turn fails the entries with their caller's cause,
			// or with the flush's when the sink is being closed.
			continue
		}
	}
}

// settleProcessed settles the entries DynamoDB wrote and returns those it
// handed back as unprocessed, matched by table and primary key. If an
// unprocessed request matches no entry (it lacks its key, or the key reads
// differently), nothing is settled: every entry is sent again, since
// writing an item twice is safe and calling an unwritten one durable is not.
func (s *DynamoDB[T]) settleProcessed(pending []*entry, unprocessed map[string][]types.WriteRequest) []*entry {
	left := make(map[string]int)
	n := 0
	for tbl, reqs := range unprocessed {
		hash, rangeKey := s.keyAttributes(tbl)
		for _, w := range reqs {
			n++
			if w.PutRequest == nil || hash == "" {
				return pending
			}
			k := entryKey(tbl, w.PutRequest.Item, hash, rangeKey)
			if k == "" {
				return pending
			}
			left[k]++
		}
	}
	if n == 0 {
		for _, e := range pending {
			s.settle(e, nil)
		}
		return nil
	}
	var again, written []*entry
	for _, e := range pending {
		if e.key != "" && left[e.key] > 0 {
			left[e.key]--
			again = append(again, e)
			continue
		}
		written = append(written, e)
	}
	if len(again) != n {
		return pending
	}
	for _, e := range written {
		s.settle(e, nil)
	}
	return again
}

// keyAttributes returns the key attributes the sink knows for table.
func (s *DynamoDB[T]) keyAttributes(table string) (hash, rangeKey string) {
	switch {
	case table == s.table:
		return s.o.hashKey, s.o.rangeKey
	case s.idem != nil && table == s.idem.cfg.Table:
		return s.idem.cfg.KeyAttribute, ""
	}
	return "", ""
}

// putEach writes entries one by one with PutItem, after DynamoDB rejected
// their whole batch for what one of them may have caused (see itemCaused),
// so that only the items the error concerns fail. It keeps the order of the
// entries.
func (s *DynamoDB[T]) putEach(ctx context.Context, entries []*entry) {
	s.st.fallbacks.Add(1)
	for _, e := range entries {
		if e.req.ctx.Err() != nil {
			s.settle(e, e.req.ctxErr())
			continue
		}
		kept, callCtx, _, releaseLease := s.boundByLeases(ctx, []*entry{e})
		if len(kept) == 0 {
			releaseLease()
			continue
		}
		callCtx, release := untilAllDone(callCtx, kept)
		err := s.retry(callCtx, &s.st.putItem, func(ctx context.Context) error {
			_, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: &e.table, Item: e.item})
			return err
		})
		release()
		releaseLease()
		if err != nil {
			err = fmt.Errorf("sink: PutItem: %w", err)
		}
		s.settle(e, err)
	}
}

// dropAbandoned fails the entries whose caller's context ended and returns
// the others.
func (s *DynamoDB[T]) dropAbandoned(entries []*entry) []*entry {
	kept := entries[:0:0]
	for _, e := range entries {
		if e.req.ctx.Err() != nil {
			s.settle(e, e.req.ctxErr())
			continue
		}
		kept = append(kept, e)
	}
	return kept
}

func (s *DynamoDB[T]) failAll(entries []*entry, err error) {
	for _, e := range entries {
		s.settle(e, err)
	}
}

// settle reports e's outcome to its Put, and counts it when it is one of
// the caller's items (not an idempotency record).
func (s *DynamoDB[T]) settle(e *entry, err error) {
	switch {
	case e.table != s.table:
	case err == nil:
		s.st.written.Add(1)
	default:
		s.st.failed.Add(1)
	}
	e.req.settle(e, err)
}

// retry calls call until it succeeds, fails in a way not worth retrying, or
// ctx ends, waiting with backoff between attempts. It counts every attempt
// in calls.
//
// Why a loop on top of the SDK's retryer: the SDK gives up after its
// attempts (3 by default) or when its retry quota is spent, which a
// throttled table drains in seconds; the sink's contract is that a Put
// ends durable or with its caller's context (or its lease), and a
// BatchWriteItem's unprocessed items are not an error the SDK retries at
// all. This loop waits only after the SDK has given up.
func (s *DynamoDB[T]) retry(ctx context.Context, calls *atomic.Int64, call func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		calls.Add(1)
		err := call(ctx)
		if err == nil || !retryable(err) {
			return err
		}
		s.st.retries.Add(1)
		if werr := s.sleep(ctx, attempt); werr != nil {
			return fmt.Errorf("%w (last attempt: %w)", werr, err)
		}
	}
}

// sleep waits, on the sink's clock, a random time in (0, min(max,
// base*2^attempt)], or until ctx ends.
func (s *DynamoDB[T]) sleep(ctx context.Context, attempt int) error {
	return s.wait(ctx, backoff.Policy{Base: s.o.backoffBase, Max: s.o.backoffMax}.Delay(attempt))
}

// wait waits d on the sink's clock, or until ctx ends.
func (s *DynamoDB[T]) wait(ctx context.Context, d time.Duration) error {
	t := s.o.clock.NewTimer(d)
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		t.Stop()
		return context.Cause(ctx)
	}
}

// retryable reports errors that go away by themselves: throttling and
// DynamoDB's internal errors.
func retryable(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch code := apiErr.ErrorCode(); code {
		case "InternalServerError", "ServiceUnavailable", "InternalFailure":
			return true
		default:
			if backoff.Throttle(code) {
				return true
			}
		}
	}
	var status interface{ HTTPStatusCode() int }
	return errors.As(err, &status) && status.HTTPStatusCode() >= 500
}

// itemCaused reports an error of a whole BatchWriteItem call that one item
// can cause: a ValidationException (an invalid item), or an item
// collection over its size limit (a local secondary index). Sending the
// call again as is cannot succeed; sending its items one by one fails only
// the item at fault.
func itemCaused(err error) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode() {
	case "ValidationException", "ItemCollectionSizeLimitExceededException":
		return true
	}
	return false
}
