package sqspool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/internal/awstest"
)

// TestIntegrationProducerToPool sends from 64 goroutines through one
// Producer, through the SDK, and consumes with a pool of the same type:
// every Send's MessageId is the message the pool decodes, with its
// attributes, and the Sends shared their calls.
func TestIntegrationProducerToPool(t *testing.T) {
	c := itSQS(t)
	url := awstest.NewQueue(t, c, "producer", nil)
	p, err := sqspool.NewProducer[itJob](c, url, sqspool.WithMessageAttributes(func(_ context.Context, j itJob) map[string]types.MessageAttributeValue {
		return map[string]types.MessageAttributeValue{"n": {DataType: aws.String("Number"), StringValue: aws.String(fmt.Sprint(j.N))}}
	}))
	require.NoError(t, err)
	const n = 300
	ids := make([]string, n)
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			for i := w; i < n; i += 64 {
				id, err := p.Send(t.Context(), itJob{N: i})
				assert.NoError(t, err)
				ids[i] = id
			}
		})
	}
	wg.Wait()
	require.NoError(t, p.Close(t.Context()))
	st := p.Stats()
	assert.Equal(t, uint64(n), st.Sent)
	assert.Less(t, st.Calls, uint64(n), "concurrent Sends share calls")
	t.Logf("%d messages in %d SendMessageBatch calls", st.Sent, st.Calls)

	type got struct {
		id, attr string
	}
	var mu sync.Mutex
	seen := map[int]got{}
	all := make(chan struct{})
	itStart(t, c, url, func(ctx context.Context, j *itJob) error {
		m, _ := sqspool.MessageFrom(ctx)
		mu.Lock()
		defer mu.Unlock()
		seen[j.N] = got{m.ID, aws.ToString(m.MessageAttributes["n"].StringValue)}
		if len(seen) == n {
			close(all)
		}
		return nil
	})
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		t.Fatal("not every message arrived")
	}
	mu.Lock()
	defer mu.Unlock()
	for i, id := range ids {
		assert.Equal(t, got{id, fmt.Sprint(i)}, seen[i], "message %d", i)
	}
}

// TestIntegrationProducerFIFO sends three groups from one goroutine each
// and checks that SQS kept each group's order and took the ids.
func TestIntegrationProducerFIFO(t *testing.T) {
	c := itSQS(t)
	url := awstest.NewQueue(t, c, "producer", map[string]string{"FifoQueue": "true"})
	p, err := sqspool.NewProducer[itJob](c, url,
		sqspool.WithGroupID(func(j itJob) string { return j.Group }),
		sqspool.WithDeduplicationID(func(j itJob) string { return fmt.Sprint(j.Group, "-", j.N) }))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for _, g := range []string{"a", "b", "c"} {
		wg.Go(func() {
			for i := range 10 {
				_, err := p.Send(t.Context(), itJob{N: i, Group: g})
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	_, err = p.Send(t.Context(), itJob{N: 1})
	require.ErrorIs(t, err, sqspool.ErrInvalidMessage, "no group")
	require.NoError(t, p.Close(t.Context()))

	order := map[string][]int{}
	for received := 0; received < 30; {
		msgs := itReceive(t, c, url, 10)
		require.NotEmpty(t, msgs, "after %d messages", received)
		for _, m := range msgs {
			var j itJob
			require.NoError(t, json.Unmarshal([]byte(aws.ToString(m.Body)), &j))
			assert.Equal(t, j.Group, m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)])
			assert.Equal(t, fmt.Sprint(j.Group, "-", j.N), m.Attributes[string(types.MessageSystemAttributeNameMessageDeduplicationId)])
			order[j.Group] = append(order[j.Group], j.N)
			_, err := c.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
			require.NoError(t, err)
			received++
		}
	}
	for _, g := range []string{"a", "b", "c"} {
		assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, order[g], "group %s", g)
	}
}

// TestIntegrationProducerRefusesOversizeMessages checks the limit before
// SQS does, with the SDK's client.
func TestIntegrationProducerRefusesOversizeMessages(t *testing.T) {
	c := itSQS(t)
	url := awstest.NewQueue(t, c, "producer", nil)
	p, err := sqspool.NewProducer[string](c, url)
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Close(context.Background())) }()
	_, err = p.Send(t.Context(), strings.Repeat("x", sqspool.MaxMessageBytes+1))
	require.ErrorIs(t, err, sqspool.ErrMessageTooLarge)
	id, err := p.Send(t.Context(), strings.Repeat("x", 200<<10))
	require.NoError(t, err)
	assert.NotEmpty(t, id)
	assert.Equal(t, uint64(1), p.Stats().Calls)
}
