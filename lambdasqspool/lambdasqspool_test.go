package lambdasqspool_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/lambdasqspool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The events under testdata have the shape Lambda gives an SQS event
// source mapping: an SNS topic delivering to a standard queue (and one
// body sent straight to it), an SNS FIFO topic delivering to a FIFO queue,
// and a producer that sent trace context in message attributes.

type order struct {
	ID     string `json:"id"`
	Action string `json:"action"`
}

// run is one record's handler run, as the handler saw it.
type run struct {
	OrderID      string
	MessageID    string
	QueueURL     string
	ReceiveCount int
	GroupID      string
	SentAt       time.Time
}

var errRateLimited = errors.New("rate limited")

// recorder is a handler whose outcome each order's action names.
type recorder struct {
	mu   sync.Mutex
	runs []run
}

func (r *recorder) handle(ctx context.Context, o *order) error {
	m, ok := sqspool.MessageFrom(ctx)
	if !ok {
		return errors.New("no message in the handler's context")
	}
	r.mu.Lock()
	r.runs = append(r.runs, run{o.ID, m.ID, m.QueueURL, m.ReceiveCount, m.GroupID, m.SentAt})
	r.mu.Unlock()
	switch o.Action {
	case "fail":
		return errors.New("downstream refused " + o.ID)
	case "noretry":
		return sqspool.NoRetry(errors.New("order " + o.ID + " was cancelled"))
	case "retry":
		return sqspool.RetryAfter(30*time.Second, errRateLimited)
	case "panic":
		panic("handler bug on " + o.ID)
	}
	return nil
}

func (r *recorder) run(orderID string) run {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.runs {
		if x.OrderID == orderID {
			return x
		}
	}
	return run{}
}

func (r *recorder) orders() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, x := range r.runs {
		ids = append(ids, x.OrderID)
	}
	return ids
}

// visibilityClient records ChangeMessageVisibility calls.
type visibilityClient struct {
	mu    sync.Mutex
	calls []*sqs.ChangeMessageVisibilityInput
	err   error
}

func (c *visibilityClient) ChangeMessageVisibility(_ context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, in)
	return &sqs.ChangeMessageVisibilityOutput{}, c.err
}

// hookLog records what the error hook heard.
type hookLog struct {
	mu   sync.Mutex
	errs map[string][]error // by message id
}

func (h *hookLog) hook(_ context.Context, m *sqspool.Message, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.errs == nil {
		h.errs = make(map[string][]error)
	}
	h.errs[m.ID] = append(h.errs[m.ID], err)
}

var quiet = sqspool.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

// invoke runs h as the Lambda runtime does: the event's JSON in, the
// response's JSON out.
func invoke(t *testing.T, ctx context.Context, h lambdasqspool.Handler, event string) string {
	t.Helper()
	payload, err := os.ReadFile(filepath.Join("testdata", event))
	require.NoError(t, err)
	out, err := lambda.NewHandler(h).Invoke(ctx, payload)
	require.NoError(t, err)
	return string(out)
}

func TestStandardQueueReportsTheRecordsToRetry(t *testing.T) {
	var rec recorder
	var hooks hookLog
	client := &visibilityClient{}
	h, err := lambdasqspool.New(rec.handle, client, sqspool.WithSNSEnvelope(), sqspool.WithErrorHook(hooks.hook), quiet)
	require.NoError(t, err)

	got := invoke(t, context.Background(), h, "standard-sns.json")

	// o-2 failed, o-3 is not an SNS notification, o-5 asked for a retry,
	// o-6 panicked, o-7's message is not JSON; o-4's NoRetry is reported
	// as done so that it is deleted.
	assert.JSONEq(t, `{"batchItemFailures":[
		{"itemIdentifier":"2e1424d4-f796-459a-8184-9c92662be6da"},
		{"itemIdentifier":"8b6e1f3a-0c2d-4e5f-9a7b-1c3d5e7f9a2b"},
		{"itemIdentifier":"d1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f5a"},
		{"itemIdentifier":"e7f8a9b0-c1d2-4e3f-9a4b-5c6d7e8f9a0b"},
		{"itemIdentifier":"f0a1b2c3-d4e5-4f6a-8b7c-9d0e1f2a3b4c"}]}`, got)
	// Malformed bodies never reach the handler.
	assert.ElementsMatch(t, []string{"o-1", "o-2", "o-4", "o-5", "o-6", "o-8"}, rec.orders())

	first, last := rec.run("o-1"), rec.run("o-8")
	assert.Equal(t, "059f36b4-87a3-44ab-83d2-661975830a7d", first.MessageID)
	assert.Equal(t, "https://sqs.us-east-1.amazonaws.com/123456789012/orders", first.QueueURL)
	assert.Equal(t, 1, first.ReceiveCount)
	assert.Equal(t, time.UnixMilli(1764494047512), first.SentAt)
	assert.Equal(t, 3, last.ReceiveCount)

	// RetryAfter set o-5's visibility timeout before it was reported.
	require.Len(t, client.calls, 1)
	assert.Equal(t, "https://sqs.us-east-1.amazonaws.com/123456789012/orders", aws.ToString(client.calls[0].QueueUrl))
	assert.Equal(t, "QVFFQjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA1cmVjZWlwdC1oYW5kbGUtb2YtNQ==", aws.ToString(client.calls[0].ReceiptHandle))
	assert.Equal(t, int32(30), client.calls[0].VisibilityTimeout)

	// The error hook heard of every failure, with the pool's error types.
	var derr *sqspool.DecodeError
	require.Len(t, hooks.errs["8b6e1f3a-0c2d-4e5f-9a7b-1c3d5e7f9a2b"], 1)
	assert.ErrorAs(t, hooks.errs["8b6e1f3a-0c2d-4e5f-9a7b-1c3d5e7f9a2b"][0], &derr)
	assert.ErrorIs(t, hooks.errs["8b6e1f3a-0c2d-4e5f-9a7b-1c3d5e7f9a2b"][0], sqspool.ErrNotSNSEnvelope)
	require.Len(t, hooks.errs["f0a1b2c3-d4e5-4f6a-8b7c-9d0e1f2a3b4c"], 1)
	assert.ErrorAs(t, hooks.errs["f0a1b2c3-d4e5-4f6a-8b7c-9d0e1f2a3b4c"][0], &derr)
	var perr *sqspool.PanicError
	require.Len(t, hooks.errs["e7f8a9b0-c1d2-4e3f-9a4b-5c6d7e8f9a0b"], 1)
	assert.ErrorAs(t, hooks.errs["e7f8a9b0-c1d2-4e3f-9a4b-5c6d7e8f9a0b"][0], &perr)
	require.Len(t, hooks.errs["c4d5e6f7-a8b9-4c0d-8e1f-2a3b4c5d6e7f"], 1)
	assert.ErrorIs(t, hooks.errs["c4d5e6f7-a8b9-4c0d-8e1f-2a3b4c5d6e7f"][0], sqspool.ErrNoRetry)
	assert.Len(t, hooks.errs, 6)
}

func TestDeleteMalformedReportsMalformedBodiesAsDone(t *testing.T) {
	var rec recorder
	h, err := lambdasqspool.New(rec.handle, &visibilityClient{}, sqspool.WithSNSEnvelope(),
		sqspool.WithDecodeFailure(sqspool.DeleteMalformed), quiet)
	require.NoError(t, err)

	assert.JSONEq(t, `{"batchItemFailures":[
		{"itemIdentifier":"2e1424d4-f796-459a-8184-9c92662be6da"},
		{"itemIdentifier":"d1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f5a"},
		{"itemIdentifier":"e7f8a9b0-c1d2-4e3f-9a4b-5c6d7e8f9a0b"}]}`,
		invoke(t, context.Background(), h, "standard-sns.json"))
}

func TestFIFOStopsAtTheFirstFailureAndReportsEveryLaterRecord(t *testing.T) {
	var rec recorder
	h, err := lambdasqspool.New(rec.handle, nil, sqspool.WithSNSEnvelope(), quiet)
	require.NoError(t, err)

	got := invoke(t, context.Background(), h, "fifo-sns.json")

	assert.JSONEq(t, `{"batchItemFailures":[
		{"itemIdentifier":"33c4d5e6-f7a8-4b92-a3b4-c5d6e7f8091a"},
		{"itemIdentifier":"44d5e6f7-a8b9-4ca3-b4c5-d6e7f8091a2b"}]}`, got)
	// f-4 comes after the failure in its group: it never ran.
	assert.Equal(t, []string{"f-1", "f-2", "f-3"}, rec.orders())
	assert.Equal(t, "customer-42", rec.runs[0].GroupID)
	assert.Equal(t, "https://sqs.us-east-1.amazonaws.com/123456789012/orders.fifo", rec.runs[0].QueueURL)
}

func TestFIFOMalformedBodyStopsTheInvocationUnlessDeleted(t *testing.T) {
	for _, tc := range []struct {
		name    string
		policy  sqspool.DecodeFailurePolicy
		want    string
		decoded int // bodies the invocation tried to decode
	}{
		{"leave", sqspool.LeaveMalformed, `{"batchItemFailures":[
			{"itemIdentifier":"11a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8"},
			{"itemIdentifier":"22b3c4d5-e6f7-4a81-92a3-b4c5d6e7f809"},
			{"itemIdentifier":"33c4d5e6-f7a8-4b92-a3b4-c5d6e7f8091a"},
			{"itemIdentifier":"44d5e6f7-a8b9-4ca3-b4c5-d6e7f8091a2b"}]}`, 1},
		{"delete", sqspool.DeleteMalformed, `{"batchItemFailures":[]}`, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ran []int
			var hooks hookLog
			// Without WithSNSEnvelope every body, an SNS envelope, is
			// malformed for an int.
			h, err := lambdasqspool.New(func(_ context.Context, n *int) error {
				ran = append(ran, *n)
				return nil
			}, nil, sqspool.WithDecodeFailure(tc.policy), sqspool.WithErrorHook(hooks.hook), quiet)
			require.NoError(t, err)
			assert.JSONEq(t, tc.want, invoke(t, context.Background(), h, "fifo-sns.json"))
			assert.Empty(t, ran)
			assert.Len(t, hooks.errs, tc.decoded)
		})
	}
}

func TestRetryAfterThatCannotBeSetIsStillReported(t *testing.T) {
	var rec recorder
	var hooks hookLog
	client := &visibilityClient{err: errors.New("AccessDenied")}
	h, err := lambdasqspool.New(rec.handle, client, sqspool.WithSNSEnvelope(), sqspool.WithErrorHook(hooks.hook), quiet)
	require.NoError(t, err)

	got := invoke(t, context.Background(), h, "standard-sns.json")

	assert.Contains(t, got, `"d1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f5a"`)
	errs := hooks.errs["d1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f5a"]
	require.Len(t, errs, 2)
	var apiErr *sqspool.APIError
	require.ErrorAs(t, errs[0], &apiErr)
	assert.Equal(t, "ChangeMessageVisibility", apiErr.API)
	assert.ErrorIs(t, errs[1], errRateLimited)
}

// tracingObserver stands for otelsqspool.New(): it reads the producer's
// trace context from the message, as otelsqspool does, and hands the
// handler a context that carries it.
type tracingObserver struct {
	sqspool.NopObserver
	mu      sync.Mutex
	started []string
	ended   map[string]error
}

type traceKey struct{}

func (o *tracingObserver) Start(ctx context.Context, m *sqspool.Message) (context.Context, func(error)) {
	parent := m.Attributes["AWSTraceHeader"]
	if a, ok := m.MessageAttributes["traceparent"]; ok {
		parent = aws.ToString(a.StringValue)
	}
	o.mu.Lock()
	o.started = append(o.started, parent)
	o.mu.Unlock()
	return context.WithValue(ctx, traceKey{}, parent), func(err error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.ended == nil {
			o.ended = make(map[string]error)
		}
		o.ended[m.ID] = err
	}
}

func TestObserverContinuesTheRecordsTraceInTheHandlersContext(t *testing.T) {
	obs := &tracingObserver{}
	var mu sync.Mutex
	var seen []string
	h, err := lambdasqspool.New(func(ctx context.Context, o *order) error {
		parent, _ := ctx.Value(traceKey{}).(string)
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, parent)
		if o.ID == "t-2" {
			return errors.New("failed under its span")
		}
		return nil
	}, nil, sqspool.WithObserver(obs), quiet)
	require.NoError(t, err)

	assert.JSONEq(t, `{"batchItemFailures":[{"itemIdentifier":"6f5e4d3c-2b1a-4098-9e8d-7c6b5a493827"}]}`,
		invoke(t, context.Background(), h, "standard-traced.json"))

	want := []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"Root=1-692c0b38-fedcba9876543210fedcba98;Parent=7654321076543210;Sampled=1",
	}
	assert.ElementsMatch(t, want, obs.started)
	assert.ElementsMatch(t, want, seen)
	assert.NoError(t, obs.ended["5e4d3c2b-1a09-4f8e-8d7c-6b5a49382716"])
	assert.EqualError(t, obs.ended["6f5e4d3c-2b1a-4098-9e8d-7c6b5a493827"], "failed under its span")
}

func TestMessageAttributesReachTheHandler(t *testing.T) {
	var tenant string
	h, err := lambdasqspool.New(func(ctx context.Context, o *order) error {
		m, _ := sqspool.MessageFrom(ctx)
		if o.ID == "t-1" {
			tenant = aws.ToString(m.MessageAttributes["tenant"].StringValue)
		}
		return nil
	}, nil, quiet)
	require.NoError(t, err)
	assert.JSONEq(t, `{"batchItemFailures":[]}`, invoke(t, context.Background(), h, "standard-traced.json"))
	assert.Equal(t, "acme", tenant)
}

func TestRecordsLeftWhenTheInvocationEndsAreReportedUnrun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rec recorder
	h, err := lambdasqspool.New(func(hctx context.Context, o *order) error {
		if o.ID == "o-2" {
			cancel() // the invocation's deadline passes while o-2 runs
		}
		return rec.handle(hctx, &order{ID: o.ID})
	}, nil, sqspool.WithSNSEnvelope(), sqspool.WithWorkers(1), quiet)
	require.NoError(t, err)

	got := invoke(t, ctx, h, "standard-sns.json")

	// One at a time: o-2 succeeded; everything after it is reported
	// without running.
	assert.JSONEq(t, `{"batchItemFailures":[
		{"itemIdentifier":"8b6e1f3a-0c2d-4e5f-9a7b-1c3d5e7f9a2b"},
		{"itemIdentifier":"c4d5e6f7-a8b9-4c0d-8e1f-2a3b4c5d6e7f"},
		{"itemIdentifier":"d1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f5a"},
		{"itemIdentifier":"e7f8a9b0-c1d2-4e3f-9a4b-5c6d7e8f9a0b"},
		{"itemIdentifier":"f0a1b2c3-d4e5-4f6a-8b7c-9d0e1f2a3b4c"},
		{"itemIdentifier":"a9b8c7d6-e5f4-4a3b-9c2d-1e0f9a8b7c6d"}]}`, got)
	assert.Equal(t, []string{"o-1", "o-2"}, rec.orders())
}

func TestNewRejectsBadArguments(t *testing.T) {
	_, err := lambdasqspool.New[order](nil, nil)
	assert.Error(t, err)
	_, err = lambdasqspool.New(func(context.Context, *order) error { return nil }, nil, sqspool.WithWorkers(0))
	assert.ErrorContains(t, err, "workers must be at least 1")
}

func TestRawBodiesForStringHandlers(t *testing.T) {
	var bodies []string
	h, err := lambdasqspool.New(func(_ context.Context, s *string) error {
		bodies = append(bodies, *s)
		return nil
	}, nil, sqspool.WithWorkers(1), quiet)
	require.NoError(t, err)
	assert.JSONEq(t, `{"batchItemFailures":[]}`, invoke(t, context.Background(), h, "standard-traced.json"))
	assert.Equal(t, []string{`{"id": "t-1", "action": "ok"}`, `{"id": "t-2", "action": "ok"}`}, bodies)
}

// A standard queue's records run up to WithWorkers at once, and no more:
// the first three handlers block, and once every goroutine of the
// invocation is blocked (synctest.Wait) exactly three are running; a
// fourth worker would have run the other records meanwhile.
func TestStandardRecordsRunUpToWorkersAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const workers = 3
		var running, most, arrivals atomic.Int64
		release := make(chan struct{})
		var rec recorder
		h, err := lambdasqspool.New(func(ctx context.Context, o *order) error {
			n := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			if arrivals.Add(1) <= workers {
				<-release
			}
			return rec.handle(ctx, o)
		}, nil, sqspool.WithSNSEnvelope(), sqspool.WithWorkers(workers), quiet)
		require.NoError(t, err)

		finished := make(chan string)
		go func() { finished <- invoke(t, context.Background(), h, "standard-sns.json") }()
		synctest.Wait()
		assert.Equal(t, int64(workers), running.Load(), "handlers running while the first ones wait")
		assert.Equal(t, int64(workers), most.Load(), "most handlers running at once")
		close(release)
		got := <-finished

		assert.Len(t, rec.orders(), 6)
		assert.Contains(t, got, "2e1424d4-f796-459a-8184-9c92662be6da")
	})
}

// A FIFO queue's records run one at a time, in order, whatever WithWorkers.
func TestFIFORecordsRunOneAtATimeInOrder(t *testing.T) {
	var running atomic.Int64
	var rec recorder
	h, err := lambdasqspool.New(func(ctx context.Context, o *order) error {
		if running.Add(1) > 1 {
			t.Errorf("%s runs beside another record of the FIFO queue", o.ID)
		}
		defer running.Add(-1)
		return rec.handle(ctx, &order{ID: o.ID})
	}, nil, sqspool.WithSNSEnvelope(), sqspool.WithWorkers(8), quiet)
	require.NoError(t, err)

	assert.JSONEq(t, `{"batchItemFailures":[]}`, invoke(t, context.Background(), h, "fifo-sns.json"))
	assert.Equal(t, []string{"f-1", "f-2", "f-3", "f-4"}, rec.orders())
}

// A handler that runs until its context ends is cut short a tenth of the
// invocation's time (at most a second) before the invocation's deadline, so
// that the function still answers, reporting that record and those left
// unstarted; the records done before it are not run again.
func TestHandlersEndBeforeTheInvocationSoThatItAnswers(t *testing.T) {
	for _, tc := range []struct {
		timeout, margin time.Duration
	}{
		{3 * time.Second, 300 * time.Millisecond},
		{15 * time.Minute, time.Second},
	} {
		t.Run(tc.timeout.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
				defer cancel()
				start := time.Now()
				var ended time.Time
				var rec recorder
				h, err := lambdasqspool.New(func(hctx context.Context, o *order) error {
					if o.ID == "o-2" {
						<-hctx.Done() // a handler stuck on a slow downstream
						ended = time.Now()
						return hctx.Err()
					}
					return rec.handle(hctx, &order{ID: o.ID})
				}, nil, sqspool.WithSNSEnvelope(), sqspool.WithWorkers(1), quiet)
				require.NoError(t, err)

				got := invoke(t, ctx, h, "standard-sns.json")

				assert.Equal(t, tc.timeout-tc.margin, ended.Sub(start))
				assert.NoError(t, ctx.Err(), "the function answered before its deadline")
				assert.Equal(t, []string{"o-1"}, rec.orders())
				assert.NotContains(t, got, "059f36b4-87a3-44ab-83d2-661975830a7d") // o-1
				assert.Contains(t, got, "2e1424d4-f796-459a-8184-9c92662be6da")    // o-2
				assert.Contains(t, got, "a9b8c7d6-e5f4-4a3b-9c2d-1e0f9a8b7c6d")    // o-8, unstarted
			})
		})
	}
}

func TestAnEventWithoutRecordsAnswersNoFailures(t *testing.T) {
	h, err := lambdasqspool.New(func(context.Context, *order) error { return nil }, nil, quiet)
	require.NoError(t, err)
	out, err := lambda.NewHandler(h).Invoke(context.Background(), []byte(`{"Records":[]}`))
	require.NoError(t, err)
	assert.JSONEq(t, `{"batchItemFailures":[]}`, string(out))
}

// prefixed decodes itself (sqspool.BodyDecoder): its ID is the body's first
// eight bytes.
type prefixed struct{ ID string }

func (p *prefixed) DecodeBody(body string) error {
	p.ID = "decoded:" + body[:8]
	return nil
}

func TestBodyDecoderDecodesTheRecords(t *testing.T) {
	var ids []string
	h, err := lambdasqspool.New(func(_ context.Context, o *prefixed) error {
		ids = append(ids, o.ID)
		return nil
	}, nil, sqspool.WithWorkers(1), quiet)
	require.NoError(t, err)
	assert.JSONEq(t, `{"batchItemFailures":[]}`, invoke(t, context.Background(), h, "standard-traced.json"))
	assert.Equal(t, []string{`decoded:{"id": "`, `decoded:{"id": "`}, ids)
}
