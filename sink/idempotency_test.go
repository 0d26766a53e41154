package sink_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sink/dynamofake"
)

// newIdemEnv is newEnv in idempotent mode, without linger (a Put needs no
// clock then, unless it retries), so that tests need not drive the clock
// while the lease renewer holds a timer.
func newIdemEnv(t *testing.T, cfg sink.IdempotencyConfig, opts ...sink.DynamoDBOption) *env {
	cfg.Table = idemTable
	return newEnv(t, append([]sink.DynamoDBOption{sink.WithLinger(0), sink.WithIdempotency(cfg)}, opts...)...)
}

// record returns the idempotency record of message key.
func (e *env) record(key string) (map[string]types.AttributeValue, bool) {
	return e.fake.Get(idemTable, map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: table + "#" + key}})
}

// holdKey stores the INPROGRESS record of a writer that holds key until
// leaseEnd (on the env's clock), as a writer that died mid-Put leaves it.
func (e *env) holdKey(key string, leaseEnd time.Time) {
	e.fake.Set(idemTable, map[string]types.AttributeValue{
		"id":                                 &types.AttributeValueMemberS{Value: table + "#" + key},
		sink.RecordStatusAttribute:           &types.AttributeValueMemberS{Value: sink.StatusInProgress},
		sink.RecordExpiryAttribute:           &types.AttributeValueMemberN{Value: strconv.FormatInt(epoch.Add(time.Hour).Unix(), 10)},
		sink.RecordInProgressExpiryAttribute: &types.AttributeValueMemberN{Value: strconv.FormatInt(leaseEnd.UnixMilli(), 10)},
		sink.RecordTokenAttribute:            &types.AttributeValueMemberS{Value: "dead-writer"},
	})
}

func msg(t *testing.T, id string) context.Context { return sink.WithKey(t.Context(), id) }

func TestIdempotentSecondPutSkipped(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{})
	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 1}))

	rec, ok := e.record("m-1")
	require.True(t, ok)
	assert.Equal(t, sink.StatusComplete, stringAttr(rec, sink.RecordStatusAttribute))
	assert.Equal(t, strconv.FormatInt(epoch.Add(sink.DefaultIdempotencyExpiry).Unix(), 10), numberAttr(rec, sink.RecordExpiryAttribute))
	assert.Equal(t, strconv.FormatInt(epoch.Add(sink.DefaultLease).UnixMilli(), 10), numberAttr(rec, sink.RecordInProgressExpiryAttribute))
	assert.NotEmpty(t, stringAttr(rec, sink.RecordTokenAttribute))
	assert.NotContains(t, rec, sink.RecordValidationAttribute)

	// The redelivery writes nothing, even with other items, and succeeds:
	// the pool deletes its message.
	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 2}))
	e.assertN("a", 1)

	st := e.sink.Stats()
	assert.EqualValues(t, 1, st.DuplicatesSkipped)
	// The items, then the COMPLETE record, each in a batch of its own (a
	// lone Put); under load both share batches with other Puts.
	assert.EqualValues(t, 2, st.BatchWriteItemCalls)
	assert.EqualValues(t, 2, st.PutItemCalls)
	assert.Zero(t, st.UpdateItemCalls)

	require.NoError(t, e.sink.Put(msg(t, "m-2"), order{PK: "a", N: 3}), "another key writes")
	e.assertN("a", 3)
}

func TestIdempotentInProgress(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{Lease: 8 * time.Second})
	entered, release := make(chan struct{}), make(chan struct{})
	e.fake.SetFault(func(_ context.Context, op string) error {
		if op == dynamofake.OpBatchWriteItem {
			close(entered)
			<-release
		}
		return nil
	})
	first := e.goPut(msg(t, "m-1"), order{PK: "a", N: 1})
	<-entered
	e.clk.Advance(time.Second)
	err := e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 2})
	assert.ErrorIs(t, err, sink.ErrInProgress)
	assert.ErrorContains(t, err, "orders#m-1")
	// Not retried at once: the pool holds the message back until the
	// holder's lease (7 s left) can have lapsed, plus the 2 s margin.
	delay, ok := sqspool.RetryDelay(err)
	require.True(t, ok, "a retry delay")
	assert.Equal(t, 9*time.Second, delay)
	e.fake.SetFault(nil)
	close(release)
	require.NoError(t, <-first)

	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 3}))
	e.assertN("a", 1)
	st := e.sink.Stats()
	assert.EqualValues(t, 1, st.InProgressRejected)
	assert.EqualValues(t, 1, st.DuplicatesSkipped)
}

func TestIdempotentConcurrentDuplicatesWriteOnce(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{})
	const n = 10
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs <- e.sink.Put(msg(t, "m-1"), order{PK: "a", N: i}) })
	}
	wg.Wait()
	close(errs)
	var ok, inProgress int
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, sink.ErrInProgress):
			inProgress++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	st := e.sink.Stats()
	assert.EqualValues(t, 1, st.ItemsWritten, "exactly one Put wrote")
	assert.Equal(t, 1, e.fake.Len(table))
	assert.Equal(t, n, ok+inProgress)
	assert.EqualValues(t, ok-1, st.DuplicatesSkipped)
	assert.EqualValues(t, inProgress, st.InProgressRejected)
}

func TestIdempotentExpiryEnforcedByLibrary(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{Expiry: 10 * time.Minute})
	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 1}))

	e.clk.Advance(10 * time.Minute) // at the expiry second: still valid
	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 2}))
	e.assertN("a", 1)

	// Past it the record is still in the table (no TTL deletion yet), but
	// the sink treats it as gone.
	e.clk.Advance(time.Second)
	_, ok := e.record("m-1")
	require.True(t, ok)
	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 3}))
	e.assertN("a", 3)
	rec, _ := e.record("m-1")
	assert.Equal(t, strconv.FormatInt(e.clk.Now().Add(10*time.Minute).Unix(), 10), numberAttr(rec, sink.RecordExpiryAttribute))
}

func TestIdempotentLeaseLapsed(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{})
	// A writer that died a moment ago still holds the key...
	e.holdKey("m-1", epoch.Add(time.Millisecond))
	assert.ErrorIs(t, e.sink.Put(msg(t, "m-1"), order{PK: "a"}), sink.ErrInProgress)
	// ...one whose lease ended does not.
	e.holdKey("m-1", epoch.Add(-time.Millisecond))
	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a"}))
	rec, _ := e.record("m-1")
	assert.Equal(t, sink.StatusComplete, stringAttr(rec, sink.RecordStatusAttribute))
}

// A writer that died between its write and its COMPLETE left its items in
// the table: the Put that takes its lapsed key over finds them there, as it
// would write them, and writes nothing (so they are not applied twice);
// other items it writes.
func TestIdempotentTakeoverSkipsItemsAlreadyWritten(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{}, sink.WithTTL("ttl", time.Hour))
	for _, key := range []string{"m-1", "m-2"} {
		e.holdKey(key, epoch.Add(-time.Millisecond))
	}
	// What the dead writers wrote (another TTL: it is not compared).
	e.fake.Set(table, map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "a"},
		"n": &types.AttributeValueMemberN{Value: "1"}, "ttl": &types.AttributeValueMemberN{Value: "1"}})
	e.fake.Set(table, map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "b"},
		"n": &types.AttributeValueMemberN{Value: "7"}, "ttl": &types.AttributeValueMemberN{Value: "1"}})

	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 1}))
	st := e.sink.Stats()
	assert.EqualValues(t, 1, st.TakeoverWritesSkipped)
	assert.Zero(t, st.ItemsWritten, "the items were there: not written again")
	rec, _ := e.record("m-1")
	assert.Equal(t, sink.StatusComplete, stringAttr(rec, sink.RecordStatusAttribute))

	require.NoError(t, e.sink.Put(msg(t, "m-2"), order{PK: "b", N: 8}))
	e.assertN("b", 8)
	assert.EqualValues(t, 1, e.sink.Stats().ItemsWritten, "other items are written")
}

func TestIdempotentPayloadHash(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{PayloadHash: true}, sink.WithTTL("ttl", time.Hour))
	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 1}))
	rec, _ := e.record("m-1")
	assert.Len(t, stringAttr(rec, sink.RecordValidationAttribute), 64)

	// Same items later: the TTL attribute differs but is not hashed.
	e.clk.Advance(time.Minute)
	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 1}))
	assert.EqualValues(t, 1, e.sink.Stats().DuplicatesSkipped)

	err := e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 2})
	var mismatch *sink.PayloadMismatchError
	require.ErrorAs(t, err, &mismatch)
	assert.Equal(t, "orders#m-1", mismatch.Key)
	assert.ErrorIs(t, err, sink.ErrPayloadMismatch)
	e.assertN("a", 1)
}

func TestIdempotentWriteFailureDeletesRecord(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{})
	e.fake.RejectItems(func(_ string, item dynamofake.Item) bool { return stringAttr(item, "pk") == "a" })
	err := e.sink.Put(msg(t, "m-1"), order{PK: "a"})
	var we *sink.WriteError
	require.ErrorAs(t, err, &we)
	_, ok := e.record("m-1")
	assert.False(t, ok, "the record is deleted so that a retry can run")
	assert.EqualValues(t, 1, e.sink.Stats().DeleteItemCalls)

	e.fake.RejectItems(nil)
	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a"}))
	_, ok = e.item("a")
	assert.True(t, ok)
}

func TestIdempotentCleanupOutlivesCallerContext(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{})
	entered := make(chan struct{})
	e.fake.SetFault(func(ctx context.Context, op string) error {
		if op == dynamofake.OpBatchWriteItem {
			close(entered)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	ctx, cancel := context.WithCancel(msg(t, "m-1"))
	done := e.goPut(ctx, order{PK: "a"})
	<-entered
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
	_, ok := e.record("m-1")
	assert.False(t, ok, "deleted although the caller's context ended")
}

func TestIdempotentCompleteFailureAfterDurableWriteSucceeds(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{Lease: time.Minute})
	// The items go through; the record's COMPLETE (batched, then the
	// UpdateItem fallback) is refused.
	e.fake.SetFault(func(_ context.Context, op string) error {
		if op == dynamofake.OpUpdateItem || (op == dynamofake.OpBatchWriteItem && e.fake.Len(table) > 0) {
			return &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "no record writes"}
		}
		return nil
	})
	// The Sink contract: the items are durable, so Put succeeds and the
	// message may be deleted.
	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 1}))
	_, ok := e.item("a")
	assert.True(t, ok, "the items were written")
	rec, _ := e.record("m-1")
	assert.Equal(t, sink.StatusInProgress, stringAttr(rec, sink.RecordStatusAttribute))
	st := e.sink.Stats()
	assert.EqualValues(t, 1, st.CompletesFailed)
	assert.EqualValues(t, 1, st.UpdateItemCalls)

	// The documented limit: a duplicate delivery waits out the lease and
	// then writes again.
	e.fake.SetFault(nil)
	assert.ErrorIs(t, e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 2}), sink.ErrInProgress)
	e.clk.Advance(time.Minute + time.Millisecond)
	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 2}))
	e.assertN("a", 2)
}

// event is an order whose Body is the id its producer assigned.
type event order

func (o event) IdempotencyKey() string { return o.Body }

func TestIdempotentKeys(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{})
	assert.ErrorIs(t, e.sink.Put(t.Context(), order{PK: "a"}), sink.ErrNoKey)
	assert.Zero(t, e.fake.TotalCalls())

	// A producer-assigned id (an item type that is an IdempotencyKeyer): two
	// messages carrying one event write once.
	byBody, err := sink.NewDynamoDB[event](e.fake, table, clock.Option[sink.DynamoDBOption](e.clk), sink.WithLinger(0),
		sink.WithIdempotency(sink.IdempotencyConfig{Table: idemTable, Prefix: "events"}))
	require.NoError(t, err)
	defer func() { require.NoError(t, byBody.Close(t.Context())) }()
	require.NoError(t, byBody.Put(msg(t, "m-1"), event{PK: "a", N: 1, Body: "evt-9"}))
	require.NoError(t, byBody.Put(msg(t, "m-2"), event{PK: "a", N: 2, Body: "evt-9"}))
	e.assertN("a", 1)
	_, ok := e.fake.Get(idemTable, map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "events#evt-9"}})
	assert.True(t, ok)
	assert.ErrorIs(t, byBody.Put(msg(t, "m-3"), event{PK: "a"}), sink.ErrNoKey, "an empty key")
}

func TestIdempotentReadsRecordWhenConditionFailureHasNoItem(t *testing.T) {
	// dynalite does not return the item on a failed condition.
	e := newEnvWithFake(t, []dynamofake.Option{dynamofake.WithoutConditionCheckItem()},
		sink.WithLinger(0), sink.WithIdempotency(sink.IdempotencyConfig{Table: idemTable}))
	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 1}))
	require.NoError(t, e.sink.Put(msg(t, "m-1"), order{PK: "a", N: 2}))
	st := e.sink.Stats()
	assert.EqualValues(t, 1, st.DuplicatesSkipped)
	assert.EqualValues(t, 1, st.GetItemCalls)
}

func TestIdempotentRetriesThrottledRecordCalls(t *testing.T) {
	// A lease far longer than the backoffs: driving the clock also fires
	// the renewer's timer, which must not matter here.
	e := newIdemEnv(t, sink.IdempotencyConfig{Lease: time.Hour, Expiry: 2 * time.Hour})
	e.fake.Throttle(dynamofake.OpPutItem, 2)
	e.fake.Throttle(dynamofake.OpBatchWriteItem, 2)
	// Drive the clock from the start, through the backoffs of the record
	// calls and of the batches.
	require.NoError(t, e.drive(e.goPut(msg(t, "m-1"), order{PK: "a"}), maxDelay))
	rec, _ := e.record("m-1")
	assert.Equal(t, sink.StatusComplete, stringAttr(rec, sink.RecordStatusAttribute))
	assert.EqualValues(t, 4, e.sink.Stats().Retries)
}

func TestIdempotentUnknownRecordStatus(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{})
	e.fake.Set(idemTable, map[string]types.AttributeValue{
		"id":                       &types.AttributeValueMemberS{Value: "orders#m-1"},
		sink.RecordStatusAttribute: &types.AttributeValueMemberS{Value: "WEIRD"},
		sink.RecordExpiryAttribute: &types.AttributeValueMemberN{Value: strconv.FormatInt(epoch.Add(time.Hour).Unix(), 10)},
	})
	assert.ErrorContains(t, e.sink.Put(msg(t, "m-1"), order{PK: "a"}), `unknown status "WEIRD"`)
	assert.Zero(t, e.fake.Calls(dynamofake.OpBatchWriteItem))
}

func TestPayloadMismatchErrorMessage(t *testing.T) {
	err := &sink.PayloadMismatchError{Key: "k", Stored: "0123456789abcdef", Got: "fedcba9876543210"}
	assert.Equal(t, `sink: idempotency key "k" reused with a different payload (stored hash 0123456789ab, got fedcba987654)`, err.Error())
}
