package sendbatch

import (
	"context"
	"fmt"
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

// lowest draws the smallest jitter: equal jitter then waits half the ceiling.
type lowest struct{}

func (lowest) Int64N(int64) int64 { return 0 }

// Retry delays come from the module's one backoff (equal jitter on a
// ceiling that doubles from RetryDelay), drawn from the Jitter source.
func TestRetryDelaysFollowTheBackoffPolicy(t *testing.T) {
	c := &failing{}
	clk := clock.NewManual(time.Unix(0, 0))
	s := New(c, Options{QueueURL: "q", Attempts: 3, RetryDelay: 100 * time.Millisecond, Jitter: lowest{}, Clock: clk})
	res := make(chan Result, 1)
	go func() { res <- s.Send(context.Background(), message("x"), time.Time{}) }()
	require.True(t, clk.BlockUntil(1, nil), "the first retry waits")
	clk.Advance(49 * time.Millisecond)
	assert.Equal(t, int32(1), c.calls.Load(), "half of 100 ms has not passed")
	clk.Advance(time.Millisecond)
	require.True(t, clk.BlockUntil(1, nil), "the second retry waits")
	assert.Equal(t, int32(2), c.calls.Load())
	clk.Advance(99 * time.Millisecond)
	assert.Equal(t, int32(2), c.calls.Load(), "half of 200 ms has not passed")
	clk.Advance(time.Millisecond)
	r := <-res
	assert.Equal(t, 3, r.Attempts)
	assert.Equal(t, int32(3), c.calls.Load())
	require.NoError(t, s.Close(context.Background()))
}

// answering stores every entry at once.
type answering struct{}

func (answering) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	out := &sqs.SendMessageBatchOutput{Successful: make([]types.SendMessageBatchResultEntry, len(in.Entries))}
	for i, e := range in.Entries {
		out.Successful[i] = types.SendMessageBatchResultEntry{Id: e.Id, MessageId: aws.String("id")}
	}
	return out, nil
}

// BenchmarkSend: 32 concurrent senders per CPU on a client that answers at
// once, with the catcher's defaults (5 ms linger, 16 calls in flight), with
// and without a send-by time; one op is one message. It measures the
// sender's own cost per message (allocations above all).
//
//	go test -run '^$' -bench BenchmarkSend ./internal/sendbatch
func BenchmarkSend(b *testing.B) {
	for _, sendBy := range []bool{false, true} {
		b.Run(fmt.Sprintf("send-by=%t", sendBy), func(b *testing.B) {
			s := New(answering{}, Options{QueueURL: "q", Linger: 5 * time.Millisecond, MaxInFlight: 16})
			b.SetParallelism(32)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					var by time.Time
					if sendBy {
						by = time.Now().Add(time.Minute)
					}
					if r := s.Send(context.Background(), message("body"), by); r.Err != nil {
						b.Error(r.Err)
						return
					}
				}
			})
			if err := s.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// held stores every entry, once open is closed; entered hears of each call.
type held struct {
	entered chan int // the entries of each call
	open    chan struct{}
}

func (h *held) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	h.entered <- len(in.Entries)
	<-h.open
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id, MessageId: aws.String("id-" + *e.MessageBody)})
	}
	return out, nil
}

// Messages that wait behind a held call share one timer for their send-by
// times: it fires at the earliest, gives the messages whose time has come
// ErrLate (they are never sent), and is armed again for the next; a message
// with an earlier send-by time than the armed one arms it earlier. What is
// still in time when the call returns is sent.
func TestSendByTimesShareOneTimer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	clk := clock.NewManual(t0)
	c := &held{entered: make(chan int, 10), open: make(chan struct{})}
	queued := make(chan struct{}, 10)
	s := New(c, Options{QueueURL: "q", MaxInFlight: 1, Clock: clk, OnQueued: func() { queued <- struct{}{} }})
	results := map[string]chan Result{}
	send := func(body string, sendBy time.Duration) {
		ch := make(chan Result, 1)
		results[body] = ch
		go func() { ch <- s.Send(context.Background(), message(body), t0.Add(sendBy)) }()
		<-queued
	}

	send("first", time.Hour) // takes the only call slot
	require.Equal(t, 1, <-c.entered)
	send("at-30s", 30*time.Second)
	send("at-20s", 20*time.Second)
	send("at-50s", 50*time.Second)
	assert.Equal(t, 1, clk.Timers(), "one timer for all send-by times")

	clk.Advance(19 * time.Second)
	send("at-25s", 25*time.Second) // earlier than 30 s and 50 s, later than 20 s
	clk.Advance(time.Second)
	assert.ErrorIs(t, (<-results["at-20s"]).Err, ErrLate)
	require.True(t, clk.BlockUntil(1, nil), "armed again, for 25 s")
	assert.Equal(t, 1, clk.Timers())

	clk.Advance(5 * time.Second)
	assert.ErrorIs(t, (<-results["at-25s"]).Err, ErrLate)
	clk.Advance(5 * time.Second)
	assert.ErrorIs(t, (<-results["at-30s"]).Err, ErrLate)

	close(c.open) // the held call returns; what is still in time goes next
	assert.Equal(t, "id-first", (<-results["first"]).MessageID)
	assert.Equal(t, 1, <-c.entered, "only the message still in time is sent")
	assert.Equal(t, "id-at-50s", (<-results["at-50s"]).MessageID)
	require.NoError(t, s.Close(context.Background()))
	assert.Equal(t, 0, clk.Timers(), "Close stops the timer")
}
