package sink_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sink/dynamofake"
)

// hooked wraps a client with hooks that see each call's input: before may
// block, or return an error instead of the call; after runs once the call
// returned (its effect applied), so a test can wait on real state.
type hooked struct {
	sink.DynamoDBAPI
	mu     sync.Mutex
	before func(ctx context.Context, op string, in any) error
	after  func(op string, in any, err error)
}

func (h *hooked) set(before func(ctx context.Context, op string, in any) error, after func(op string, in any, err error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.before, h.after = before, after
}

func call[I, O any](h *hooked, ctx context.Context, op string, in I, f func(context.Context, I, ...func(*dynamodb.Options)) (O, error)) (O, error) {
	h.mu.Lock()
	before, after := h.before, h.after
	h.mu.Unlock()
	if before != nil {
		if err := before(ctx, op, in); err != nil {
			var zero O
			return zero, err
		}
	}
	out, err := f(ctx, in)
	if after != nil {
		after(op, in, err)
	}
	return out, err
}

func (h *hooked) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	return call(h, ctx, dynamofake.OpBatchWriteItem, in, h.DynamoDBAPI.BatchWriteItem)
}

func (h *hooked) PutItem(ctx context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return call(h, ctx, dynamofake.OpPutItem, in, h.DynamoDBAPI.PutItem)
}

func (h *hooked) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return call(h, ctx, dynamofake.OpUpdateItem, in, h.DynamoDBAPI.UpdateItem)
}

func (h *hooked) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return call(h, ctx, dynamofake.OpDeleteItem, in, h.DynamoDBAPI.DeleteItem)
}

// writesResults reports a BatchWriteItem call that writes to the results
// table (and not only idempotency records).
func writesResults(op string, in any) bool {
	b, ok := in.(*dynamodb.BatchWriteItemInput)
	return op == dynamofake.OpBatchWriteItem && ok && len(b.RequestItems[table]) > 0
}

// writer is a second idempotent sink on env's fake and clock: another
// process handling a duplicate delivery. Its client is hooked.
func (e *env) writer(cfg sink.IdempotencyConfig) (*sink.DynamoDB[order], *hooked) {
	cfg.Table = idemTable
	h := &hooked{DynamoDBAPI: e.fake}
	s, err := sink.NewDynamoDB[order](h, table, clock.Option[sink.DynamoDBOption](e.clk), sink.WithLinger(0),
		sink.WithBackoff(10*time.Millisecond, maxDelay), sink.WithIdempotency(cfg))
	require.NoError(e.t, err)
	e.t.Cleanup(func() { require.NoError(e.t, s.Close(context.Background())) })
	return s, h
}

// stall holds the first call that reaches it until released; later calls
// pass.
type stall struct {
	once             sync.Once
	stalled, release chan struct{}
}

func newStall() *stall { return &stall{stalled: make(chan struct{}), release: make(chan struct{})} }

func (s *stall) hold() {
	s.once.Do(func() {
		close(s.stalled)
		<-s.release
	})
}

// goPut runs s.Put under key in a goroutine; the channel gets its result.
func goPut(t *testing.T, s *sink.DynamoDB[order], key string, o order) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.Put(msg(t, key), o) }()
	return done
}

var errPartitioned = &smithy.GenericAPIError{Code: "InternalServerError", Message: "partitioned (test)"}

// A Put whose write is held up past its lease (throttled, here) while its
// renewals fail must send nothing once the lease can have been taken over:
// the duplicate that took the key over writes, the stale Put fails, and the
// item is written once.
func TestIdempotentPutSendsNothingAfterItsLease(t *testing.T) {
	e := newEnv(t)
	lease := sink.IdempotencyConfig{Lease: 4 * time.Second}
	a, ah := e.writer(lease)
	b, _ := e.writer(lease)
	var mu sync.Mutex
	throttle := true
	entered, proceed := make(chan struct{}, 1), make(chan struct{})
	ah.set(func(ctx context.Context, op string, in any) error {
		if op == dynamofake.OpUpdateItem {
			return errPartitioned // A cannot renew
		}
		mu.Lock()
		th := throttle
		mu.Unlock()
		if writesResults(op, in) && th {
			select {
			case entered <- struct{}{}:
				<-proceed // the first attempt is held while time passes
			default:
			}
			return &types.ProvisionedThroughputExceededException{Message: strp("throttled (test)")}
		}
		return nil
	}, nil)
	var aErr error
	aFinished := make(chan struct{})
	go func() {
		defer close(aFinished)
		aErr = a.Put(msg(t, "m-1"), order{PK: "a", N: 1})
	}()
	<-entered
	e.clk.Advance(5 * time.Second) // past A's lease, while its first attempt is held up
	require.NoError(t, b.Put(msg(t, "m-1"), order{PK: "a", N: 2}), "the duplicate takes the lapsed key over")
	mu.Lock()
	throttle = false // DynamoDB would now take A's write
	mu.Unlock()
	close(proceed)
	for e.clk.BlockUntil(1, aFinished) { // through A's backoff, if it waits one
		e.clk.Advance(50 * time.Millisecond)
	}
	assert.ErrorContains(t, aErr, "lease ended", "the stale Put fails instead of writing")
	e.assertN("a", 2)
	rec, _ := e.record("m-1")
	assert.Equal(t, sink.StatusComplete, stringAttr(rec, sink.RecordStatusAttribute))
}

func strp(s string) *string { return &s }

// A live owner keeps its key: while its write is slow, the renewer extends
// the lease, so a duplicate past the first lease's end still finds the key
// held, and the slow Put completes.
func TestIdempotentLeaseRenewedWhileOwnerLives(t *testing.T) {
	e := newEnv(t)
	cfg := sink.IdempotencyConfig{Lease: 3 * time.Second}
	a, ah := e.writer(cfg)
	b, _ := e.writer(cfg)
	stalled, release := make(chan struct{}), make(chan struct{})
	renewed := make(chan struct{}, 10)
	var once sync.Once
	ah.set(func(ctx context.Context, op string, in any) error {
		if writesResults(op, in) {
			once.Do(func() { close(stalled) })
			select {
			case <-release:
				return nil
			case <-ctx.Done(): // the call's lease deadline: sent again under the renewed lease
				return ctx.Err()
			}
		}
		return nil
	}, func(op string, _ any, err error) {
		if op == dynamofake.OpUpdateItem && err == nil {
			renewed <- struct{}{}
		}
	})
	aDone := goPut(t, a, "m-1", order{PK: "a", N: 1})
	<-stalled
	// Four renewals (each a third of a lease): 4 s in, past the lease the
	// key was first taken with. Two timers: the renewer's, and the one
	// that ends the stalled call at its lease deadline (it is sent again
	// under the renewed lease).
	for range 4 {
		require.True(t, e.clk.BlockUntil(2, nil))
		e.clk.Advance(time.Second)
		<-renewed
	}
	err := b.Put(msg(t, "m-1"), order{PK: "a", N: 2})
	assert.ErrorIs(t, err, sink.ErrInProgress, "the live owner still holds the key")
	close(release)
	require.NoError(t, <-aDone)
	e.assertN("a", 1)
	assert.GreaterOrEqual(t, a.Stats().LeaseRenewals, int64(3))
	require.NoError(t, b.Put(msg(t, "m-1"), order{PK: "a", N: 3}))
	e.assertN("a", 1)
}

// A stale writer must not touch a record it no longer owns: its release
// after a failed write leaves the COMPLETE record of the Put that took the
// key over, so a third delivery does not write again.
func TestIdempotentStaleReleaseLeavesOthersRecord(t *testing.T) {
	e := newEnv(t)
	cfg := sink.IdempotencyConfig{Lease: 4 * time.Second}
	a, ah := e.writer(cfg)
	b, _ := e.writer(cfg)
	st := newStall()
	ah.set(func(ctx context.Context, op string, in any) error {
		switch {
		case op == dynamofake.OpUpdateItem:
			return errPartitioned
		case writesResults(op, in):
			st.hold()
			return &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "refused (test)"}
		}
		return nil
	}, nil)
	aDone := goPut(t, a, "m-1", order{PK: "a", N: 1})
	<-st.stalled
	e.clk.Advance(5 * time.Second) // A's lease lapses
	require.NoError(t, b.Put(msg(t, "m-1"), order{PK: "a", N: 2}))
	close(st.release)
	assert.Error(t, <-aDone)

	rec, ok := e.record("m-1")
	require.True(t, ok, "A's release must not delete B's record")
	assert.Equal(t, sink.StatusComplete, stringAttr(rec, sink.RecordStatusAttribute))
	c, _ := e.writer(cfg)
	require.NoError(t, c.Put(msg(t, "m-1"), order{PK: "a", N: 3}))
	e.assertN("a", 2)
	assert.EqualValues(t, 1, c.Stats().DuplicatesSkipped)
}

// A stale writer whose items landed but whose COMPLETE failed must not mark
// COMPLETE a record another Put has taken over and is still writing.
func TestIdempotentStaleCompleteLeavesOthersInProgress(t *testing.T) {
	e := newEnv(t)
	cfg := sink.IdempotencyConfig{Lease: 4 * time.Second}
	a, ah := e.writer(cfg)
	b, bh := e.writer(cfg)
	as, bs := newStall(), newStall()
	ah.set(func(ctx context.Context, op string, in any) error {
		bw, ok := in.(*dynamodb.BatchWriteItemInput)
		switch {
		case op == dynamofake.OpUpdateItem && strings.Contains(*in.(*dynamodb.UpdateItemInput).UpdateExpression, "#ipexp"):
			return errPartitioned // no renewal
		case ok && len(bw.RequestItems[idemTable]) > 0: // A's COMPLETE
			as.hold()
			return &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "no batch (test)"}
		}
		return nil
	}, nil)
	bh.set(func(ctx context.Context, op string, in any) error {
		if writesResults(op, in) {
			bs.hold()
		}
		return nil
	}, nil)
	aDone := goPut(t, a, "m-1", order{PK: "a", N: 1})
	<-as.stalled
	e.clk.Advance(5 * time.Second) // A's lease lapses
	// Other items than A's: B writes them.
	bDone := goPut(t, b, "m-1", order{PK: "a", N: 2})
	<-bs.stalled
	close(as.release)
	require.NoError(t, <-aDone, "A's items are durable")
	rec, _ := e.record("m-1")
	assert.Equal(t, sink.StatusInProgress, stringAttr(rec, sink.RecordStatusAttribute), "B's record is not marked COMPLETE by A")
	assert.EqualValues(t, 1, a.Stats().CompletesFailed)
	close(bs.release)
	require.NoError(t, <-bDone)
	rec, _ = e.record("m-1")
	assert.Equal(t, sink.StatusComplete, stringAttr(rec, sink.RecordStatusAttribute))
}

// Close waits for the running Puts before it closes the batcher: a Put in
// its first round (keys repeat, so it has two) finishes both.
func TestDynamoDBCloseWaitsForRunningPuts(t *testing.T) {
	e := newEnv(t, sink.WithLinger(0))
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.fake.SetFault(func(_ context.Context, op string) error {
		once.Do(func() {
			close(entered)
			<-release
		})
		return nil
	})
	closing := make(chan struct{})
	sink.SetClosingHook(e.sink, sync.OnceFunc(func() { close(closing) }))
	done := e.goPut(t.Context(), order{PK: "a", N: 1}, order{PK: "a", N: 2})
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- e.sink.Close(t.Context()) }()
	<-closing
	close(release)
	require.NoError(t, <-done, "the running Put's second round is not cut off")
	require.NoError(t, <-closed)
	e.assertN("a", 2)
	assert.ErrorIs(t, e.sink.Put(t.Context(), order{PK: "late"}), sink.ErrClosed)
}

// One item that makes DynamoDB reject the whole call (here its item
// collection is full) fails alone; its batch-mates are written.
func TestDynamoDBItemCausedCallErrorIsolated(t *testing.T) {
	e := newEnv(t)
	h := &hooked{DynamoDBAPI: e.fake}
	s, err := sink.NewDynamoDB[order](h, table, clock.Option[sink.DynamoDBOption](e.clk), sink.WithLinger(linger))
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close(t.Context())) }()
	full := &types.ItemCollectionSizeLimitExceededException{Message: strp("Item collection size limit exceeded (test)")}
	h.set(func(_ context.Context, op string, in any) error {
		switch in := in.(type) {
		case *dynamodb.BatchWriteItemInput:
			for _, w := range in.RequestItems[table] {
				if stringAttr(w.PutRequest.Item, "pk") == "big" {
					return full
				}
			}
		case *dynamodb.PutItemInput:
			if stringAttr(in.Item, "pk") == "big" {
				return full
			}
		}
		return nil
	}, nil)
	// All three in one call: the linger holds them until they are all in.
	handed := make(chan struct{}, 1)
	sink.SetHandedOverHook(s, func(context.Context, int) { handed <- struct{}{} })
	done := make(chan error, 1)
	go func() { done <- s.Put(t.Context(), order{PK: "good1"}, order{PK: "big"}, order{PK: "good2"}) }()
	<-handed
	e.clk.Advance(linger)
	err = <-done
	assert.EqualValues(t, 1, s.Stats().BatchWriteItemCalls)
	var we *sink.WriteError
	require.ErrorAs(t, err, &we)
	require.Len(t, we.Items, 1)
	assert.Equal(t, 1, we.Items[0].Index)
	var tooBig *types.ItemCollectionSizeLimitExceededException
	assert.ErrorAs(t, err, &tooBig)
	e.assertN("good1", 0)
	e.assertN("good2", 0)
}

// handingBack answers the first BatchWriteItem call without writing, with
// UnprocessedItems as rewrite makes them.
type handingBack struct {
	sink.DynamoDBAPI
	mu      sync.Mutex
	done    bool
	rewrite func(item dynamofake.Item) dynamofake.Item
}

func (h *handingBack) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	h.mu.Lock()
	first := !h.done
	h.done = true
	h.mu.Unlock()
	if !first {
		return h.DynamoDBAPI.BatchWriteItem(ctx, in, opts...)
	}
	out := &dynamodb.BatchWriteItemOutput{UnprocessedItems: map[string][]types.WriteRequest{}}
	for tbl, reqs := range in.RequestItems {
		for _, w := range reqs {
			out.UnprocessedItems[tbl] = append(out.UnprocessedItems[tbl], types.WriteRequest{PutRequest: &types.PutRequest{Item: h.rewrite(w.PutRequest.Item)}})
		}
	}
	return out, nil
}

// Unprocessed items are matched by primary key: DynamoDB may hand an item
// back spelled differently (here a number with a trailing zero), and one it
// hands back that matches nothing settles nothing as written.
func TestDynamoDBUnprocessedMatchedByKey(t *testing.T) {
	for name, rewrite := range map[string]func(dynamofake.Item) dynamofake.Item{
		"number spelled otherwise": func(item dynamofake.Item) dynamofake.Item {
			out := dynamofake.Item{}
			for k, v := range item {
				out[k] = v
			}
			out["n"] = &types.AttributeValueMemberN{Value: numberAttr(item, "n") + ".0"}
			return out
		},
		"no key": func(item dynamofake.Item) dynamofake.Item {
			return dynamofake.Item{"n": item["n"]}
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			s, err := sink.NewDynamoDB[order](&handingBack{DynamoDBAPI: e.fake, rewrite: rewrite}, table,
				clock.Option[sink.DynamoDBOption](e.clk), sink.WithLinger(0), sink.WithBackoff(time.Millisecond, time.Millisecond))
			require.NoError(t, err)
			defer func() { require.NoError(t, s.Close(t.Context())) }()
			done := make(chan error, 1)
			go func() { done <- s.Put(t.Context(), order{PK: "a", N: 1}, order{PK: "b", N: 2}) }()
			require.NoError(t, e.drive(done, time.Millisecond))
			e.assertN("a", 1)
			e.assertN("b", 2)
			assert.Positive(t, s.Stats().UnprocessedItems, "handed back, then written")
		})
	}
}

// At load an idempotent Put costs its conditional PutItem and a share of
// two batched writes (its items, then its COMPLETE record among other
// Puts'): 27 calls for 25 messages, where taking, writing and completing
// each alone cost 2 per message and more.
func TestIdempotentCallsPerMessageAtLoad(t *testing.T) {
	e := newEnv(t, sink.WithIdempotency(sink.IdempotencyConfig{Table: idemTable, Lease: time.Hour, Expiry: 2 * time.Hour}),
		sink.WithLinger(time.Hour))
	const n = 25
	var wg sync.WaitGroup
	for i := range n {
		ctx := msg(t, "m-"+strconv.Itoa(i))
		wg.Go(func() { assert.NoError(t, e.sink.Put(ctx, order{PK: "o" + strconv.Itoa(i), N: i})) })
	}
	wg.Wait() // 25 items fill a batch, then 25 records another: no linger
	assert.Equal(t, n, e.fake.Len(table))
	assert.Equal(t, n, e.fake.Len(idemTable))
	st := e.sink.Stats()
	assert.EqualValues(t, n+2, st.Calls(), "%+v", st)
	for i := range n {
		rec, _ := e.record("m-" + strconv.Itoa(i))
		assert.Equal(t, sink.StatusComplete, stringAttr(rec, sink.RecordStatusAttribute))
	}
}
