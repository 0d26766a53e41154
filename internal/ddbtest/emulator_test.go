package ddbtest_test

// These tests drive the DynamoDB endpoint through the real AWS SDK, as
// internal/awstest's do for SQS: with ./scripts/test against dynalite 4.0.0,
// and they hold on real AWS too; where dynalite differs from AWS, the test
// logs what it saw instead of failing.
//
// dynalite 4.0.0:
//   - No TransactWriteItems and no UpdateTimeToLive: UnknownOperationException.
//   - ReturnValuesOnConditionCheckFailure is ignored: the
//     ConditionalCheckFailedException carries no Item.
//   - Tables stay CREATING for 50 ms (set in test/emulators/serve.js); AWS
//     takes seconds.

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sqspool/sqspool/internal/awstest"
	"github.com/sqspool/sqspool/internal/ddbtest"
)

func TestMain(m *testing.M) {
	// The SDK client keeps idle HTTP connections; they are the SDK's.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
}

// testCtx bounds one test's AWS calls.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), awstest.CallTimeout)
	t.Cleanup(cancel)
	return ctx
}

func TestEmulatorDynamoDBConditionalPut(t *testing.T) {
	t.Parallel()
	ddb := ddbtest.DynamoDB(t)
	ctx := testCtx(t)
	table := ddbtest.NewTable(t, ddb, "pk")

	put := func(status string) error {
		_, err := ddb.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(table),
			Item: map[string]ddbtypes.AttributeValue{
				"pk":     &ddbtypes.AttributeValueMemberS{Value: "key-1"},
				"status": &ddbtypes.AttributeValueMemberS{Value: status},
			},
			ConditionExpression:                 aws.String("attribute_not_exists(pk)"),
			ReturnValuesOnConditionCheckFailure: ddbtypes.ReturnValuesOnConditionCheckFailureAllOld,
		})
		return err
	}
	require.NoError(t, put("INPROGRESS"), "first conditional PutItem")

	err := put("SECOND")
	var ccf *ddbtypes.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("second conditional PutItem: err = %v, want ConditionalCheckFailedException", err)
	}
	if len(ccf.Item) == 0 {
		t.Logf("ConditionalCheckFailedException without Item: endpoint ignores ReturnValuesOnConditionCheckFailure (dynalite quirk; AWS returns the item)")
	} else {
		assert.Equal(t, "INPROGRESS", stringAttr(ccf.Item, "status"), "Item in ConditionalCheckFailedException")
	}

	got, err := ddb.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "key-1"}},
		ConsistentRead: aws.Bool(true),
	})
	require.NoError(t, err, "GetItem")
	assert.Equal(t, "INPROGRESS", stringAttr(got.Item, "status"), "status after the failed put")
}

func TestEmulatorDynamoDBBatchWriteItem(t *testing.T) {
	t.Parallel()
	ddb := ddbtest.DynamoDB(t)
	ctx := testCtx(t)
	table := ddbtest.NewTable(t, ddb, "pk", ddbtest.WithRangeKey("sk"))

	var writes []ddbtypes.WriteRequest
	for i := range 5 {
		writes = append(writes, ddbtypes.WriteRequest{PutRequest: &ddbtypes.PutRequest{
			Item: map[string]ddbtypes.AttributeValue{
				"pk": &ddbtypes.AttributeValueMemberS{Value: "p"},
				"sk": &ddbtypes.AttributeValueMemberS{Value: strconv.Itoa(i)},
			},
		}})
	}
	out, err := ddb.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
		RequestItems: map[string][]ddbtypes.WriteRequest{table: writes},
	})
	require.NoError(t, err, "BatchWriteItem")
	if len(out.UnprocessedItems) != 0 {
		t.Errorf("BatchWriteItem left unprocessed items: %v", out.UnprocessedItems)
	}

	q, err := ddb.Query(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(table),
		KeyConditionExpression:    aws.String("pk = :p"),
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":p": &ddbtypes.AttributeValueMemberS{Value: "p"}},
		ConsistentRead:            aws.Bool(true),
	})
	require.NoError(t, err, "Query")
	assert.EqualValues(t, 5, q.Count, "items after BatchWriteItem")
}

// dynalite 4.0.0 lacks TransactWriteItems and UpdateTimeToLive; AWS has both.
// Code that needs them cannot be tested against dynalite. This test logs what
// the endpoint answers.
func TestEmulatorDynamoDBMissingOperations(t *testing.T) {
	t.Parallel()
	ddb := ddbtest.DynamoDB(t)
	ctx := testCtx(t)
	table := ddbtest.NewTable(t, ddb, "pk")

	_, err := ddb.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{
		TransactItems: []ddbtypes.TransactWriteItem{{Put: &ddbtypes.Put{
			TableName: aws.String(table),
			Item:      map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "t"}},
		}}},
	})
	logSupport(t, "TransactWriteItems", err)

	_, err = ddb.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(table),
		TimeToLiveSpecification: &ddbtypes.TimeToLiveSpecification{
			AttributeName: aws.String("expires"), Enabled: aws.Bool(true),
		},
	})
	logSupport(t, "UpdateTimeToLive", err)
}

func stringAttr(item map[string]ddbtypes.AttributeValue, name string) string {
	if s, ok := item[name].(*ddbtypes.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

func logSupport(t *testing.T, op string, err error) {
	t.Helper()
	if err == nil {
		t.Logf("%s: supported", op)
		return
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Fatalf("%s: %v", op, err)
	}
	t.Logf("%s: not supported by this endpoint: %v", op, err)
}
