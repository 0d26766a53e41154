package sendbatch

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/clock"
)

// failing fails every entry with InternalError and counts its calls.
type failing struct{ calls atomic.Int32 }

func (f *failing) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.calls.Add(1)
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError")})
	}
	return out, nil
}

func message(body string) *Message {
	m := &Message{Size: len(body)}
	m.Entry.MessageBody = aws.String(body)
	return m
}

// A Close that gives up while a retry waits for its delay ends the wait:
// the message gets ErrClosed, and no further call is made.
func TestCloseThatGivesUpEndsARetryWait(t *testing.T) {
	c := &failing{}
	clk := clock.NewManual(time.Unix(0, 0))
	s := New(c, Options{QueueURL: "q", Attempts: 3, Clock: clk})
	res := make(chan Result, 1)
	go func() { res <- s.Send(context.Background(), message("x"), time.Time{}) }()
	require.True(t, clk.BlockUntil(1, nil), "the retry waits for its delay")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, s.Close(ctx), context.Canceled)
	r := <-res
	assert.ErrorIs(t, r.Err, ErrClosed)
	assert.Equal(t, 1, r.Attempts)
	assert.Equal(t, int32(1), c.calls.Load())
	assert.Equal(t, uint64(1), s.Stats().Retries)
}

// A send-by time already past refuses the message before it is queued.
func TestSendByInThePastIsLate(t *testing.T) {
	c := &failing{}
	clk := clock.NewManual(time.Unix(100, 0))
	s := New(c, Options{QueueURL: "q", Clock: clk})
	r := s.Send(context.Background(), message("x"), clk.Now())
	assert.ErrorIs(t, r.Err, ErrLate)
	require.NoError(t, s.Close(context.Background()))
	assert.Equal(t, int32(0), c.calls.Load())
}
