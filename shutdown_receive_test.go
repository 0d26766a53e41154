package sqspool

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sqsfake"
)

// receiveLatency is how long every receive takes on the pool's clock in
// these tests: the hook moves the clock while the call is on its way.
const receiveLatency = 50 * time.Millisecond

// graceClock is the pool's clock in these tests: it tells when a timer of
// the receive grace, twice receiveLatency, is armed.
type graceClock struct {
	*clock.Manual
	armed chan struct{} // closed at the first such timer
	once  sync.Once
}

func (c *graceClock) NewTimer(d time.Duration) clock.Timer {
	t := c.Manual.NewTimer(d)
	if d == 2*receiveLatency {
		c.once.Do(func() { close(c.armed) })
	}
	return t
}

// abandoningEnv is a fake SQS that keeps a long poll whose caller has gone,
// as SQS does, on a clock of its own, and a pool clock that receives move by
// receiveLatency. Returns the pool, its clock, the fake and the queue URL.
func abandoningEnv(t *testing.T, h Handler[order]) (*Pool, *graceClock, *clock.Manual, *sqsfake.Fake, string) {
	t.Helper()
	poolClk := &graceClock{Manual: clock.NewManual(time.Now()), armed: make(chan struct{})}
	fakeClk := clock.NewManual(time.Now())
	f := sqsfake.New(clock.Option[sqsfake.Option](fakeClk), sqsfake.WithAbandonedPolls())
	url := f.MustCreateQueue("orders", map[string]string{"VisibilityTimeout": "30"})
	f.SetHook(func(api string, _ any) error {
		if api == sqsfake.OpReceiveMessage {
			poolClk.Advance(receiveLatency)
		}
		return nil
	})
	p, err := StartPool(context.Background(), &Consumer{Client: f, Queue: url}, h,
		withClock(poolClk), WithDeleteLinger(0), WithLogger(quietLogger()), WithWorkers(1))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p, poolClk, fakeClk, f, url
}

func sendBody(t *testing.T, f *sqsfake.Fake, url, body string) {
	t.Helper()
	_, err := f.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(body)})
	require.NoError(t, err)
}

// stopDuringAReceive has the pool handle one message and wait in its next
// receive, then begins Shutdown. It returns the stop's result channel once
// the stop is waiting out the receive's grace, or reports that the stop
// did not wait.
func stopDuringAReceive(t *testing.T, p *Pool, s *seen, poolClk *graceClock, fakeClk *clock.Manual, f *sqsfake.Fake, url string) (stopped <-chan error, inGrace bool) {
	t.Helper()
	sendBody(t, f, url, `{"id":1}`)
	s.wait(t, 1)
	// The next receive waits on the fake's clock, which never moves.
	require.True(t, fakeClk.BlockUntil(1, nil))
	errc := make(chan error, 1)
	stopDone := make(chan struct{})
	go func() {
		errc <- p.Shutdown(context.Background())
		close(stopDone)
	}()
	select {
	case <-poolClk.armed:
		return errc, true
	case <-stopDone:
		return errc, false
	}
}

func waitStopped(t *testing.T, stopped <-chan error) {
	t.Helper()
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(10 * time.Second): // a hang guard
		t.Fatal("Shutdown did not return")
	}
}

// A message that the long poll in flight takes after Shutdown began is not
// lost in flight: the receive is not cancelled at once, and its response
// arrives.
func TestShutdownGivesBackWhatTheLongPollInFlightTakes(t *testing.T) {
	s := newSeen()
	p, poolClk, fakeClk, f, url := abandoningEnv(t, s.handler)
	stopped, _ := stopDuringAReceive(t, p, s, poolClk, fakeClk, f, url)
	sendBody(t, f, url, `{"id":2}`)
	waitStopped(t, stopped)

	// Message 2 reached the pool: it was handled (the stop had not yet told
	// the workers) or given back at once. Either way it is not in flight.
	out, err := f.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10})
	require.NoError(t, err)
	assert.Zero(t, f.Stats(url).Abandoned, "no message went to a receive nobody reads")
	if handled := s.snapshot(); len(handled) == 2 {
		assert.Equal(t, []int{1, 2}, handled)
		assert.Empty(t, out.Messages, "message 2 was deleted")
	} else {
		assert.Equal(t, []int{1}, handled)
		require.Len(t, out.Messages, 1, "message 2 is back in the queue at once")
		assert.JSONEq(t, `{"id":2}`, *out.Messages[0].Body)
		assert.EqualValues(t, 1, p.Stats().Returned)
	}
}

// The grace is bounded: a long poll that gets nothing is cancelled when it
// ends, twice the receive latency after the stop began.
func TestShutdownCancelsAWaitingLongPollAfterItsGrace(t *testing.T) {
	s := newSeen()
	p, poolClk, fakeClk, f, url := abandoningEnv(t, s.handler)
	stopped, inGrace := stopDuringAReceive(t, p, s, poolClk, fakeClk, f, url)
	require.True(t, inGrace, "the stop did not wait for the receive")
	poolClk.Advance(2*receiveLatency - time.Millisecond)
	select {
	case <-stopped:
		t.Fatal("Shutdown cancelled the receive before its grace ended")
	default:
	}
	poolClk.Advance(time.Millisecond)
	waitStopped(t, stopped)
	assert.EqualValues(t, 2, p.Stats().Calls["ReceiveMessage"])
}
