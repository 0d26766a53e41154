package sink_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sink/dynamofake"
	"github.com/sqspool/sqspool/sink/internal/ddbitem"
)

func TestDynamoDBBatchesConcurrentCallers(t *testing.T) {
	e := newEnv(t)
	const n = 100 // four full batches: no linger needed
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() { errs <- e.sink.Put(t.Context(), order{PK: fmt.Sprint("o", i), N: i}) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, n, e.fake.Len(table))
	assert.Equal(t, []int{25, 25, 25, 25}, e.calls.sizes())
	st := e.sink.Stats()
	assert.EqualValues(t, 4, st.BatchWriteItemCalls)
	assert.EqualValues(t, n, st.ItemsWritten)
	assert.Equal(t, 40.0, st.CallsPer1000Items())
	for i := range n {
		o, ok := e.item(fmt.Sprint("o", i))
		require.True(t, ok)
		assert.Equal(t, i, o.N)
	}
}

func TestDynamoDBCapsBatchAt25Items(t *testing.T) {
	e := newEnv(t)
	items := make([]order, 60)
	for i := range items {
		items[i] = order{PK: fmt.Sprint("o", i)}
	}
	require.NoError(t, e.put(t.Context(), linger, items...))
	assert.Equal(t, []int{25, 25, 10}, e.calls.sizes())
	assert.Equal(t, 60, e.fake.Len(table))
}

func TestDynamoDBCapsBatchBytes(t *testing.T) {
	body := strings.Repeat("x", 1000)
	one := ddbitem.WireSize(map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "o0"}, "n": &types.AttributeValueMemberN{Value: "0"},
		"body": &types.AttributeValueMemberS{Value: body},
	}) + 32
	e := newEnv(t, sink.WithMaxBatchBytes(3*one)) // three items per call
	items := make([]order, 7)
	for i := range items {
		items[i] = order{PK: fmt.Sprint("o", i), Body: body}
	}
	require.NoError(t, e.put(t.Context(), linger, items...))
	assert.Equal(t, []int{3, 3, 1}, e.calls.sizes())
	assert.Equal(t, 7, e.fake.Len(table))
}

func TestDynamoDBRejectsItemTooLargeBeforeSending(t *testing.T) {
	e := newEnv(t)
	big := order{PK: "big", Body: strings.Repeat("x", sink.MaxItemSize)}
	err := e.sink.Put(t.Context(), order{PK: "small"}, big)
	var we *sink.WriteError
	require.ErrorAs(t, err, &we)
	require.Len(t, we.Items, 2)
	assert.Equal(t, 1, we.Items[1].Index)
	assert.ErrorIs(t, we.Items[1].Err, sink.ErrItemTooLarge)
	assert.ErrorIs(t, we.Items[0].Err, sink.ErrNotSent)
	assert.ErrorIs(t, err, sink.ErrItemTooLarge)
	assert.Contains(t, err.Error(), "2 of 2 items not written")
	assert.Zero(t, e.fake.TotalCalls())

	// Just under the limit is fine: the fake enforces DynamoDB's limit too.
	fits := order{PK: "fits", Body: strings.Repeat("x", sink.MaxItemSize-len("pkfitsn0body")-2)}
	require.NoError(t, e.put(t.Context(), linger, fits))
}

func TestDynamoDBLingerFlushesPartialBatch(t *testing.T) {
	e := newEnv(t)
	done := e.goPut(t.Context(), order{PK: "a"})
	e.clk.BlockUntil(1, nil) // the linger timer
	e.clk.Advance(linger - time.Nanosecond)
	assert.Zero(t, e.fake.Calls(dynamofake.OpBatchWriteItem), "sent before the linger")
	e.clk.Advance(time.Nanosecond)
	require.NoError(t, <-done)
	assert.Equal(t, 1, e.fake.Calls(dynamofake.OpBatchWriteItem))
}

func TestDynamoDBZeroLingerSendsAtOnce(t *testing.T) {
	e := newEnv(t, sink.WithLinger(0))
	require.NoError(t, e.sink.Put(t.Context(), order{PK: "a"}))
	assert.Equal(t, 1, e.fake.Len(table))
}

func TestDynamoDBDuplicateKeysInOnePut(t *testing.T) {
	e := newEnv(t)
	err := e.put(t.Context(), linger,
		order{PK: "a", N: 1}, order{PK: "b", N: 1}, order{PK: "a", N: 2}, order{PK: "a", N: 3}, order{PK: "c"})
	require.NoError(t, err)
	assert.Equal(t, [][]string{{"a", "b", "c"}, {"a"}, {"a"}}, e.calls.batches)
	e.assertN("a", 3)
	assert.EqualValues(t, 2, e.sink.Stats().DuplicateKeysDeferred)
}

func TestDynamoDBDuplicateKeysAcrossPutsInOneBatch(t *testing.T) {
	e := newEnv(t, sink.WithMaxBatchItems(2))
	first := e.goPut(t.Context(), order{PK: "a", N: 1})
	e.clk.BlockUntil(1, nil) // the first write is in the pending batch
	second := e.goPut(t.Context(), order{PK: "a", N: 2})
	require.NoError(t, <-first)
	require.NoError(t, <-second)
	assert.Equal(t, [][]string{{"a"}, {"a"}}, e.calls.batches, "the later write goes in the next call")
	e.assertN("a", 2)
	assert.EqualValues(t, 1, e.sink.Stats().DuplicateKeysDeferred)
}

func TestDynamoDBDuplicatesUnderWrongKeyAttributesFallBack(t *testing.T) {
	// The sink thinks the key is "n"; the table's is "pk". DynamoDB rejects
	// the batch for duplicates; the fallback writes the items in order.
	e := newEnv(t, sink.WithKeyAttributes("n", ""))
	require.NoError(t, e.put(t.Context(), linger, order{PK: "a", N: 1}, order{PK: "a", N: 2}))
	e.assertN("a", 2)
	st := e.sink.Stats()
	assert.EqualValues(t, 1, st.ValidationFallbacks)
	assert.EqualValues(t, 2, st.PutItemCalls)
}

func TestDynamoDBRetriesUnprocessedItems(t *testing.T) {
	e := newEnv(t)
	e.fake.SetUnprocessedFraction(0.5)
	items := make([]order, 20)
	for i := range items {
		items[i] = order{PK: fmt.Sprint("o", i)}
	}
	require.NoError(t, e.put(t.Context(), maxDelay, items...))
	assert.Equal(t, 20, e.fake.Len(table))
	st := e.sink.Stats()
	// Half of each call comes back, by the fake's deterministic accumulator.
	assert.EqualValues(t, 10+5+2+1+1, st.UnprocessedItems)
	assert.EqualValues(t, 5, st.Retries)
	assert.EqualValues(t, 6, st.BatchWriteItemCalls)
	assert.EqualValues(t, 20, st.ItemsWritten)
	assert.Equal(t, []int{20, 10, 5, 2, 1, 1}, e.calls.sizes())
}

func TestDynamoDBRetriesThrottlingWithBackoff(t *testing.T) {
	e := newEnv(t, sink.WithLinger(0))
	e.fake.Throttle(dynamofake.OpBatchWriteItem, 3)
	require.NoError(t, e.put(t.Context(), maxDelay, order{PK: "a"}))
	assert.Equal(t, 1, e.fake.Len(table))
	st := e.sink.Stats()
	assert.EqualValues(t, 4, st.BatchWriteItemCalls)
	assert.EqualValues(t, 3, st.Retries)
}

func TestDynamoDBRetriesInternalServerError(t *testing.T) {
	e := newEnv(t, sink.WithLinger(0))
	var once sync.Once
	e.fake.SetFault(func(context.Context, string) error {
		var err error
		once.Do(func() { err = &types.InternalServerError{} })
		return err
	})
	require.NoError(t, e.put(t.Context(), maxDelay, order{PK: "a"}))
	assert.EqualValues(t, 1, e.sink.Stats().Retries)
}

func TestDynamoDBBackoffStaysUnderCap(t *testing.T) {
	// Each retry's timer must fire once the clock moves by the cap, however
	// many retries came before.
	e := newEnv(t, sink.WithLinger(0))
	e.fake.Throttle("", 12)
	require.NoError(t, e.put(t.Context(), maxDelay, order{PK: "a"}))
	assert.EqualValues(t, 12, e.sink.Stats().Retries)
}

func TestDynamoDBThrottlingRetriedUntilContextEnds(t *testing.T) {
	e := newEnv(t, sink.WithLinger(0))
	e.fake.Throttle("", math.MaxInt)
	ctx, cancel := context.WithCancel(t.Context())
	done := e.goPut(ctx, order{PK: "a"})
	for range 3 {
		e.clk.BlockUntil(1, nil)
		e.clk.Advance(maxDelay)
	}
	e.clk.BlockUntil(1, nil) // in the fourth backoff
	cancel()
	err := <-done
	var we *sink.WriteError
	require.ErrorAs(t, err, &we)
	require.Len(t, we.Items, 1)
	assert.ErrorIs(t, err, context.Canceled)
	var throttled *types.ProvisionedThroughputExceededException
	assert.ErrorAs(t, err, &throttled, "the last attempt's error is kept")
	assert.Equal(t, 4, e.fake.Calls(dynamofake.OpBatchWriteItem))
	assert.Zero(t, e.fake.Len(table))
}

func TestDynamoDBValidationErrorFailsOnlyOffendingItems(t *testing.T) {
	e := newEnv(t)
	e.fake.RejectItems(func(_ string, item dynamofake.Item) bool { return stringAttr(item, "pk") == "bad" })
	err := e.put(t.Context(), linger, order{PK: "good1"}, order{PK: "bad"}, order{PK: "good2"})
	var we *sink.WriteError
	require.ErrorAs(t, err, &we)
	require.Len(t, we.Items, 1)
	assert.Equal(t, 1, we.Items[0].Index)
	assert.Equal(t, 3, we.Total)
	var ie *sink.ItemError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, 1, ie.Index)
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "ValidationException", apiErr.ErrorCode())

	_, ok := e.item("bad")
	assert.False(t, ok)
	assert.Equal(t, 2, e.fake.Len(table))
	st := e.sink.Stats()
	assert.EqualValues(t, 1, st.ValidationFallbacks)
	assert.EqualValues(t, 3, st.PutItemCalls)
	assert.EqualValues(t, 2, st.ItemsWritten)
	assert.EqualValues(t, 1, st.ItemsFailed)
}

func TestDynamoDBValidationFallbackSeparatesCallers(t *testing.T) {
	// Two callers share a batch; only the caller with the bad item fails.
	e := newEnv(t, sink.WithMaxBatchItems(2))
	e.fake.RejectItems(func(_ string, item dynamofake.Item) bool { return stringAttr(item, "pk") == "bad" })
	bad := e.goPut(t.Context(), order{PK: "bad"})
	e.clk.BlockUntil(1, nil)
	good := e.goPut(t.Context(), order{PK: "good"})
	require.NoError(t, <-good)
	assert.ErrorContains(t, <-bad, "ValidationException")
}

func TestDynamoDBPermanentErrorFailsBatch(t *testing.T) {
	e := newEnv(t, sink.WithLinger(0))
	e.fake.SetFault(func(context.Context, string) error {
		return &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "no"}
	})
	err := e.sink.Put(t.Context(), order{PK: "a"}, order{PK: "b"})
	var we *sink.WriteError
	require.ErrorAs(t, err, &we)
	assert.Len(t, we.Items, 2)
	assert.ErrorContains(t, err, "AccessDeniedException")
	assert.EqualValues(t, 0, e.sink.Stats().Retries)
}

func TestDynamoDBCallerGivesUpDuringCall(t *testing.T) {
	e := newEnv(t, sink.WithLinger(0))
	entered := make(chan struct{})
	e.fake.SetFault(func(ctx context.Context, _ string) error {
		close(entered)
		<-ctx.Done() // the call ends only when nobody waits for it
		return ctx.Err()
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := e.goPut(ctx, order{PK: "a"})
	<-entered
	cancel()
	err := <-done
	assert.ErrorIs(t, err, context.Canceled)
	var we *sink.WriteError
	assert.ErrorAs(t, err, &we)
}

func TestDynamoDBPutWithDoneContext(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	assert.ErrorIs(t, e.sink.Put(ctx, order{PK: "a"}), context.Canceled)
	assert.Zero(t, e.fake.TotalCalls())
	assert.NoError(t, e.sink.Put(ctx), "nothing to write")
}

func TestDynamoDBCloseFlushesPending(t *testing.T) {
	e := newEnv(t)
	var dones []<-chan error
	for i := range 3 {
		dones = append(dones, e.start(t.Context(), order{PK: fmt.Sprint("o", i)}))
	}
	assert.Zero(t, e.fake.TotalCalls(), "waiting for the linger")
	require.NoError(t, e.sink.Close(t.Context()))
	for _, d := range dones {
		require.NoError(t, <-d)
	}
	assert.Equal(t, 3, e.fake.Len(table))
	assert.Equal(t, []int{3}, e.calls.sizes())
	assert.ErrorIs(t, e.sink.Put(t.Context(), order{PK: "late"}), sink.ErrClosed)
}

func TestDynamoDBCloseDeadlineCancelsCalls(t *testing.T) {
	e := newEnv(t, sink.WithLinger(0))
	entered := make(chan struct{})
	e.fake.SetFault(func(ctx context.Context, _ string) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	})
	done := e.goPut(t.Context(), order{PK: "a"})
	<-entered
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	assert.ErrorIs(t, e.sink.Close(ctx), context.Canceled)
	assert.Error(t, <-done)
}

func TestDynamoDBNoGoroutineLeftAfterClose(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	e := newEnv(t)
	e.fake.SetUnprocessedFraction(0.5)
	var dones []<-chan error
	for i := range 40 {
		dones = append(dones, e.goPut(t.Context(), order{PK: fmt.Sprint("o", i)}))
	}
	for _, d := range dones {
		require.NoError(t, e.drive(d, maxDelay))
	}
	require.NoError(t, e.sink.Close(t.Context()))
	goleak.VerifyNone(t, ignore)
}

// shouted marshals itself (attributevalue.Marshaler): its key gets a prefix
// and its body is upper-cased; it has no item without an id.
type shouted struct{ PK, Body string }

func (o shouted) MarshalDynamoDBAttributeValue() (types.AttributeValue, error) {
	if o.PK == "" {
		return nil, errors.New("no id")
	}
	return &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
		"pk":    &types.AttributeValueMemberS{Value: "ORDER#" + o.PK},
		"upper": &types.AttributeValueMemberS{Value: strings.ToUpper(o.Body)},
	}}, nil
}

// An item type's own marshaller decides its attributes (the sink adds the
// TTL), and its error fails the Put before anything is sent.
func TestDynamoDBItemMarshalsItselfAndGetsTTL(t *testing.T) {
	clk := clock.NewManual(epoch)
	fake := dynamofake.New(clock.Option[dynamofake.Option](clk))
	fake.CreateTable(table, "pk", "")
	s, err := sink.NewDynamoDB[shouted](fake, table, clock.Option[sink.DynamoDBOption](clk), sink.WithLinger(0),
		sink.WithTTL("expires", 24*time.Hour))
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close(t.Context())) }()

	require.NoError(t, s.Put(t.Context(), shouted{PK: "7", Body: "hi"}))
	av, ok := fake.Get(table, keyOf("ORDER#7"))
	require.True(t, ok)
	assert.Equal(t, "HI", stringAttr(av, "upper"))
	assert.Equal(t, strconv.FormatInt(epoch.Add(24*time.Hour).Unix(), 10), numberAttr(av, "expires"))

	err = s.Put(t.Context(), shouted{})
	assert.ErrorContains(t, err, "no id")
	assert.ErrorContains(t, err, "marshal")
	assert.Equal(t, 1, fake.Len(table))
}

func TestDynamoDBRangeKey(t *testing.T) {
	type event struct {
		Stream string `dynamodbav:"stream"`
		Seq    int    `dynamodbav:"seq"`
		V      string `dynamodbav:"v"`
	}
	fake := dynamofake.New()
	fake.CreateTable("events", "stream", "seq")
	s, err := sink.NewDynamoDB[event](fake, "events", sink.WithKeyAttributes("stream", "seq"), sink.WithLinger(0))
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close(t.Context())) }()
	require.NoError(t, s.Put(t.Context(),
		event{"s", 1, "a"}, event{"s", 2, "b"}, event{"s", 1, "c"}, event{"t", 1, "d"}))
	assert.Equal(t, 3, fake.Len("events"))
	assert.EqualValues(t, 1, s.Stats().DuplicateKeysDeferred)
	assert.EqualValues(t, 0, s.Stats().ValidationFallbacks)
}

func TestNewDynamoDBRejectsBadOptions(t *testing.T) {
	fake := dynamofake.New()
	for name, opt := range map[string]sink.DynamoDBOption{
		"batch too big":       sink.WithMaxBatchItems(26),
		"bytes too big":       sink.WithMaxBatchBytes(sink.MaxRequestBytes + 1),
		"in flight":           sink.WithMaxInFlight(0),
		"no hash key":         sink.WithKeyAttributes("", ""),
		"backoff":             sink.WithBackoff(time.Second, time.Millisecond),
		"ttl":                 sink.WithTTL("ttl", 0),
		"idempotency table":   sink.WithIdempotency(sink.IdempotencyConfig{}),
		"lease too short":     sink.WithIdempotency(sink.IdempotencyConfig{Table: idemTable, Lease: time.Millisecond}),
		"expiry within lease": sink.WithIdempotency(sink.IdempotencyConfig{Table: idemTable, Lease: time.Minute, Expiry: time.Minute}),
		"cleanup timeout":     sink.WithCleanupTimeout(0),
		"clock":               clock.Option[sink.DynamoDBOption](nil),
	} {
		t.Run(name, func(t *testing.T) {
			s, err := sink.NewDynamoDB[order](fake, table, opt)
			assert.Error(t, err)
			assert.Nil(t, s)
		})
	}
	_, err := sink.NewDynamoDB[order](nil, table)
	assert.ErrorContains(t, err, "nil client")
	_, err = sink.NewDynamoDB[order](fake, "")
	assert.ErrorContains(t, err, "empty table")
}

func TestDynamoDBFailedWriteStopsLaterWritesOfItsKey(t *testing.T) {
	e := newEnv(t)
	e.fake.RejectItems(func(_ string, item dynamofake.Item) bool { return numberAttr(item, "n") == "1" })
	err := e.put(t.Context(), linger, order{PK: "a", N: 1}, order{PK: "b"}, order{PK: "a", N: 2})
	var we *sink.WriteError
	require.ErrorAs(t, err, &we)
	require.Len(t, we.Items, 2)
	assert.Equal(t, 0, we.Items[0].Index)
	assert.Equal(t, 2, we.Items[1].Index)
	assert.ErrorIs(t, we.Items[1].Err, sink.ErrNotSent, "a2 must not land where a1 failed")
	_, ok := e.item("a")
	assert.False(t, ok)
	e.assertN("b", 0)
}
