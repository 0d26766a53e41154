package sqspool

import (
	"context"
	"errors"
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

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sqsfake"
)

// newProducer returns a producer closed when the test ends.
func newProducer[T any](t *testing.T, c ProducerClient, url string, opts ...ProducerOption) *Producer[T] {
	t.Helper()
	p, err := NewProducer[T](c, url, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	return p
}

// sendAll sends every value concurrently and returns the ids and errors in
// the order of vs.
func sendAll[T any](p *Producer[T], vs ...T) ([]string, []error) {
	ids, errs := make([]string, len(vs)), make([]error, len(vs))
	var wg sync.WaitGroup
	for i, v := range vs {
		wg.Go(func() { ids[i], errs[i] = p.Send(context.Background(), v) })
	}
	wg.Wait()
	return ids, errs
}

func TestProducerSendsWhatThePoolDecodes(t *testing.T) {
	f := sqsfake.New()
	url := f.MustCreateQueue("orders", nil)
	p := newProducer[order](t, f, url)
	id, err := p.Send(context.Background(), order{ID: 7})
	require.NoError(t, err)
	msgs := f.Messages(url)
	require.Len(t, msgs, 1)
	assert.Equal(t, id, msgs[0].MessageID)
	var got order
	require.NoError(t, decoderFor[order]()(msgs[0].Body, &got))
	assert.Equal(t, order{ID: 7}, got)

	for _, raw := range []string{"plain", `{"not":"re-encoded"}`} {
		ps := newProducer[string](t, f, url)
		_, err := ps.Send(context.Background(), raw)
		require.NoError(t, err)
		pb := newProducer[[]byte](t, f, url)
		_, err = pb.Send(context.Background(), []byte(raw))
		require.NoError(t, err)
	}
	var bodies []string
	for _, m := range f.Messages(url)[1:] {
		bodies = append(bodies, m.Body)
	}
	assert.Equal(t, []string{"plain", "plain", `{"not":"re-encoded"}`, `{"not":"re-encoded"}`}, bodies, "string and []byte go raw, as the pool decodes them")
	assert.Equal(t, ProducerStats{Sent: 1, Calls: 1, Entries: 1}, p.Stats())
}

// queued returns an option that reports each message joining a batch, and
// a func that waits until n more have.
func queued() (ProducerOption, func(n int)) {
	ch := make(chan struct{}, 1024)
	return withProducerQueuedHook(func() { ch <- struct{}{} }), func(n int) {
		for range n {
			<-ch
		}
	}
}

// gate holds every SendMessageBatch call of a fake until the test lets it go.
type gate struct {
	entered chan int // entries of each call that arrived
	release chan struct{}
}

func gateCalls(f *sqsfake.Fake) *gate {
	g := &gate{entered: make(chan int, 100), release: make(chan struct{})}
	f.SetHook(func(api string, in any) error {
		if api == "SendMessageBatch" {
			g.entered <- len(in.(*sqs.SendMessageBatchInput).Entries)
			<-g.release
		}
		return nil
	})
	return g
}

// held is a producer with one call slot and no linger whose first
// message's call the gate holds, so that later Sends wait in a batch.
type held[T any] struct {
	p     *Producer[T]
	fake  *sqsfake.Fake
	url   string
	g     *gate
	first chan error // the first Send's result
	wait  func(n int)
}

func holdFirst[T any](t *testing.T, first T) *held[T] {
	t.Helper()
	h := &held[T]{fake: sqsfake.New(), first: make(chan error, 1)}
	h.url = h.fake.MustCreateQueue("held", nil)
	h.g = gateCalls(h.fake)
	var q ProducerOption
	q, h.wait = queued()
	h.p = newProducer[T](t, h.fake, h.url, WithSendLinger(0), WithSendConcurrency(1), q)
	go func() { _, err := h.p.Send(context.Background(), first); h.first <- err }()
	require.Equal(t, 1, <-h.g.entered, "a lone message goes at once")
	h.wait(1)
	return h
}

func TestProducerBatchesConcurrentSends(t *testing.T) {
	h := holdFirst(t, order{ID: 0})
	f, url, g, p, first, wait := h.fake, h.url, h.g, h.p, h.first, h.wait

	// While the only call slot is busy, 25 Sends pile up: they leave in
	// batches of ten, in order.
	vs := make([]order, 25)
	for i := range vs {
		vs[i] = order{ID: i + 1}
	}
	done := make(chan []error, 1)
	go func() { _, errs := sendAll(p, vs...); done <- errs }()
	wait(25)
	close(g.release)
	require.NoError(t, <-first)
	for _, err := range <-done {
		require.NoError(t, err)
	}
	assert.Equal(t, []int{10, 10, 5}, []int{<-g.entered, <-g.entered, <-g.entered})
	st := p.Stats()
	assert.Equal(t, uint64(4), st.Calls)
	assert.Equal(t, uint64(26), st.Sent)
	assert.Len(t, f.Messages(url), 26)
}

func TestProducerKeepsBatchesUnderOneMiB(t *testing.T) {
	h := holdFirst(t, "x")
	g, p, first, wait := h.g, h.p, h.first, h.wait
	big := strings.Repeat("b", 400<<10)
	done := make(chan []error, 1)
	go func() { _, errs := sendAll(p, big, big, big); done <- errs }()
	wait(3)
	close(g.release)
	require.NoError(t, <-first)
	for _, err := range <-done {
		require.NoError(t, err)
	}
	assert.Equal(t, []int{2, 1}, []int{<-g.entered, <-g.entered}, "three 400 KiB messages take two calls")
}

func TestProducerRefusesWhatSQSWouldRefuseBeforeSending(t *testing.T) {
	f := sqsfake.New()
	url := f.MustCreateQueue("orders", nil)
	p := newProducer[string](t, f, url)
	_, err := p.Send(context.Background(), strings.Repeat("x", MaxMessageBytes+1))
	require.ErrorIs(t, err, ErrMessageTooLarge)
	assert.Contains(t, err.Error(), "1048577 bytes")
	for _, bad := range []string{"", "a\x00b"} {
		_, err = p.Send(context.Background(), bad)
		require.ErrorIs(t, err, ErrInvalidMessage, "%q", bad)
	}

	withAttrs := newProducer[string](t, f, url, WithMessageAttributes(func(_ context.Context, v string) map[string]types.MessageAttributeValue {
		return map[string]types.MessageAttributeValue{"pad": {DataType: aws.String("String"), StringValue: aws.String(v)}}
	}))
	_, err = withAttrs.Send(context.Background(), strings.Repeat("y", MaxMessageBytes/2))
	require.ErrorIs(t, err, ErrMessageTooLarge, "body and attributes count together")
	assert.Equal(t, 0, f.Calls("SendMessageBatch"))
	assert.Empty(t, f.Messages(url))
}

// scripted answers SendMessageBatch calls with answer, and records them.
type scripted struct {
	mu     sync.Mutex
	calls  [][]string // bodies per call
	answer func(call int, e types.SendMessageBatchRequestEntry) *types.BatchResultErrorEntry
}

func (s *scripted) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.calls)
	var bodies []string
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		bodies = append(bodies, *e.MessageBody)
		if f := s.answer(n, e); f != nil {
			f.Id = e.Id
			out.Failed = append(out.Failed, *f)
			continue
		}
		out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id, MessageId: aws.String(fmt.Sprintf("id-%s-%d", *e.MessageBody, n))})
	}
	s.calls = append(s.calls, bodies)
	return out, nil
}

func TestProducerRetriesTransientEntryFailuresOnly(t *testing.T) {
	c := &scripted{answer: func(call int, e types.SendMessageBatchRequestEntry) *types.BatchResultErrorEntry {
		switch body := *e.MessageBody; {
		case body == "flaky" && call == 0:
			return &types.BatchResultErrorEntry{Code: aws.String("InternalError"), Message: aws.String("try again")}
		case body == "throttled" && call < 2:
			return &types.BatchResultErrorEntry{Code: aws.String("AWS.SimpleQueueService.RequestThrottled"), SenderFault: true}
		case body == "bad":
			return &types.BatchResultErrorEntry{Code: aws.String("InvalidParameterValue"), Message: aws.String("no"), SenderFault: true}
		}
		return nil
	}}
	clk := clock.NewManual(time.Unix(0, 0))
	q, wait := queued()
	p := newProducer[string](t, c, "https://sqs.example/1/q", WithSendLinger(time.Second), withProducerClock(clk), q)
	// One call carries all four; the first retry after 100 ms carries the
	// two transient failures, the second after 200 ms the throttled one.
	var wg sync.WaitGroup
	var ids [4]string
	var errs [4]error
	for i, v := range []string{"ok", "flaky", "throttled", "bad"} {
		wg.Go(func() { ids[i], errs[i] = p.Send(context.Background(), v) })
	}
	wait(4)
	clk.Advance(time.Second) // the linger ends: one call
	require.True(t, clk.BlockUntil(1, nil))
	clk.Advance(DefaultSendRetryDelay)
	require.True(t, clk.BlockUntil(1, nil))
	clk.Advance(2 * DefaultSendRetryDelay)
	wg.Wait()

	assert.NoError(t, errs[0])
	assert.Equal(t, "id-flaky-", ids[1][:len("id-flaky-")])
	assert.NoError(t, errs[1])
	assert.NoError(t, errs[2])
	var se *SendError
	require.ErrorAs(t, errs[3], &se)
	assert.Equal(t, SendError{Code: "InvalidParameterValue", Message: "no", SenderFault: true, Attempts: 1}, *se, "a sender fault is not retried")
	assert.Equal(t, uint64(3), p.Stats().Retries)
	require.Len(t, c.calls, 3)
	for i, want := range [][]string{{"ok", "flaky", "throttled", "bad"}, {"flaky", "throttled"}, {"throttled"}} {
		assert.ElementsMatch(t, want, c.calls[i], "call %d", i)
	}
	assert.Equal(t, uint64(1), p.Stats().Failed)
}

func TestProducerGivesUpAfterItsAttempts(t *testing.T) {
	c := &scripted{answer: func(int, types.SendMessageBatchRequestEntry) *types.BatchResultErrorEntry {
		return &types.BatchResultErrorEntry{Code: aws.String("InternalError")}
	}}
	clk := clock.NewManual(time.Unix(0, 0))
	p := newProducer[string](t, c, "https://sqs.example/1/q", WithSendLinger(0), WithSendAttempts(2), withProducerClock(clk))
	res := make(chan error, 1)
	go func() { _, err := p.Send(context.Background(), "x"); res <- err }()
	require.True(t, clk.BlockUntil(1, nil))
	clk.Advance(DefaultSendRetryDelay)
	var se *SendError
	require.ErrorAs(t, <-res, &se)
	assert.Equal(t, 2, se.Attempts)
	assert.False(t, se.SenderFault)
	assert.Len(t, c.calls, 2)
}

func TestProducerCallFailureIsAnAPIError(t *testing.T) {
	f := sqsfake.New()
	url := f.MustCreateQueue("orders", nil)
	f.FailNext("SendMessageBatch", 1, &types.QueueDoesNotExist{})
	p := newProducer[order](t, f, url)
	_, err := p.Send(context.Background(), order{ID: 1})
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "SendMessageBatch", apiErr.API)
	var qErr *types.QueueDoesNotExist
	assert.ErrorAs(t, err, &qErr)
}

func TestProducerCancelledBeforeItsCallIsNotSent(t *testing.T) {
	h := holdFirst(t, order{ID: 1})
	f, url, g, p, first, wait := h.fake, h.url, h.g, h.p, h.first, h.wait
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() { _, err := p.Send(ctx, order{ID: 2}); second <- err }()
	wait(1)
	cancel()
	require.ErrorIs(t, <-second, context.Canceled)
	close(g.release)
	require.NoError(t, <-first)
	require.NoError(t, p.Close(context.Background()))
	require.Len(t, f.Messages(url), 1, "the cancelled message was never sent")
}

func TestProducerSendWithAnEndedContextSendsNothing(t *testing.T) {
	f := sqsfake.New()
	url := f.MustCreateQueue("orders", nil)
	p := newProducer[order](t, f, url)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.Send(ctx, order{ID: 1})
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, p.Close(context.Background()))
	assert.Equal(t, 0, f.Calls("SendMessageBatch"))
}

func TestProducerCancelledDuringItsCallWaitsForTheTruth(t *testing.T) {
	f := sqsfake.New()
	url := f.MustCreateQueue("orders", nil)
	g := gateCalls(f)
	p := newProducer[order](t, f, url, WithSendLinger(0))
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { _, err := p.Send(ctx, order{ID: 1}); res <- err }()
	<-g.entered
	cancel()
	close(g.release)
	require.NoError(t, <-res, "SQS stored it, so Send says so")
	require.Len(t, f.Messages(url), 1)
}

func TestProducerCloseFlushesAndRefusesLaterSends(t *testing.T) {
	f := sqsfake.New()
	url := f.MustCreateQueue("orders", nil)
	clk := clock.NewManual(time.Unix(0, 0))
	q, wait := queued()
	p, err := NewProducer[order](f, url, WithSendLinger(time.Hour), withProducerClock(clk), q)
	require.NoError(t, err)
	done := make(chan []error, 1)
	go func() { _, errs := sendAll(p, order{ID: 1}, order{ID: 2}, order{ID: 3}); done <- errs }()
	wait(3)
	require.NoError(t, p.Close(context.Background()), "Close sends the lingering batch without waiting out the linger")
	for _, err := range <-done {
		require.NoError(t, err)
	}
	assert.Len(t, f.Messages(url), 3)
	_, err = p.Send(context.Background(), order{ID: 4})
	require.ErrorIs(t, err, ErrProducerClosed)
	require.NoError(t, p.Close(context.Background()), "Close again")
}

func TestProducerCloseThatGivesUpFailsUnsentMessages(t *testing.T) {
	c := hangingClient{entered: make(chan struct{}, 1)}
	q, wait := queued()
	p, err := NewProducer[order](c, "https://sqs.example/1/q", WithSendLinger(0), WithSendConcurrency(1), q)
	require.NoError(t, err)
	first := make(chan error, 1)
	go func() { _, err := p.Send(context.Background(), order{ID: 1}); first <- err }()
	<-c.entered
	wait(1)
	second := make(chan error, 1)
	go func() { _, err := p.Send(context.Background(), order{ID: 2}); second <- err }()
	wait(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, p.Close(ctx), context.Canceled)
	require.ErrorIs(t, <-second, ErrProducerClosed, "never sent")
	var apiErr *APIError
	require.ErrorAs(t, <-first, &apiErr, "the running call was cancelled")
	assert.ErrorIs(t, apiErr, context.Canceled)
}

// hangingClient's calls hang until their context ends.
type hangingClient struct{ entered chan struct{} }

func (c hangingClient) SendMessageBatch(ctx context.Context, _ *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	c.entered <- struct{}{}
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestProducerFIFOIdsAndAttributes(t *testing.T) {
	f := sqsfake.New()
	url := f.MustCreateQueue("orders.fifo", map[string]string{"FifoQueue": "true"})
	_, err := NewProducer[order](f, url)
	require.ErrorContains(t, err, "WithGroupID is required")

	type traceKey struct{}
	p := newProducer[order](t, f, url,
		WithGroupID(func(o order) string { return o.Group }),
		WithDeduplicationID(func(o order) string { return fmt.Sprint("order-", o.ID) }),
		WithMessageAttributes(func(_ context.Context, o order) map[string]types.MessageAttributeValue {
			return map[string]types.MessageAttributeValue{"kind": {DataType: aws.String("String"), StringValue: aws.String("order")}}
		}),
		WithContextAttributes(func(ctx context.Context, attrs map[string]types.MessageAttributeValue) {
			if v, ok := ctx.Value(traceKey{}).(string); ok {
				attrs["traceparent"] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
			}
		}))
	ctx := context.WithValue(context.Background(), traceKey{}, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	id1, err := p.Send(ctx, order{ID: 1, Group: "g1"})
	require.NoError(t, err)
	id2, err := p.Send(ctx, order{ID: 1, Group: "g1"})
	require.NoError(t, err)
	assert.Equal(t, id1, id2, "SQS deduplicated the repeat and named the first message")
	_, err = p.Send(ctx, order{ID: 2})
	require.ErrorIs(t, err, ErrInvalidMessage, "no group on a FIFO queue")
	_, err = p.Send(ctx, order{ID: 3, Group: "has space"})
	require.ErrorIs(t, err, ErrInvalidMessage)

	msgs := f.Messages(url)
	require.Len(t, msgs, 1)
	assert.Equal(t, "g1", msgs[0].GroupID)
	assert.Equal(t, "order-1", msgs[0].DeduplicationID)
	assert.Equal(t, "order", aws.ToString(msgs[0].Attributes["kind"].StringValue))
	assert.Equal(t, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", aws.ToString(msgs[0].Attributes["traceparent"].StringValue))
}

func TestProducerOptionsAreChecked(t *testing.T) {
	f := sqsfake.New()
	url := f.MustCreateQueue("orders", nil)
	_, err := NewProducer[order](f, url, WithGroupID(func(s string) string { return s }), WithSendConcurrency(0), WithSendLinger(-1))
	require.Error(t, err)
	for _, want := range []string{"WithGroupID: given func(string) string", "WithSendConcurrency(0)", "WithSendLinger(-1ns)"} {
		assert.ErrorContains(t, err, want)
	}
	_, err = NewProducer[order](nil, url)
	assert.Error(t, err)
	_, err = NewProducer[order](f, "")
	assert.Error(t, err)
	_, err = NewProducer[order](f, url, WithEncoder[order](nil), WithSendTimeout(0), WithSendAttempts(0))
	assert.ErrorContains(t, err, "WithEncoder: nil encoder")
	assert.ErrorContains(t, err, "WithSendTimeout(0s)")
	assert.ErrorContains(t, err, "WithSendAttempts(0)")
}

func TestProducerEncoderErrorSendsNothing(t *testing.T) {
	f := sqsfake.New()
	url := f.MustCreateQueue("orders", nil)
	boom := errors.New("boom")
	p := newProducer[order](t, f, url, WithEncoder(func(order) (string, error) { return "", boom }))
	_, err := p.Send(context.Background(), order{})
	require.ErrorIs(t, err, boom)
	assert.Equal(t, 0, f.Calls("SendMessageBatch"))
}
