package sendbatch

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/clock"
)

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
