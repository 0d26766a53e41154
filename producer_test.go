package sqspool

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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

	half := strings.Repeat("y", MaxMessageBytes/2)
	_, err = p.Send(context.Background(), half, Attributes(map[string]types.MessageAttributeValue{"pad": {DataType: aws.String("String"), StringValue: aws.String(half)}}))
	require.ErrorIs(t, err, ErrMessageTooLarge, "body and attributes count together")
	six := func(prefix string) map[string]types.MessageAttributeValue {
		m := map[string]types.MessageAttributeValue{}
		for i := range 6 {
			m[fmt.Sprint(prefix, i)] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String("v")}
		}
		return m
	}
	_, err = p.Send(context.Background(), "x", Attributes(six("a")), Attributes(six("b")))
	require.ErrorIs(t, err, ErrInvalidMessage, "the attributes of both options count")
	assert.ErrorContains(t, err, "12 message attributes")
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
	type traceKey struct{}
	p := newProducer[order](t, f, url,
		WithContextAttributes(func(ctx context.Context, attrs map[string]types.MessageAttributeValue) {
			if v, ok := ctx.Value(traceKey{}).(string); ok {
				attrs["traceparent"] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
			}
		}))
	ctx := context.WithValue(context.Background(), traceKey{}, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	// One map serves every Send: the hook writes into a copy, so the
	// concurrent Sends below neither race on it nor change it.
	kind := map[string]types.MessageAttributeValue{"kind": {DataType: aws.String("String"), StringValue: aws.String("order")}}
	send := func(o order, opts ...SendOption) (string, error) {
		return p.Send(ctx, o, append(opts, Attributes(kind))...)
	}
	ids, errs := make([]string, 2), make([]error, 2)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() { ids[i], errs[i] = send(order{ID: 1}, GroupID("g1"), DeduplicationID("order-1")) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	assert.Equal(t, ids[0], ids[1], "SQS deduplicated the repeat and named the first message")
	assert.Len(t, kind, 1, "the caller's map is not written")
	_, err := send(order{ID: 2})
	require.ErrorIs(t, err, ErrInvalidMessage, "no group on a FIFO queue")
	assert.ErrorContains(t, err, "GroupID")
	_, err = send(order{ID: 3}, GroupID("has space"))
	require.ErrorIs(t, err, ErrInvalidMessage)
	_, err = send(order{ID: 4}, GroupID("g1"), DeduplicationID("bad id"))
	require.ErrorIs(t, err, ErrInvalidMessage)
	// The later id wins; attributes of several options are merged.
	_, err = p.Send(ctx, order{ID: 5}, GroupID("g0"), DeduplicationID("x"), GroupID("g2"), DeduplicationID("order-5"),
		Attributes(kind), Attributes(map[string]types.MessageAttributeValue{"n": {DataType: aws.String("Number"), StringValue: aws.String("5")}}))
	require.NoError(t, err)

	msgs := f.Messages(url)
	require.Len(t, msgs, 2)
	for i, want := range []struct{ group, dedup string }{{"g1", "order-1"}, {"g2", "order-5"}} {
		assert.Equal(t, want.group, msgs[i].GroupID)
		assert.Equal(t, want.dedup, msgs[i].DeduplicationID)
		assert.Equal(t, "order", aws.ToString(msgs[i].Attributes["kind"].StringValue))
		assert.Equal(t, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", aws.ToString(msgs[i].Attributes["traceparent"].StringValue))
	}
	assert.Equal(t, "5", aws.ToString(msgs[1].Attributes["n"].StringValue))
}

func TestProducerOptionsAreChecked(t *testing.T) {
	f := sqsfake.New()
	url := f.MustCreateQueue("orders", nil)
	_, err := NewProducer[order](f, url, WithSendConcurrency(0), WithSendLinger(-1), WithSendTimeout(0), WithSendAttempts(0), WithContextAttributes(nil))
	require.Error(t, err)
	for _, want := range []string{"WithSendConcurrency(0)", "WithSendLinger(-1ns)", "WithSendTimeout(0s)", "WithSendAttempts(0)", "WithContextAttributes: nil func"} {
		assert.ErrorContains(t, err, want)
	}
	_, err = NewProducer[order](nil, url)
	assert.Error(t, err)
	_, err = NewProducer[order](f, "")
	assert.Error(t, err)
}

// selfEncoded encodes its own body, with a value receiver; ptrEncoded with
// a pointer receiver. Both are what a Producer of their type sends.
type selfEncoded struct{ n int }

func (s selfEncoded) EncodeBody() (string, error) {
	if s.n < 0 {
		return "", errBadValue
	}
	return fmt.Sprint("self:", s.n), nil
}

type ptrEncoded []string

func (p *ptrEncoded) EncodeBody() (string, error) { return strings.Join(*p, "|"), nil }

var errBadValue = errors.New("bad value")

func TestProducerBodyEncoder(t *testing.T) {
	f := sqsfake.New()
	url := f.MustCreateQueue("orders", nil)
	self := newProducer[selfEncoded](t, f, url)
	_, err := self.Send(context.Background(), selfEncoded{n: 7})
	require.NoError(t, err)
	ptr := newProducer[ptrEncoded](t, f, url)
	_, err = ptr.Send(context.Background(), ptrEncoded{"a", "b"})
	require.NoError(t, err)
	ptrT := newProducer[*selfEncoded](t, f, url)
	_, err = ptrT.Send(context.Background(), &selfEncoded{n: 8})
	require.NoError(t, err)

	_, err = self.Send(context.Background(), selfEncoded{n: -1})
	require.ErrorIs(t, err, errBadValue)
	assert.Equal(t, 3, f.Calls("SendMessageBatch"), "a value that does not encode is not sent")
	var bodies []string
	for _, m := range f.Messages(url) {
		bodies = append(bodies, m.Body)
	}
	assert.Equal(t, []string{"self:7", "a|b", "self:8"}, bodies)
}

// okClient stores nothing and reports every entry as sent.
type okClient struct{}

func (okClient) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	out := &sqs.SendMessageBatchOutput{Successful: make([]types.SendMessageBatchResultEntry, len(in.Entries))}
	for i, e := range in.Entries {
		out.Successful[i] = types.SendMessageBatchResultEntry{Id: e.Id, MessageId: e.Id}
	}
	return out, nil
}

// BenchmarkProducerSend is the cost of one Send from one goroutine (one
// call per message) without the client's: allocs/op shows what encoding
// and the SendOptions cost.
//
//	go test -run '^$' -bench ProducerSend -benchmem .
func BenchmarkProducerSend(b *testing.B) {
	ctx := context.Background()
	run := func(b *testing.B, url string, send func(p *Producer[benchBody]) error) {
		p, err := NewProducer[benchBody](okClient{}, url, WithSendLinger(0))
		require.NoError(b, err)
		b.ReportAllocs()
		for b.Loop() {
			if err := send(p); err != nil {
				b.Fatal(err)
			}
		}
		require.NoError(b, p.Close(ctx))
	}
	v := benchBody{ID: 1, Kind: "order", Customer: "c-1"}
	b.Run("json", func(b *testing.B) {
		run(b, "https://sqs.example/1/q", func(p *Producer[benchBody]) error { _, err := p.Send(ctx, v); return err })
	})
	b.Run("fifo", func(b *testing.B) {
		run(b, "https://sqs.example/1/q.fifo", func(p *Producer[benchBody]) error {
			_, err := p.Send(ctx, v, GroupID(v.Customer), DeduplicationID(strconv.Itoa(v.ID)))
			return err
		})
	})
	b.Run("string", func(b *testing.B) {
		p, err := NewProducer[string](okClient{}, "https://sqs.example/1/q", WithSendLinger(0))
		require.NoError(b, err)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Send(ctx, "body"); err != nil {
				b.Fatal(err)
			}
		}
		require.NoError(b, p.Close(ctx))
	})
}
