package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqspool/sqspool/examples/internal/exampleenv"
)

// onAWS points cfg at SQS and DynamoDB from the default AWS configuration
// (environment, shared config, endpoint overrides). It creates the queue and
// the tables cfg does not name; cleanup deletes what it created.
func onAWS(ctx context.Context, cfg *Config) (cleanup func(), err error) {
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS config: %w", err)
	}
	sqsClient, ddb := sqs.NewFromConfig(awsCfg), dynamodb.NewFromConfig(awsCfg)
	cfg.SQS, cfg.DynamoDB = sqsClient, ddb
	if exampleenv.EmulatedSQS() {
		// Emulators may hold a long poll open until it is full: poll briefly.
		cfg.WaitTime = time.Second
	}

	var undo []func(context.Context) error
	cleanup = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, f := range undo {
			if err := f(ctx); err != nil {
				slog.Warn("pipeline: cleanup", "error", err)
			}
		}
	}
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)

	if cfg.Queue == "" {
		out, err := sqsClient.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("sqspool-pipeline-" + suffix)})
		if err != nil {
			return nil, fmt.Errorf("create queue: %w", err)
		}
		cfg.Queue = aws.ToString(out.QueueUrl)
		undo = append(undo, func(ctx context.Context) error {
			_, err := sqsClient.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl})
			return err
		})
	}
	for _, t := range []struct {
		name      *string
		role, key string
	}{
		{&cfg.Table, "results", "pk"},
		{&cfg.IdempotencyTable, "idempotency", "id"},
	} {
		if *t.name != "" {
			continue
		}
		*t.name = "sqspool-pipeline-" + t.role + "-" + suffix
		if err := createTable(ctx, ddb, *t.name, t.key); err != nil {
			cleanup()
			return nil, err
		}
		name := *t.name
		undo = append(undo, func(ctx context.Context) error {
			_, err := ddb.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
			return err
		})
	}
	return cleanup, nil
}

// createTable creates an on-demand table with a string partition key and
// waits until it is ACTIVE.
func createTable(ctx context.Context, ddb *dynamodb.Client, name, key string) error {
	_, err := ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{
			{AttributeName: aws.String(key), AttributeType: ddbtypes.ScalarAttributeTypeS},
		},
		KeySchema: []ddbtypes.KeySchemaElement{{AttributeName: aws.String(key), KeyType: ddbtypes.KeyTypeHash}},
	})
	if err != nil {
		return fmt.Errorf("create table %s: %w", name, err)
	}
	w := dynamodb.NewTableExistsWaiter(ddb, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 2*time.Second
	})
	return w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 2*time.Minute)
}
