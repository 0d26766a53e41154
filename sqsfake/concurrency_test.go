package sqsfake_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/sqsfake"
)

// consumeAll runs consumers that long-poll url, hand each message to handle
// (one call at a time) and delete what they received in one batch. It runs
// produce alongside, and returns once total messages have been handled and
// the consumers have stopped.
func consumeAll(t *testing.T, f *sqsfake.Fake, url string, consumers, total int, handle func(types.Message), produce func()) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	handled := 0
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				out, err := f.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
					QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 20,
					MessageSystemAttributeNames: []types.MessageSystemAttributeName{"MessageGroupId"},
				})
				if ctx.Err() != nil || !assert.NoError(t, err) {
					return
				}
				var entries []types.DeleteMessageBatchRequestEntry
				for i, m := range out.Messages {
					mu.Lock()
					handle(m)
					if handled++; handled == total {
						close(done)
					}
					mu.Unlock()
					entries = append(entries, types.DeleteMessageBatchRequestEntry{Id: str(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
				}
				if len(entries) == 0 {
					continue
				}
				del, err := f.DeleteMessageBatch(context.Background(), &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: entries})
				if assert.NoError(t, err) {
					assert.Empty(t, del.Failed)
				}
			}
		}()
	}
	produce()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Error("not every message was consumed")
	}
	cancel()
	wg.Wait()
}

func produce(t *testing.T, f *sqsfake.Fake, url string, producers, batches int, entry func(p, b, i int) types.SendMessageBatchRequestEntry) {
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				var entries []types.SendMessageBatchRequestEntry
				for i := range 10 {
					entries = append(entries, entry(p, b, i))
				}
				out, err := f.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
				if assert.NoError(t, err) {
					assert.Empty(t, out.Failed)
				}
			}
		}()
	}
	wg.Wait()
}

func TestConcurrentProducersAndConsumers(t *testing.T) {
	f, _ := newFake() // the clock never moves: no message is delivered twice
	url := f.MustCreateQueue("q", nil)
	const producers, batches = 4, 250
	const total = producers * batches * 10

	seen := map[string]int{}
	consumeAll(t, f, url, 8, total, func(m types.Message) { seen[*m.MessageId]++ }, func() {
		produce(t, f, url, producers, batches, func(p, b, i int) types.SendMessageBatchRequestEntry {
			return types.SendMessageBatchRequestEntry{Id: str(strconv.Itoa(i)), MessageBody: str("m")}
		})
	})

	assert.Len(t, seen, total)
	for id, n := range seen {
		require.Equal(t, 1, n, id)
	}
	s := f.Stats(url)
	assert.EqualValues(t, total, s.Sent)
	assert.EqualValues(t, total, s.Received)
	assert.EqualValues(t, total, s.Deleted)
	assert.Zero(t, s.Visible+s.InFlight+int(s.StaleDeletes))
}

func TestConcurrentFIFOKeepsGroupOrder(t *testing.T) {
	f, _ := newFake()
	url := fifoQueue(f, nil)
	const producers, batches = 4, 50
	const total = producers * batches * 10

	last := map[string]int{}
	consumeAll(t, f, url, 6, total, func(m types.Message) {
		// Bodies are "producer/sequence"; groups are producers.
		p, seq, _ := strings.Cut(*m.Body, "/")
		n, _ := strconv.Atoi(seq)
		assert.Equal(t, p, m.Attributes["MessageGroupId"])
		if prev, ok := last[p]; ok {
			assert.Equal(t, prev+1, n, "group %s out of order", p)
		}
		last[p] = n
	}, func() {
		produce(t, f, url, producers, batches, func(p, b, i int) types.SendMessageBatchRequestEntry {
			return types.SendMessageBatchRequestEntry{
				Id: str(strconv.Itoa(i)), MessageGroupId: str(strconv.Itoa(p)),
				MessageBody: str(strconv.Itoa(p) + "/" + strconv.Itoa(b*10+i)),
			}
		})
	})
	assert.EqualValues(t, total, f.Stats(url).Deleted)
}

func BenchmarkSendReceiveDelete(b *testing.B) {
	f := sqsfake.New()
	url := f.MustCreateQueue("bench", nil)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var send []types.SendMessageBatchRequestEntry
		for i := range 10 {
			send = append(send, types.SendMessageBatchRequestEntry{Id: str(strconv.Itoa(i)), MessageBody: str(`{"order":12345,"status":"paid"}`)})
		}
		for pb.Next() {
			if _, err := f.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: send}); err != nil {
				b.Fatal(err)
			}
			out, err := f.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10})
			if err != nil {
				b.Fatal(err)
			}
			del := make([]types.DeleteMessageBatchRequestEntry, len(out.Messages))
			for i, m := range out.Messages {
				del[i] = types.DeleteMessageBatchRequestEntry{Id: str(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
			}
			if len(del) > 0 {
				if _, err := f.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: del}); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.ReportMetric(float64(b.N*10)/b.Elapsed().Seconds(), "msgs/s")
}
