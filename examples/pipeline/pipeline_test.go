package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/catcher"
	"github.com/sqspool/sqspool/internal/awstest"
	"github.com/sqspool/sqspool/internal/ddbtest"
	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sink/dynamofake"
	"github.com/sqspool/sqspool/sqsfake"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// runPipeline runs cfg and checks what every run must show: each request
// accepted once and stored exactly once, every message deleted, and the
// queue empty at the end.
func runPipeline(t *testing.T, cfg Config) Summary {
	t.Helper()
	cfg.Logger = quiet
	s, err := run(t.Context(), cfg)
	var out strings.Builder
	s.Print(&out)
	t.Log("\n" + out.String())
	require.NoError(t, err)

	n := cfg.Requests
	assert.Equal(t, n, s.Sent)
	assert.Equal(t, n, s.Accepted)
	assert.Equal(t, n, s.Stored)
	assert.EqualValues(t, n, s.Sink.ItemsWritten, "each request written exactly once")
	assert.Zero(t, s.Sink.ItemsFailed)
	assert.EqualValues(t, n+s.Retries, s.Catcher.Accepted+s.Catcher.Rejected[catcher.ReasonUnavailable], "every attempt answered")
	p := s.Pool
	assert.EqualValues(t, p.Received-p.Duplicates, p.Processed+p.Failed+p.Returned, "every delivery handled once here")
	assert.EqualValues(t, p.Processed, s.Sink.ItemsWritten+s.Sink.DuplicatesSkipped)
	assert.EqualValues(t, p.Processed, p.Deleted, "every processed message deleted")
	assert.Zero(t, p.DeleteErrors)
	assert.Zero(t, s.QueueVisible, "messages left visible")
	assert.Zero(t, s.QueueInFlight, "messages left in flight")
	return s
}

// requestIDs are the ids the load generator gives n requests.
func requestIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("req-%06d", i)
	}
	return ids
}

// checkResults checks that results holds exactly one item per request.
func checkResults(t *testing.T, n int, results []Result) {
	t.Helper()
	byID := make(map[string]Result, len(results))
	for _, r := range results {
		byID[r.ID] = r
	}
	assert.Len(t, results, n)
	for _, id := range requestIDs(n) {
		r, ok := byID[id]
		if !assert.True(t, ok, "request %s not stored", id) {
			continue
		}
		assert.Equal(t, 9, r.Words, id)
		assert.NotEmpty(t, r.MessageID, id)
		assert.Positive(t, r.Delivery, id)
	}
}

func memoryResults(t *testing.T, cfg Config) []Result {
	t.Helper()
	items := cfg.DynamoDB.(*dynamofake.Fake).Items(cfg.Table)
	var rs []Result
	require.NoError(t, attributevalue.UnmarshalListOfMaps(items, &rs))
	return rs
}

func TestPipelineInMemory(t *testing.T) {
	t.Parallel()
	cfg := Config{Requests: 200}
	inMemory(&cfg)
	start := time.Now()
	s := runPipeline(t, cfg)
	assert.Less(t, time.Since(start), 10*time.Second)

	checkResults(t, 200, memoryResults(t, cfg))
	q := cfg.SQS.(*sqsfake.Fake).Stats(cfg.Queue)
	assert.EqualValues(t, 200, q.Sent)
	assert.EqualValues(t, 200, q.Deleted)
	assert.Zero(t, q.StaleDeletes, "deletes use the newest receipt handle")
	assert.Zero(t, s.Retries)
	assert.Zero(t, s.Sink.DuplicatesSkipped, "no duplicates without faults")
	assert.Less(t, s.Catcher.CallsPer1000(), 500.0, "sends are batched")
	assert.Less(t, s.Pool.Calls["DeleteMessageBatch"], int64(100), "deletes are batched")
}

// Duplicates at both ends: SendMessageBatch replies get lost (the messages
// are queued, the clients get 503 and send the requests again) and receives
// deliver messages twice. The idempotency table, keyed on the request id,
// still stores each request exactly once.
func TestPipelineInMemoryWithDuplicates(t *testing.T) {
	t.Parallel()
	cfg := Config{Requests: 200}
	inMemory(&cfg)
	fake := cfg.SQS.(*sqsfake.Fake)
	fake.SetFaults(sqsfake.Faults{
		"SendMessageBatch": {LostReplyRate: 0.2},
		"ReceiveMessage":   {DuplicateRate: 0.1},
	})
	s := runPipeline(t, cfg)

	checkResults(t, 200, memoryResults(t, cfg))
	q := fake.Stats(cfg.Queue)
	assert.EqualValues(t, 200+s.Retries, q.Sent, "each retried request was queued twice")
	assert.GreaterOrEqual(t, s.Sink.DuplicatesSkipped, int64(s.Retries), "each extra copy skipped by the sink")
	assert.Equal(t, q.Sent, q.Deleted, "every queued message, copies included, deleted")
	if s.Retries == 0 || q.Duplicates == 0 {
		t.Logf("faults barely fired: %d retries, %d duplicate deliveries", s.Retries, q.Duplicates)
	}
}

// The whole pipeline through the real SDK against SQS and DynamoDB (the
// local emulators under ./scripts/test): HTTP requests in, one item per
// request in the table, nothing left in the queue.
func TestPipelineE2E(t *testing.T) {
	t.Parallel()
	sqsClient, ddb := awstest.SQS(t), ddbtest.DynamoDB(t)
	const n = 300
	cfg := Config{
		SQS: sqsClient, DynamoDB: ddb,
		Queue:            awstest.NewQueue(t, sqsClient, "pipeline", nil),
		Table:            ddbtest.NewTable(t, ddb, "pk"),
		IdempotencyTable: ddbtest.NewTable(t, ddb, sink.DefaultIdempotencyKeyAttribute),
		Requests:         n,
		WaitTime:         time.Second, // local-aws-sqs holds long polls open until full
		Timeout:          90 * time.Second,
	}
	runPipeline(t, cfg)

	// Every key, read back from the table.
	var results []Result
	pages := dynamodb.NewScanPaginator(ddb, &dynamodb.ScanInput{TableName: aws.String(cfg.Table), ConsistentRead: aws.Bool(true)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(t.Context())
		require.NoError(t, err)
		var rs []Result
		require.NoError(t, attributevalue.UnmarshalListOfMaps(page.Items, &rs))
		results = append(results, rs...)
	}
	checkResults(t, n, results)
	for _, id := range requestIDs(n) {
		out, err := ddb.GetItem(t.Context(), &dynamodb.GetItemInput{
			TableName: aws.String(cfg.IdempotencyTable), ConsistentRead: aws.Bool(true),
			Key: map[string]ddbtypes.AttributeValue{"id": &ddbtypes.AttributeValueMemberS{Value: cfg.Table + "#" + id}},
		})
		require.NoError(t, err)
		status, _ := out.Item[sink.RecordStatusAttribute].(*ddbtypes.AttributeValueMemberS)
		if assert.NotNil(t, status, "idempotency record of %s", id) {
			assert.Equal(t, sink.StatusComplete, status.Value, id)
		}
	}

	// Nothing left: a receive comes back empty.
	out, err := sqsClient.ReceiveMessage(context.WithoutCancel(t.Context()), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(cfg.Queue), WaitTimeSeconds: 1, MaxNumberOfMessages: 10,
	})
	require.NoError(t, err)
	assert.Empty(t, out.Messages)
}

// SIGINT mid-run (here: the parent context cancelled from the fake's hook at
// the fifth SendMessageBatch) stops everything in order with no error, and
// the summary adds up: every request sent was accepted, refused or cut short;
// every message queued was deleted after its result was stored, or is still
// in the queue.
func TestPipelineInterrupted(t *testing.T) {
	t.Parallel()
	cfg := Config{Requests: 5000, Logger: quiet}
	inMemory(&cfg)
	fake := cfg.SQS.(*sqsfake.Fake)
	ctx, interrupt := context.WithCancel(t.Context())
	defer interrupt()
	var sends atomic.Int32
	fake.SetHook(func(api string, _ any) error {
		if api == sqsfake.OpSendMessageBatch && sends.Add(1) == 5 {
			interrupt()
		}
		return nil
	})

	s, err := run(ctx, cfg)
	var out strings.Builder
	s.Print(&out)
	t.Log("\n" + out.String())
	require.NoError(t, err, "an interrupt is not a failure")
	assert.True(t, s.Interrupted)
	assert.Contains(t, out.String(), fmt.Sprintf("interrupted after %d of 5000 requests", s.Sent))
	assert.LessOrEqual(t, s.Accepted+s.CutShort, s.Sent)

	q := fake.Stats(cfg.Queue)
	p := s.Pool
	assert.EqualValues(t, q.Sent, q.Deleted+int64(s.QueueVisible+s.QueueInFlight), "every queued message deleted or still queued")
	assert.EqualValues(t, s.Stored, p.Deleted, "each stored request deleted once, nothing else deleted")
	assert.EqualValues(t, p.Processed, p.Deleted)
	assert.EqualValues(t, s.Stored, s.Sink.ItemsWritten)
	assert.Zero(t, s.QueueInFlight, "unstarted messages given back at the stop")
	assert.LessOrEqual(t, s.Accepted, int(q.Sent), "every accepted request queued")
	assert.LessOrEqual(t, int(q.Sent), s.Accepted+s.CutShort, "only accepted or cut-short requests queued")
}
