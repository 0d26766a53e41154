package catcher

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/sdkhttp"
	"github.com/sqspool/sqspool/sqsfake"
)

const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

func newFake(t testing.TB, name string) (*sqsfake.Fake, string) {
	t.Helper()
	f := sqsfake.New()
	var attrs map[string]string
	if strings.HasSuffix(name, ".fifo") {
		attrs = map[string]string{"FifoQueue": "true"}
	}
	return f, f.MustCreateQueue(name, attrs)
}

// inQueue returns the stored messages by MessageId.
func inQueue(f *sqsfake.Fake, url string) map[string]sqsfake.StoredMessage {
	m := map[string]sqsfake.StoredMessage{}
	for _, msg := range f.Messages(url) {
		m[msg.MessageID] = msg
	}
	return m
}

func TestAcceptedMessageIsInTheQueue(t *testing.T) {
	f, url := newFake(t, "work")
	h, _ := newManual(t, f, url, WithLinger(0), WithJSON())
	rep := serve(t, h, post(`{"job":42}`, "Traceparent", traceparent, "X-Request-Id", "req-7", "X-Other", "ignored"))

	require.Equal(t, http.StatusAccepted, rep.Status, rep.Error)
	require.NotEmpty(t, rep.MessageID)
	msg, ok := inQueue(f, url)[rep.MessageID]
	require.True(t, ok, "a 202 names a message that is in the queue")
	assert.Equal(t, `{"job":42}`, msg.Body)
	assert.Equal(t, map[string]types.MessageAttributeValue{
		"traceparent":  {DataType: aws.String("String"), StringValue: aws.String(traceparent)},
		"x-request-id": {DataType: aws.String("String"), StringValue: aws.String("req-7")},
	}, msg.Attributes)

	// Without the headers there are no attributes (SQS refuses empty ones).
	rep = serve(t, h, post(`{"job":43}`))
	require.Equal(t, http.StatusAccepted, rep.Status, rep.Error)
	assert.Empty(t, inQueue(f, url)[rep.MessageID].Attributes)
}

func TestHeaderAttributesOption(t *testing.T) {
	f, url := newFake(t, "work")
	h, _ := newManual(t, f, url, WithLinger(0), WithHeaderAttributes(map[string]string{"x-tenant": "tenant"}))
	rep := serve(t, h, post("x", "X-Tenant", "acme", "Traceparent", traceparent))
	require.Equal(t, http.StatusAccepted, rep.Status, rep.Error)
	attrs := inQueue(f, url)[rep.MessageID].Attributes
	assert.Equal(t, "acme", aws.ToString(attrs["tenant"].StringValue))
	assert.NotContains(t, attrs, "traceparent", "the option replaces the default mapping")
}

func TestBatchesConcurrentRequests(t *testing.T) {
	f, url := newFake(t, "work")
	stub := &stubClient{next: f} // records the entries of each call
	h, clk := newManual(t, stub, url)
	queued := queuedSignal(h)
	const n = 25
	wait := start(t, h, bodies(n, "job-%d")...)
	queued(n)
	// Two full batches left on their own; the last 5 wait for the linger.
	clk.Advance(DefaultLinger)
	replies := wait()

	sizes := stub.callSizes()
	slices.Sort(sizes)
	assert.Equal(t, []int{5, 10, 10}, sizes)
	assert.Equal(t, 3, f.Calls(sqsfake.OpSendMessageBatch))
	stored := inQueue(f, url)
	require.Len(t, stored, n)
	for i, rep := range replies {
		require.Equal(t, http.StatusAccepted, rep.Status, rep.Error)
		assert.Equal(t, "job-"+strconv.Itoa(i), stored[rep.MessageID].Body, "each request gets its own message's id")
	}
	st := h.Stats()
	assert.Equal(t, uint64(n), st.Accepted)
	assert.Equal(t, uint64(3), st.Calls)
	assert.Equal(t, uint64(1), st.EntriesPerCall[5])
	assert.Equal(t, uint64(2), st.EntriesPerCall[10])
	assert.InDelta(t, 120.0, st.CallsPer1000(), 0.01)
}

func TestLingerFlush(t *testing.T) {
	f, url := newFake(t, "work")
	h, clk := newManual(t, f, url, WithLinger(50e6))
	queued := queuedSignal(h)
	wait := start(t, h, bodies(3, "job-%d")...)
	queued(3)

	assert.Equal(t, 1, clk.Timers(), "one linger timer for the partial batch")
	clk.Advance(50e6 - 1)
	assert.Zero(t, f.Calls(sqsfake.OpSendMessageBatch), "nothing leaves before the linger")
	clk.Advance(1)
	for _, rep := range wait() {
		assert.Equal(t, http.StatusAccepted, rep.Status, rep.Error)
	}
	assert.Equal(t, 1, f.Calls(sqsfake.OpSendMessageBatch))
	assert.Len(t, f.Messages(url), 3)
}

func TestThrottledNothingEnqueued(t *testing.T) {
	f, url := newFake(t, "work")
	f.FailNext(sqsfake.OpSendMessageBatch, 1, &types.RequestThrottled{Message: aws.String("Rate exceeded")})
	h, _ := newManual(t, f, url, WithLinger(0), WithRetryAfter(3e9))
	rep := serve(t, h, post("x"))
	assert.Equal(t, http.StatusServiceUnavailable, rep.Status)
	assert.Equal(t, "3", rep.Header.Get("Retry-After"))
	assert.Contains(t, rep.Error, "throttling")
	assert.Empty(t, f.Messages(url))
	assert.Equal(t, uint64(1), h.Stats().Rejected[ReasonThrottled])

	// The queue recovers; so does the handler.
	assert.Equal(t, http.StatusAccepted, serve(t, h, post("y")).Status)
	assert.Len(t, f.Messages(url), 1)
}

func TestPayloadLimitSplitsBatches(t *testing.T) {
	f, url := newFake(t, "work")
	stub := &stubClient{next: f}
	h, clk := newManual(t, stub, url, WithMaxBodyBytes(MaxMessageBytes))
	queued := queuedSignal(h)
	const n, size = 10, 300 << 10 // 3 fit in 1 MiB, 4 do not
	reqs := make([]*http.Request, n)
	for i := range reqs {
		reqs[i] = post(strings.Repeat(strconv.Itoa(i), size))
	}
	wait := start(t, h, reqs...)
	queued(n)
	clk.Advance(DefaultLinger)
	for _, rep := range wait() {
		require.Equal(t, http.StatusAccepted, rep.Status, rep.Error)
	}
	sizes := stub.callSizes()
	slices.Sort(sizes)
	assert.Equal(t, []int{1, 3, 3, 3}, sizes)
	stub.mu.Lock()
	for _, call := range stub.calls {
		total := 0
		for _, e := range call {
			total += len(aws.ToString(e.MessageBody))
		}
		assert.LessOrEqual(t, total, MaxMessageBytes)
	}
	stub.mu.Unlock()
	assert.Len(t, f.Messages(url), n)
}

func TestFIFO(t *testing.T) {
	f, url := newFake(t, "orders.fifo")
	h, _ := newManual(t, f, url, WithLinger(0))
	rep := serve(t, h, post("o-1", HeaderMessageGroupID, "customer-9", HeaderDeduplicationID, "order-1"))
	require.Equal(t, http.StatusAccepted, rep.Status, rep.Error)
	msg := inQueue(f, url)[rep.MessageID]
	assert.Equal(t, "customer-9", msg.GroupID)
	assert.Len(t, msg.DeduplicationID, 64, "the id sent binds the client's id to the group and body")

	// A custom header and a func work too.
	h2, _ := newManual(t, f, url, WithLinger(0), WithFIFOFunc(func(r *http.Request, body []byte) (string, string, error) {
		return r.Header.Get("X-Tenant"), "dedup-" + string(body), nil
	}))
	rep = serve(t, h2, post("o-2", "X-Tenant", "acme"))
	require.Equal(t, http.StatusAccepted, rep.Status, rep.Error)
	msg = inQueue(f, url)[rep.MessageID]
	assert.Equal(t, "acme", msg.GroupID)
	assert.Equal(t, "o-2", msg.Body)
}

func TestCloseFlushesPending(t *testing.T) {
	f, url := newFake(t, "work")
	h, clk := newManual(t, f, url)
	queued := queuedSignal(h)
	wait := start(t, h, bodies(3, "job-%d")...)
	queued(3)
	require.NoError(t, h.Close(context.Background())) // the clock never moved
	for _, rep := range wait() {
		assert.Equal(t, http.StatusAccepted, rep.Status, rep.Error)
	}
	assert.Len(t, f.Messages(url), 3)
	assert.Zero(t, clk.Timers(), "the linger timer was stopped")

	rep := serve(t, h, post("late"))
	assert.Equal(t, http.StatusServiceUnavailable, rep.Status)
	assert.Equal(t, "1", rep.Header.Get("Retry-After"))
	assert.Len(t, f.Messages(url), 3)
	require.NoError(t, h.Close(context.Background()), "Close twice is fine")
}

// TestNever2xxUnlessQueued runs many requests against a queue that fails
// calls and entries at random: every 202 must name a stored message with
// its body, every other answer must have left nothing behind.
func TestNever2xxUnlessQueued(t *testing.T) {
	f, url := newFake(t, "work")
	f.SetFaults(sqsfake.Faults{sqsfake.OpSendMessageBatch: {ErrorRate: 0.1, ThrottleRate: 0.1, PartialFailureRate: 0.2}})
	h, _ := newManual(t, f, url, WithLinger(0), WithMaxInFlight(4))
	const n = 300
	replies := start(t, h, bodies(n, "job-%d")...)()
	stored := inQueue(f, url)
	accepted := 0
	byBody := map[string]bool{}
	for _, m := range stored {
		byBody[m.Body] = true
	}
	for i, rep := range replies {
		switch rep.Status {
		case http.StatusAccepted:
			accepted++
			assert.Equal(t, "job-"+strconv.Itoa(i), stored[rep.MessageID].Body)
		case http.StatusServiceUnavailable:
			assert.False(t, byBody["job-"+strconv.Itoa(i)], "a 503 without a lost reply left nothing behind")
			assert.NotEmpty(t, rep.Header.Get("Retry-After"))
		default:
			t.Errorf("unexpected status %d: %s", rep.Status, rep.Error)
		}
	}
	assert.Equal(t, accepted, len(stored))
	assert.Less(t, accepted, n, "faults were injected")
	assert.Positive(t, accepted)
	st := h.Stats()
	assert.Equal(t, uint64(accepted), st.Accepted)
	assert.Equal(t, uint64(n-accepted), st.Rejected[ReasonThrottled]+st.Rejected[ReasonUnavailable])
}

// TestRealSDKClient goes through a real *sqs.Client and the fake's wire
// protocol, so that the error classification meets the errors the SDK
// really builds.
func TestRealSDKClient(t *testing.T) {
	f, url := newFake(t, "work")
	srv := httptest.NewServer(f.Handler())
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := f.NewSDKClient(srv.URL, func(o *sqs.Options) {
		o.RetryMaxAttempts = 1
		o.HTTPClient = sdkhttp.Client(tr)
	})
	h, _ := newManual(t, client, url, WithLinger(0))

	rep := serve(t, h, post("hello", "Traceparent", traceparent))
	require.Equal(t, http.StatusAccepted, rep.Status, rep.Error)
	assert.Equal(t, "hello", inQueue(f, url)[rep.MessageID].Body)

	f.FailNext(sqsfake.OpSendMessageBatch, 1, &types.RequestThrottled{})
	rep = serve(t, h, post("throttled"))
	assert.Equal(t, http.StatusServiceUnavailable, rep.Status)
	assert.Contains(t, rep.Error, "throttling")

	f.FailNext(sqsfake.OpSendMessageBatch, 1, nil) // InternalError
	rep = serve(t, h, post("broken"))
	assert.Equal(t, http.StatusServiceUnavailable, rep.Status)

	_, err := New(context.Background(), client, f.QueueURL("missing"))
	var missingErr *types.QueueDoesNotExist
	require.ErrorAs(t, err, &missingErr, "New reads the queue's attributes")

	goneURL := f.MustCreateQueue("gone", nil)
	h2, _ := newManual(t, client, goneURL, WithLinger(0))
	_, err = f.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(goneURL)})
	require.NoError(t, err)
	rep = serve(t, h2, post("nowhere"))
	assert.Equal(t, http.StatusBadGateway, rep.Status)
	assert.NotContains(t, rep.Error, "missing")
	assert.Len(t, f.Messages(url), 1)
}
