package dynamofake_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sink/dynamofake"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var _ sink.DynamoDBAPI = (*dynamofake.Fake)(nil)

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }
func str(v string) *string            { return &v }

func item(pk string, kv ...any) dynamofake.Item {
	it := dynamofake.Item{"pk": s(pk)}
	for i := 0; i < len(kv); i += 2 {
		it[kv[i].(string)] = kv[i+1].(types.AttributeValue)
	}
	return it
}

func newFake() *dynamofake.Fake {
	f := dynamofake.New()
	f.CreateTable("t", "pk", "")
	return f
}

func put(pk string) types.WriteRequest {
	return types.WriteRequest{PutRequest: &types.PutRequest{Item: item(pk)}}
}

func batch(reqs ...types.WriteRequest) *dynamodb.BatchWriteItemInput {
	return &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"t": reqs}}
}

func requireValidation(t *testing.T, err error, contains string) {
	t.Helper()
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "ValidationException", apiErr.ErrorCode())
	assert.Contains(t, apiErr.ErrorMessage(), contains)
}

func TestBatchWriteItemLimits(t *testing.T) {
	f := newFake()
	ctx := t.Context()
	var reqs []types.WriteRequest
	for i := range 26 {
		reqs = append(reqs, put(fmt.Sprint(i)))
	}
	_, err := f.BatchWriteItem(ctx, batch(reqs...))
	requireValidation(t, err, "Too many items")

	_, err = f.BatchWriteItem(ctx, batch(put("a"), put("b"), put("a")))
	requireValidation(t, err, "Provided list of item keys contains duplicates")

	_, err = f.BatchWriteItem(ctx, batch(types.WriteRequest{PutRequest: &types.PutRequest{Item: dynamofake.Item{"x": s("1")}}}))
	requireValidation(t, err, "Missing the key pk")

	_, err = f.BatchWriteItem(ctx, batch(types.WriteRequest{PutRequest: &types.PutRequest{Item: item("big", "b", s(strings.Repeat("x", dynamofake.MaxItemSize)))}}))
	requireValidation(t, err, "Item size has exceeded")

	_, err = f.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"nope": {put("a")}}})
	var nf *types.ResourceNotFoundException
	assert.ErrorAs(t, err, &nf)
	assert.Zero(t, f.Len("t"), "failed calls write nothing")

	out, err := f.BatchWriteItem(ctx, batch(reqs[:25]...))
	require.NoError(t, err)
	assert.Empty(t, out.UnprocessedItems["t"])
	assert.Equal(t, 25, f.Len("t"))

	_, err = f.BatchWriteItem(ctx, batch(types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: item("0")}}))
	require.NoError(t, err)
	assert.Equal(t, 24, f.Len("t"))
	assert.Equal(t, 7, f.Calls(dynamofake.OpBatchWriteItem))
}

func TestUnprocessedFraction(t *testing.T) {
	f := newFake()
	f.SetUnprocessedFraction(0.25)
	out, err := f.BatchWriteItem(t.Context(), batch(put("a"), put("b"), put("c"), put("d"), put("e"), put("f"), put("g"), put("h")))
	require.NoError(t, err)
	var left []string
	for _, w := range out.UnprocessedItems["t"] {
		left = append(left, w.PutRequest.Item["pk"].(*types.AttributeValueMemberS).Value)
	}
	assert.Equal(t, []string{"d", "h"}, left)
	assert.Equal(t, 6, f.Len("t"))
	_, ok := f.Get("t", item("d"))
	assert.False(t, ok, "unprocessed items are not written")
}

func TestThrottleRejectAndFault(t *testing.T) {
	f := newFake()
	ctx := t.Context()
	f.Throttle(dynamofake.OpPutItem, 1)
	_, err := f.PutItem(ctx, &dynamodb.PutItemInput{TableName: str("t"), Item: item("a")})
	var throttled *types.ProvisionedThroughputExceededException
	require.ErrorAs(t, err, &throttled)
	_, err = f.PutItem(ctx, &dynamodb.PutItemInput{TableName: str("t"), Item: item("a")})
	require.NoError(t, err)

	f.RejectItems(func(_ string, it dynamofake.Item) bool { return it["pk"].(*types.AttributeValueMemberS).Value == "bad" })
	_, err = f.BatchWriteItem(ctx, batch(put("ok"), put("bad")))
	requireValidation(t, err, "rejected")
	_, err = f.PutItem(ctx, &dynamodb.PutItemInput{TableName: str("t"), Item: item("bad")})
	requireValidation(t, err, "rejected")

	boom := errors.New("boom")
	f.SetFault(func(_ context.Context, op string) error {
		if op == dynamofake.OpGetItem {
			return boom
		}
		return nil
	})
	_, err = f.GetItem(ctx, &dynamodb.GetItemInput{TableName: str("t"), Key: item("a")})
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, 5, f.TotalCalls())
}

func TestLatencyOnClock(t *testing.T) {
	clk := clock.NewManual(time.Unix(0, 0))
	f := dynamofake.New(clock.Option[dynamofake.Option](clk))
	f.CreateTable("t", "pk", "")
	f.SetLatency(time.Second)
	done := make(chan error, 1)
	go func() {
		_, err := f.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: str("t"), Item: item("a")})
		done <- err
	}()
	clk.BlockUntil(1, nil)
	assert.Zero(t, f.Len("t"))
	clk.Advance(time.Second)
	require.NoError(t, <-done)
	assert.Equal(t, 1, f.Len("t"))

	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		_, err := f.PutItem(ctx, &dynamodb.PutItemInput{TableName: str("t"), Item: item("b")})
		done <- err
	}()
	clk.BlockUntil(1, nil)
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
	assert.Equal(t, 1, f.Len("t"))
}

func TestConditionalPut(t *testing.T) {
	f := newFake()
	ctx := t.Context()
	const cond = "attribute_not_exists(#pk) OR #exp < :now OR (#st = :ip AND attribute_exists(#ipexp) AND #ipexp < :nowms)"
	in := func(now string) *dynamodb.PutItemInput {
		return &dynamodb.PutItemInput{
			TableName:                           str("t"),
			Item:                                item("k", "exp", n("100"), "st", s("INPROGRESS"), "ipexp", n("1000")),
			ConditionExpression:                 str(cond),
			ExpressionAttributeNames:            map[string]string{"#pk": "pk", "#exp": "exp", "#st": "st", "#ipexp": "ipexp"},
			ExpressionAttributeValues:           map[string]types.AttributeValue{":now": n(now), ":nowms": n(now + "0"), ":ip": s("INPROGRESS")},
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		}
	}
	_, err := f.PutItem(ctx, in("50"))
	require.NoError(t, err, "no item yet")
	_, err = f.PutItem(ctx, in("50"))
	var failed *types.ConditionalCheckFailedException
	require.ErrorAs(t, err, &failed)
	assert.Equal(t, "INPROGRESS", failed.Item["st"].(*types.AttributeValueMemberS).Value)
	_, err = f.PutItem(ctx, in("99"))
	require.ErrorAs(t, err, &failed, "99 < 100, 990 < 1000")
	_, err = f.PutItem(ctx, in("101"))
	require.NoError(t, err, "expired: 100 < 101, compared as numbers")
	f.Set("t", item("k", "exp", n("1e3"), "st", s("INPROGRESS"), "ipexp", n("1000")))
	_, err = f.PutItem(ctx, in("101"))
	require.NoError(t, err, "in progress expired: 1000 < 1010")

	g := dynamofake.New(dynamofake.WithoutConditionCheckItem())
	g.CreateTable("t", "pk", "")
	_, err = g.PutItem(ctx, in("1"))
	require.NoError(t, err)
	_, err = g.PutItem(ctx, in("1"))
	require.ErrorAs(t, err, &failed)
	assert.Nil(t, failed.Item)
}

func TestExpressionValidation(t *testing.T) {
	f := newFake()
	ctx := t.Context()
	for name, tc := range map[string]struct {
		cond   string
		names  map[string]string
		values map[string]types.AttributeValue
		want   string
	}{
		"unused value":     {"attribute_not_exists(pk)", nil, map[string]types.AttributeValue{":x": s("1")}, "unused in expressions"},
		"unused name":      {"attribute_not_exists(pk)", map[string]string{"#x": "x"}, nil, "unused in expressions"},
		"undefined value":  {"pk = :x", nil, nil, "not defined"},
		"undefined name":   {"#x = pk", nil, nil, "not defined"},
		"reserved word":    {"attribute_exists(status)", nil, nil, "reserved keyword"},
		"unknown function": {"begins_with(pk, :x)", nil, map[string]types.AttributeValue{":x": s("1")}, "does not support function begins_with"},
		"nested path":      {"a.b = :x", nil, map[string]types.AttributeValue{":x": s("1")}, "does not support character"},
		"between":          {"pk BETWEEN :x AND :y", nil, map[string]types.AttributeValue{":x": s("1"), ":y": s("2")}, "does not support operator"},
		"trailing":         {"attribute_exists(pk) pk", nil, nil, "syntax error"},
		"unbalanced":       {"(attribute_exists(pk)", nil, nil, "expected"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.PutItem(ctx, &dynamodb.PutItemInput{
				TableName: str("t"), Item: item("a"), ConditionExpression: &tc.cond,
				ExpressionAttributeNames: tc.names, ExpressionAttributeValues: tc.values,
			})
			requireValidation(t, err, tc.want)
		})
	}
	assert.Zero(t, f.Len("t"))
}

func TestConditionOperators(t *testing.T) {
	f := newFake()
	f.Set("t", item("a", "n", n("10"), "s", s("m"), "l", &types.AttributeValueMemberL{Value: []types.AttributeValue{s("x")}}))
	all := map[string]types.AttributeValue{
		":ten": n("10"), ":tenf": n("10.0"), ":eleven": n("11"), ":a": s("a"),
		":l": &types.AttributeValueMemberL{Value: []types.AttributeValue{s("x")}},
	}
	for cond, want := range map[string]bool{
		"n = :ten":                        true,
		"n = :tenf":                       true, // compared as numbers
		"n <> :ten":                       false,
		"n < :eleven":                     true,
		"n <= :ten":                       true,
		"n > :ten":                        false,
		"n >= :ten":                       true,
		"s > :a":                          true,
		"s = :ten":                        false, // S against N
		"missing <> :ten":                 true,
		"missing = :ten":                  false,
		"missing < :ten":                  false,
		"l = :l":                          true,
		"NOT n = :ten":                    false,
		"n = :ten AND (s = :a OR s > :a)": true,
		"attribute_exists(l) AND NOT attribute_exists(missing)": true,
	} {
		t.Run(cond, func(t *testing.T) {
			// DynamoDB rejects unused placeholders: pass only those used.
			values := map[string]types.AttributeValue{}
			for _, ph := range regexp.MustCompile(`:[a-z]+`).FindAllString(cond, -1) {
				values[ph] = all[ph]
			}
			_, err := f.DeleteItem(t.Context(), &dynamodb.DeleteItemInput{
				TableName: str("t"), Key: item("a"), ConditionExpression: str(cond),
				ExpressionAttributeValues: values, ReturnValues: types.ReturnValueAllOld,
			})
			if want {
				require.NoError(t, err)
				f.Set("t", item("a", "n", n("10"), "s", s("m"), "l", &types.AttributeValueMemberL{Value: []types.AttributeValue{s("x")}}))
			} else {
				var failed *types.ConditionalCheckFailedException
				assert.ErrorAs(t, err, &failed)
			}
		})
	}
}

func TestUpdateItem(t *testing.T) {
	f := newFake()
	ctx := t.Context()
	out, err := f.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: str("t"), Key: item("a"),
		UpdateExpression:          str("SET #st = :c, #exp = :e"),
		ExpressionAttributeNames:  map[string]string{"#st": "status", "#exp": "expiration"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":c": s("COMPLETE"), ":e": n("5")},
		ReturnValues:              types.ReturnValueAllNew,
	})
	require.NoError(t, err, "UpdateItem creates a missing item")
	assert.Equal(t, item("a", "status", s("COMPLETE"), "expiration", n("5")), out.Attributes)

	_, err = f.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: str("t"), Key: item("a"), UpdateExpression: str("SET copy = expiration REMOVE expiration"),
	})
	require.NoError(t, err)
	got, _ := f.Get("t", item("a"))
	assert.Equal(t, item("a", "status", s("COMPLETE"), "copy", n("5")), got)

	_, err = f.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: str("t"), Key: item("a"), UpdateExpression: str("SET pk = :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": s("b")},
	})
	requireValidation(t, err, "part of the key")
	_, err = f.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: str("t"), Key: item("a"), UpdateExpression: str("ADD c :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": n("1")},
	})
	requireValidation(t, err, "does not support update clause")
	_, err = f.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: str("t"), Key: item("a"), UpdateExpression: str("SET x = nothing"),
	})
	requireValidation(t, err, "does not exist")
	_, err = f.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: str("t"), Key: item("a", "extra", s("x")), UpdateExpression: str("REMOVE copy"),
	})
	requireValidation(t, err, "does not match the schema")
}

func TestDeleteAndGet(t *testing.T) {
	f := newFake()
	ctx := t.Context()
	f.Set("t", item("a", "v", n("1")))
	_, err := f.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: str("t"), Key: item("a"), ConditionExpression: str("v = :two"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":two": n("2")},
	})
	var failed *types.ConditionalCheckFailedException
	require.ErrorAs(t, err, &failed)
	got, err := f.GetItem(ctx, &dynamodb.GetItemInput{TableName: str("t"), Key: item("a")})
	require.NoError(t, err)
	assert.Equal(t, item("a", "v", n("1")), got.Item)

	got.Item["v"] = n("9")
	again, _ := f.Get("t", item("a"))
	assert.Equal(t, n("1"), again["v"], "returned items are copies")

	out, err := f.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: str("t"), Key: item("a"), ReturnValues: types.ReturnValueAllOld})
	require.NoError(t, err)
	assert.Equal(t, item("a", "v", n("1")), out.Attributes)
	got, err = f.GetItem(ctx, &dynamodb.GetItemInput{TableName: str("t"), Key: item("a")})
	require.NoError(t, err)
	assert.Nil(t, got.Item)
	assert.Empty(t, f.Items("t"))
}

func TestRangeKeyTable(t *testing.T) {
	f := dynamofake.New()
	f.CreateTable("r", "h", "r")
	ctx := t.Context()
	for _, rk := range []string{"2", "1"} {
		_, err := f.PutItem(ctx, &dynamodb.PutItemInput{TableName: str("r"), Item: dynamofake.Item{"h": s("a"), "r": n(rk)}})
		require.NoError(t, err)
	}
	assert.Equal(t, 2, f.Len("r"))
	_, err := f.PutItem(ctx, &dynamodb.PutItemInput{TableName: str("r"), Item: dynamofake.Item{"h": s("a"), "r": &types.AttributeValueMemberBOOL{Value: true}}})
	requireValidation(t, err, "Type mismatch")
	_, err = f.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"r": {
		{PutRequest: &types.PutRequest{Item: dynamofake.Item{"h": s("a"), "r": n("1"), "x": s("1")}}},
		{DeleteRequest: &types.DeleteRequest{Key: dynamofake.Item{"h": s("a"), "r": n("1")}}},
	}}})
	requireValidation(t, err, "duplicates")
}
