package faults

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sink"
)

// errCrashed is what a crashed process's calls return once the test lets
// its goroutines go (they had no effect).
var errCrashed = errors.New("faults: the process has crashed")

// gate is the boundary between one simulated process and the world. Once
// the process is dead, no call of it takes effect and no reply reaches it:
// calls block until release, then fail with errCrashed. That is what
// SIGKILL does to a process, seen from SQS and DynamoDB.
//
// A gate can kill its process itself at its killAt-th call, before the call
// takes effect (killAfter false) or after it took effect and before its reply
// is seen (killAfter true): every distinguishable crash point lies at such a
// boundary.
type gate struct {
	killAt    int64 // 0: only kill() kills
	killAfter bool

	calls    atomic.Int64
	dead     atomic.Bool
	killed   chan struct{} // closed when the process dies
	released chan struct{} // closed by release: blocked calls return
	once     sync.Once
}

func newGate(killAt int64, killAfter bool) *gate {
	return &gate{killAt: killAt, killAfter: killAfter, killed: make(chan struct{}), released: make(chan struct{})}
}

func (g *gate) kill() {
	g.once.Do(func() {
		g.dead.Store(true)
		close(g.killed)
	})
}

// release lets the dead process's blocked calls return errCrashed, so that
// its goroutines can end.
func (g *gate) release() {
	g.kill()
	select {
	case <-g.released:
	default:
		close(g.released)
	}
}

func (g *gate) crashed() error {
	<-g.released
	return errCrashed
}

// pass runs one call of the process through the gate.
func pass[Out any](g *gate, call func() (*Out, error)) (*Out, error) {
	if g.dead.Load() {
		return nil, g.crashed()
	}
	n := g.calls.Add(1)
	if n == g.killAt && !g.killAfter {
		g.kill()
		return nil, g.crashed()
	}
	out, err := call()
	if n == g.killAt && g.killAfter {
		g.kill()
	}
	if g.dead.Load() {
		return nil, g.crashed()
	}
	return out, err
}

// gatedSQS is a process's SQS client.
type gatedSQS struct {
	gate  *gate
	inner sqspool.Client
}

var _ sqspool.Client = gatedSQS{}

func (c gatedSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, o ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	return pass(c.gate, func() (*sqs.ReceiveMessageOutput, error) { return c.inner.ReceiveMessage(ctx, in, o...) })
}

func (c gatedSQS) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, o ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	return pass(c.gate, func() (*sqs.DeleteMessageBatchOutput, error) { return c.inner.DeleteMessageBatch(ctx, in, o...) })
}

func (c gatedSQS) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, o ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	return pass(c.gate, func() (*sqs.ChangeMessageVisibilityBatchOutput, error) {
		return c.inner.ChangeMessageVisibilityBatch(ctx, in, o...)
	})
}

func (c gatedSQS) GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, o ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error) {
	return pass(c.gate, func() (*sqs.GetQueueUrlOutput, error) { return c.inner.GetQueueUrl(ctx, in, o...) })
}

func (c gatedSQS) GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, o ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	return pass(c.gate, func() (*sqs.GetQueueAttributesOutput, error) { return c.inner.GetQueueAttributes(ctx, in, o...) })
}

// gatedDynamoDB is a process's DynamoDB client.
type gatedDynamoDB struct {
	gate  *gate
	inner sink.DynamoDBAPI
}

var _ sink.DynamoDBAPI = gatedDynamoDB{}

func (c gatedDynamoDB) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, o ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	return pass(c.gate, func() (*dynamodb.BatchWriteItemOutput, error) { return c.inner.BatchWriteItem(ctx, in, o...) })
}

func (c gatedDynamoDB) PutItem(ctx context.Context, in *dynamodb.PutItemInput, o ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return pass(c.gate, func() (*dynamodb.PutItemOutput, error) { return c.inner.PutItem(ctx, in, o...) })
}

func (c gatedDynamoDB) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return pass(c.gate, func() (*dynamodb.UpdateItemOutput, error) { return c.inner.UpdateItem(ctx, in, o...) })
}

func (c gatedDynamoDB) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, o ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return pass(c.gate, func() (*dynamodb.DeleteItemOutput, error) { return c.inner.DeleteItem(ctx, in, o...) })
}

func (c gatedDynamoDB) GetItem(ctx context.Context, in *dynamodb.GetItemInput, o ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return pass(c.gate, func() (*dynamodb.GetItemOutput, error) { return c.inner.GetItem(ctx, in, o...) })
}

// ledger records the effects that really reached DynamoDB: for each result
// key, which process wrote it (once per confirmed write), and for each
// idempotency record, which process marked it COMPLETE.
type ledger struct {
	mu        sync.Mutex
	writes    map[string][]int // result pk -> writing processes, in order
	completes map[string][]int // idempotency record id -> completing processes
}

func newLedger() *ledger {
	return &ledger{writes: map[string][]int{}, completes: map[string][]int{}}
}

func (l *ledger) snapshot() (writes, completes map[string][]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	writes, completes = make(map[string][]int, len(l.writes)), make(map[string][]int, len(l.completes))
	for k, v := range l.writes {
		writes[k] = append([]int(nil), v...)
	}
	for k, v := range l.completes {
		completes[k] = append([]int(nil), v...)
	}
	return writes, completes
}

// recordingDynamoDB sits right above the (fake) DynamoDB and writes what
// took effect into a ledger, on behalf of process proc.
type recordingDynamoDB struct {
	sink.DynamoDBAPI
	ledger *ledger
	proc   int
	pkAttr string
}

func (c recordingDynamoDB) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, o ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	out, err := c.DynamoDBAPI.BatchWriteItem(ctx, in, o...)
	if err != nil {
		return out, err
	}
	c.ledger.mu.Lock()
	defer c.ledger.mu.Unlock()
	for _, pk := range ConfirmedPuts(in, out, c.pkAttr) {
		c.ledger.writes[pk] = append(c.ledger.writes[pk], c.proc)
	}
	for _, id := range ConfirmedCompletes(in, out, sink.DefaultIdempotencyKeyAttribute, sink.RecordStatusAttribute, sink.StatusComplete) {
		c.ledger.completes[id] = append(c.ledger.completes[id], c.proc)
	}
	return out, nil
}

func (c recordingDynamoDB) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	out, err := c.DynamoDBAPI.UpdateItem(ctx, in, o...)
	if err == nil {
		for _, v := range in.ExpressionAttributeValues {
			if s, ok := v.(*ddbtypes.AttributeValueMemberS); ok && s.Value == sink.StatusComplete {
				id := stringValue(in.Key, sink.DefaultIdempotencyKeyAttribute)
				c.ledger.mu.Lock()
				c.ledger.completes[id] = append(c.ledger.completes[id], c.proc)
				c.ledger.mu.Unlock()
				break
			}
		}
	}
	return out, err
}

type ddbAV = ddbtypes.AttributeValue

func sAV(s string) ddbAV { return &ddbtypes.AttributeValueMemberS{Value: s} }

func numberAttr(item map[string]ddbAV, name string) string {
	if n, ok := item[name].(*ddbtypes.AttributeValueMemberN); ok {
		return n.Value
	}
	return ""
}
