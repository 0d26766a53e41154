// Package ddbtest gives integration tests a real DynamoDB client and
// throw-away tables, as internal/awstest does for SQS (whose Config and
// switches it uses). It is a module of its own so that the root module, which
// has no DynamoDB code, does not require the DynamoDB SDK: only the sink
// module and the tests that use the sink import it.
package ddbtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sqspool/sqspool/internal/awstest"
)

// DynamoDB returns a DynamoDB client from awstest.Config (skipping the test
// when integration tests are off).
func DynamoDB(t testing.TB) *dynamodb.Client {
	t.Helper()
	return dynamodb.NewFromConfig(awstest.Config(t))
}

// TableOption changes the table NewTable creates.
type TableOption func(*dynamodb.CreateTableInput)

// WithRangeKey adds a string range (sort) key to the table's key schema.
func WithRangeKey(name string) TableOption {
	return func(in *dynamodb.CreateTableInput) {
		in.AttributeDefinitions = append(in.AttributeDefinitions, ddbtypes.AttributeDefinition{
			AttributeName: aws.String(name),
			AttributeType: ddbtypes.ScalarAttributeTypeS,
		})
		in.KeySchema = append(in.KeySchema, ddbtypes.KeySchemaElement{
			AttributeName: aws.String(name),
			KeyType:       ddbtypes.KeyTypeRange,
		})
	}
}

// WithTableNamePrefix replaces the default table name prefix.
func WithTableNamePrefix(prefix string) TableOption {
	return func(in *dynamodb.CreateTableInput) {
		in.TableName = aws.String(awstest.UniqueName(prefix, "sqspool-test", 255))
	}
}

// NewTable creates an on-demand (PAY_PER_REQUEST) table with a string hash
// key named hashKeyName, waits until it is ACTIVE and deletes it when the test
// ends. It returns the table name.
func NewTable(t testing.TB, ddb *dynamodb.Client, hashKeyName string, opts ...TableOption) (name string) {
	t.Helper()
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(awstest.UniqueName("sqspool-test", "sqspool-test", 255)),
		BillingMode: ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{
			AttributeName: aws.String(hashKeyName),
			AttributeType: ddbtypes.ScalarAttributeTypeS,
		}},
		KeySchema: []ddbtypes.KeySchemaElement{{
			AttributeName: aws.String(hashKeyName),
			KeyType:       ddbtypes.KeyTypeHash,
		}},
	}
	for _, opt := range opts {
		opt(in)
	}
	name = aws.ToString(in.TableName)

	ctx, cancel := context.WithTimeout(context.Background(), awstest.TableTimeout)
	defer cancel()
	if _, err := ddb.CreateTable(ctx, in); err != nil {
		t.Fatalf("ddbtest: creating table %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), awstest.CallTimeout)
		defer cancel()
		_, err := ddb.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
		var gone *ddbtypes.ResourceNotFoundException
		if err != nil && !errors.As(err, &gone) {
			t.Errorf("ddbtest: deleting table %s: %v", name, err)
		}
	})
	// The SDK's default waiter polls every 20 s at first; poll faster.
	waiter := dynamodb.NewTableExistsWaiter(ddb, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = 2 * time.Second
	})
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, awstest.TableTimeout); err != nil {
		t.Fatalf("ddbtest: waiting for table %s to be ACTIVE: %v", name, err)
	}
	return name
}
