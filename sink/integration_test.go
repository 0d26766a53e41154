package sink_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/internal/ddbtest"
	"github.com/sqspool/sqspool/sink"
)

// The integration tests run the sink through the real SDK against DynamoDB
// or an emulator (./scripts/test starts dynalite); they skip unless
// SQSPOOL_INTEGRATION=1.

func integrationSink(t *testing.T, ddb sink.DynamoDBAPI, tbl string, opts ...sink.DynamoDBOption) *sink.DynamoDB[order] {
	t.Helper()
	return integrationSinkOf[order](t, ddb, tbl, opts...)
}

func integrationSinkOf[T any](t *testing.T, ddb sink.DynamoDBAPI, tbl string, opts ...sink.DynamoDBOption) *sink.DynamoDB[T] {
	t.Helper()
	s, err := sink.NewDynamoDB[T](ddb, tbl, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		assert.NoError(t, s.Close(ctx))
	})
	return s
}

// keyless is an order that marshals itself without its key when PK is
// "bad", which DynamoDB rejects.
type keyless order

func (o keyless) MarshalDynamoDBAttributeValue() (types.AttributeValue, error) {
	av, err := attributevalue.MarshalMap(order(o))
	if o.PK == "bad" {
		delete(av, "pk")
	}
	return &types.AttributeValueMemberM{Value: av}, err
}

func getOrder(t *testing.T, ddb *dynamodb.Client, tbl, pk string) (order, bool) {
	t.Helper()
	out, err := ddb.GetItem(t.Context(), &dynamodb.GetItemInput{TableName: &tbl, Key: keyOf(pk), ConsistentRead: aws.Bool(true)})
	require.NoError(t, err)
	if out.Item == nil {
		return order{}, false
	}
	var o order
	require.NoError(t, unmarshal(out.Item, &o))
	return o, true
}

func TestIntegrationDynamoDBBatchedWrites(t *testing.T) {
	ddb := ddbtest.DynamoDB(t)
	tbl := ddbtest.NewTable(t, ddb, "pk")
	s := integrationSink(t, ddb, tbl, sink.WithLinger(20*time.Millisecond))

	// 8 workers, 15 items each, keys repeating within and across workers.
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			items := make([]order, 15)
			for i := range items {
				items[i] = order{PK: fmt.Sprint("o", (w*15+i)%100), N: i}
			}
			assert.NoError(t, s.Put(t.Context(), items...))
		})
	}
	wg.Wait()
	for i := range 100 {
		_, ok := getOrder(t, ddb, tbl, fmt.Sprint("o", i))
		assert.True(t, ok, "o%d", i)
	}
	st := s.Stats()
	assert.EqualValues(t, 120, st.ItemsWritten)
	assert.Less(t, st.BatchWriteItemCalls, int64(30), "batched: %+v", st)
	assert.Zero(t, st.ValidationFallbacks, "no duplicate-key rejections")
	t.Logf("120 items: %d BatchWriteItem calls, %.0f calls per 1000 items", st.BatchWriteItemCalls, st.CallsPer1000Items())

	// The last write of a key in one Put wins.
	require.NoError(t, s.Put(t.Context(), order{PK: "d", N: 1}, order{PK: "d", N: 2}, order{PK: "d", N: 3}))
	o, _ := getOrder(t, ddb, tbl, "d")
	assert.Equal(t, 3, o.N)
}

func TestIntegrationDynamoDBValidationFailsOnlyBadItems(t *testing.T) {
	ddb := ddbtest.DynamoDB(t)
	tbl := ddbtest.NewTable(t, ddb, "pk")
	// An item that marshals itself without its key is invalid.
	s := integrationSinkOf[keyless](t, ddb, tbl)
	err := s.Put(t.Context(), keyless{PK: "good1"}, keyless{PK: "bad"}, keyless{PK: "good2"})
	var we *sink.WriteError
	require.ErrorAs(t, err, &we)
	require.Len(t, we.Items, 1)
	assert.Equal(t, 1, we.Items[0].Index)
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "ValidationException", apiErr.ErrorCode())
	for _, pk := range []string{"good1", "good2"} {
		_, ok := getOrder(t, ddb, tbl, pk)
		assert.True(t, ok, pk)
	}
}

func TestIntegrationDynamoDBItemSizeLimit(t *testing.T) {
	ddb := ddbtest.DynamoDB(t)
	tbl := ddbtest.NewTable(t, ddb, "pk")
	s := integrationSink(t, ddb, tbl)
	// The largest item the sink lets through is accepted by the server.
	fits := order{PK: "fits", Body: strings.Repeat("x", sink.MaxItemSize-len("pkfitsn0body")-2)}
	require.NoError(t, s.Put(t.Context(), fits))
	err := s.Put(t.Context(), order{PK: "big", Body: strings.Repeat("x", sink.MaxItemSize)})
	assert.ErrorIs(t, err, sink.ErrItemTooLarge)
}

func TestIntegrationDynamoDBIdempotency(t *testing.T) {
	ddb := ddbtest.DynamoDB(t)
	tbl := ddbtest.NewTable(t, ddb, "pk")
	idem := ddbtest.NewTable(t, ddb, "id")
	// The manual clock drives the record expiries the sink writes and
	// compares; with no linger and no throttling nothing waits on it.
	clk := clock.NewManual(time.Now())
	s := integrationSink(t, ddb, tbl, clock.Option[sink.DynamoDBOption](clk), sink.WithLinger(0),
		sink.WithIdempotency(sink.IdempotencyConfig{Table: idem, Expiry: time.Hour, PayloadHash: true}))
	ctx := sink.WithKey(t.Context(), "m-1")

	require.NoError(t, s.Put(ctx, order{PK: "a", N: 1}))
	require.NoError(t, s.Put(ctx, order{PK: "a", N: 1}), "redelivery")
	assert.EqualValues(t, 1, s.Stats().DuplicatesSkipped)
	assert.ErrorIs(t, s.Put(ctx, order{PK: "a", N: 2}), sink.ErrPayloadMismatch)
	o, _ := getOrder(t, ddb, tbl, "a")
	assert.Equal(t, 1, o.N)

	// Expired by the sink's clock, though still in the table.
	clk.Advance(time.Hour + time.Second)
	require.NoError(t, s.Put(ctx, order{PK: "a", N: 3}))
	o, _ = getOrder(t, ddb, tbl, "a")
	assert.Equal(t, 3, o.N)

	// A record held by a live writer: ErrInProgress, with a delay.
	_, err := ddb.PutItem(t.Context(), &dynamodb.PutItemInput{TableName: &idem, Item: map[string]types.AttributeValue{
		"id":                                 &types.AttributeValueMemberS{Value: tbl + "#m-2"},
		sink.RecordStatusAttribute:           &types.AttributeValueMemberS{Value: sink.StatusInProgress},
		sink.RecordExpiryAttribute:           &types.AttributeValueMemberN{Value: strconv.FormatInt(clk.Now().Add(time.Hour).Unix(), 10)},
		sink.RecordInProgressExpiryAttribute: &types.AttributeValueMemberN{Value: strconv.FormatInt(clk.Now().Add(time.Minute).UnixMilli(), 10)},
	}})
	require.NoError(t, err)
	assert.ErrorIs(t, s.Put(sink.WithKey(t.Context(), "m-2"), order{PK: "b"}), sink.ErrInProgress)
	clk.Advance(time.Minute + time.Second)
	require.NoError(t, s.Put(sink.WithKey(t.Context(), "m-2"), order{PK: "b"}), "the holder's lease ended")

	// A failed write releases the key.
	bad := integrationSinkOf[keyless](t, ddb, tbl, clock.Option[sink.DynamoDBOption](clk), sink.WithLinger(0),
		sink.WithIdempotency(sink.IdempotencyConfig{Table: idem}))
	var we *sink.WriteError
	require.ErrorAs(t, bad.Put(sink.WithKey(t.Context(), "m-3"), keyless{PK: "bad"}), &we)
	out, err := ddb.GetItem(t.Context(), &dynamodb.GetItemInput{TableName: &idem, ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: tbl + "#m-3"}}})
	require.NoError(t, err)
	assert.Nil(t, out.Item, "record deleted after the failed write")
	t.Logf("stats: %+v", s.Stats())
}

// A Put whose BatchWriteItem stalls past its lease (and whose renewals do
// not get through) must not land after a duplicate took the key over: on
// dynalite through the SDK, the stalled call's context ends at the lease
// deadline, so the SDK never sends it; the duplicate's write is the only
// one, and the stale Put fails.
func TestIntegrationDynamoDBStalledPutDoesNotLandAfterItsLease(t *testing.T) {
	ddb := ddbtest.DynamoDB(t)
	tbl := ddbtest.NewTable(t, ddb, "pk")
	idem := ddbtest.NewTable(t, ddb, "id")
	clk := clock.NewManual(time.Now())
	cfg := sink.IdempotencyConfig{Table: idem, Lease: 4 * time.Second}
	ah := &hooked{DynamoDBAPI: ddb}
	a := integrationSink(t, ah, tbl, clock.Option[sink.DynamoDBOption](clk), sink.WithLinger(0), sink.WithIdempotency(cfg))
	b := integrationSink(t, ddb, tbl, clock.Option[sink.DynamoDBOption](clk), sink.WithLinger(0), sink.WithIdempotency(cfg))
	stalled := make(chan context.Context, 1)
	release := make(chan struct{})
	ah.set(func(ctx context.Context, op string, in any) error {
		switch {
		case op == "UpdateItem":
			return errPartitioned // the renewals do not get through
		case op == "BatchWriteItem" && len(in.(*dynamodb.BatchWriteItemInput).RequestItems[tbl]) > 0:
			select {
			case stalled <- ctx:
				<-release // the network holds the request...
			default:
			}
		}
		return nil // ...then lets it go, if its context still allows
	}, nil)
	aDone := make(chan error, 1)
	ctx := sink.WithKey(t.Context(), "m-1")
	go func() { aDone <- a.Put(ctx, order{PK: "a", N: 1}) }()
	callCtx := <-stalled
	clk.Advance(5 * time.Second) // past A's lease
	require.NoError(t, b.Put(ctx, order{PK: "a", N: 2}), "the duplicate takes the lapsed key over")
	<-callCtx.Done() // the lease deadline ended A's call
	close(release)
	assert.ErrorContains(t, <-aDone, "lease ended", "the stale Put fails instead of writing")
	o, _ := getOrder(t, ddb, tbl, "a")
	assert.Equal(t, 2, o.N, "A's write never landed")
	out, err := ddb.GetItem(t.Context(), &dynamodb.GetItemInput{TableName: &idem, ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: tbl + "#m-1"}}})
	require.NoError(t, err)
	assert.Equal(t, sink.StatusComplete, stringAttr(out.Item, sink.RecordStatusAttribute))
}
