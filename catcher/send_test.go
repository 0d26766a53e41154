package catcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEntryFailureFailsOnlyThatRequest(t *testing.T) {
	stub := &stubClient{failBody: map[string]types.BatchResultErrorEntry{
		"poison":  {Code: aws.String("InternalError"), SenderFault: false, Message: aws.String("try again")},
		"bad":     {Code: aws.String("InvalidMessageContents"), SenderFault: true},
		"kms":     {Code: aws.String("KmsAccessDenied"), SenderFault: true, Message: aws.String("arn:aws:kms:...:key/secret")},
		"slow":    {Code: aws.String("KmsThrottled"), SenderFault: true},
		"unknown": {Code: aws.String("AWS.SimpleQueueService.InternalError"), SenderFault: false},
	}}
	h, clk := newManual(t, stub, testQueueURL)
	queued := queuedSignal(h)
	want := map[string]int{"ok-1": 202, "poison": 503, "ok-2": 202, "bad": 400, "kms": 502, "slow": 503, "unknown": 503, "ok-3": 202}
	names := []string{"ok-1", "poison", "ok-2", "bad", "kms", "slow", "unknown", "ok-3"}
	reqs := make([]*http.Request, len(names))
	for i, n := range names {
		reqs[i] = post(n)
	}
	wait := start(t, h, reqs...)
	queued(len(reqs))
	clk.Advance(DefaultLinger)
	replies := wait()

	require.Equal(t, []int{len(names)}, stub.callSizes(), "all in one call, so the failures share it with the successes")
	for i, n := range names {
		rep := replies[i]
		assert.Equal(t, want[n], rep.Status, n)
		if rep.Status == http.StatusAccepted {
			assert.Equal(t, "msg-"+n, rep.MessageID)
			continue
		}
		assert.Empty(t, rep.MessageID, n)
		assert.NotContains(t, rep.Error, "secret", "SQS messages stay out of the answer")
		if rep.Status == http.StatusServiceUnavailable {
			assert.Equal(t, "1", rep.Header.Get("Retry-After"), n)
		} else {
			assert.Empty(t, rep.Header.Get("Retry-After"), n)
		}
	}
	assert.Contains(t, replies[3].Error, "InvalidMessageContents", "content failures tell the client what to fix")
	st := h.Stats()
	assert.Equal(t, uint64(3), st.Accepted)
	assert.Equal(t, uint64(5), st.EntryFailures)
	assert.Equal(t, uint64(1), st.Rejected[ReasonThrottled])
	assert.Equal(t, uint64(2), st.Rejected[ReasonUnavailable])
	assert.Equal(t, uint64(2), st.Rejected[ReasonRejected])
}

func TestCallErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		reason Reason
	}{
		{"throttled", &types.RequestThrottled{Message: aws.String("slow down")}, 503, ReasonThrottled},
		{"throttled, generic", &smithy.GenericAPIError{Code: "ThrottlingException", Fault: smithy.FaultClient}, 503, ReasonThrottled},
		{"no such queue", &types.QueueDoesNotExist{ErrorCodeOverride: aws.String("AWS.SimpleQueueService.NonExistentQueue")}, 502, ReasonRejected},
		{"access denied", &smithy.GenericAPIError{Code: "AccessDenied", Fault: smithy.FaultClient}, 502, ReasonRejected},
		{"server error", &smithy.GenericAPIError{Code: "InternalError", Fault: smithy.FaultServer}, 503, ReasonUnavailable},
		{"timeout", fmt.Errorf("operation error SQS: %w", context.DeadlineExceeded), 503, ReasonUnavailable},
		{"network", errors.New("dial tcp: connection refused"), 503, ReasonUnavailable},
		{"net timeout", fmt.Errorf("read: %w", timeoutError{}), 503, ReasonUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stub := &stubClient{err: tc.err}
			h, _ := newManual(t, stub, testQueueURL, WithLinger(0), WithRetryAfter(1500e6))
			rep := serve(t, h, post("x"))
			assert.Equal(t, tc.status, rep.Status)
			assert.NotEmpty(t, rep.Error)
			assert.NotContains(t, rep.Error, "NonExistentQueue")
			if tc.status == http.StatusServiceUnavailable {
				assert.Equal(t, "2", rep.Header.Get("Retry-After"), "rounded up to whole seconds")
			}
			st := h.Stats()
			assert.Equal(t, uint64(1), st.Rejected[tc.reason])
			assert.Equal(t, uint64(1), st.CallErrors)
		})
	}
}

func TestSendTimeout(t *testing.T) {
	// The call hangs until its context ends: the send timeout must end it.
	stub := &stubClient{release: make(chan struct{})}
	h, _ := newManual(t, stub, testQueueURL, WithLinger(0), WithSendTimeout(1e6))
	rep := serve(t, h, post("x"))
	assert.Equal(t, http.StatusServiceUnavailable, rep.Status)
	assert.Contains(t, rep.Error, "timed out")
}

func TestCancelledRequestIsNotSent(t *testing.T) {
	stub := &stubClient{}
	h, clk := newManual(t, stub, testQueueURL)
	queued := queuedSignal(h)
	ctx, cancel := context.WithCancel(context.Background())
	waitGone := start(t, h, post("gone").WithContext(ctx))
	waitStays := start(t, h, post("stays"))
	queued(2)
	cancel()
	// The cancelled request answers without waiting for its batch (the
	// clock has not moved)...
	gone := waitGone()[0]
	assert.Equal(t, http.StatusServiceUnavailable, gone.Status)
	assert.Contains(t, gone.Error, "cancelled")
	// ...and the batch, once the linger ends, carries only the other one.
	clk.Advance(DefaultLinger)
	assert.Equal(t, http.StatusAccepted, waitStays()[0].Status)
	require.Equal(t, []int{1}, stub.callSizes())
	assert.Equal(t, "stays", aws.ToString(stub.calls[0][0].MessageBody))
	assert.Equal(t, uint64(1), h.Stats().Rejected[ReasonCancelled])
}

func TestCancelAfterSendWaitsForTheTruth(t *testing.T) {
	// Once a call carries the message, SQS may store it: the request must
	// report what SQS said, even if its client has gone.
	stub := &stubClient{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h, _ := newManual(t, stub, testQueueURL, WithLinger(0))
	ctx, cancel := context.WithCancel(context.Background())
	wait := start(t, h, post("x").WithContext(ctx))
	<-stub.entered
	cancel()
	close(stub.release)
	rep := wait()[0]
	assert.Equal(t, http.StatusAccepted, rep.Status)
	assert.Equal(t, "msg-x", rep.MessageID)
}

func TestCloseGivesUp(t *testing.T) {
	stub := &stubClient{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h, _ := newManual(t, stub, testQueueURL, WithLinger(0), WithMaxInFlight(1))
	queued := queuedSignal(h)
	wait := start(t, h, post("in-call"))
	<-stub.entered // the first call holds the only slot
	waitMore := start(t, h, post("waiting-1"), post("waiting-2"))
	queued(3)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := h.Close(ctx)
	require.ErrorIs(t, err, context.Canceled)

	rep := wait()[0]
	assert.Equal(t, http.StatusServiceUnavailable, rep.Status, "the running call was cancelled")
	for _, rep := range waitMore() {
		assert.Equal(t, http.StatusServiceUnavailable, rep.Status, "the waiting batch was never sent")
		assert.Equal(t, "shutting down", rep.Error)
	}
	assert.Equal(t, []int{1}, stub.callSizes())
	assert.Equal(t, uint64(3), h.Stats().Rejected[ReasonClosed])
	assert.Equal(t, http.StatusServiceUnavailable, serve(t, h, post("late")).Status)
}

func TestUnreportedEntry(t *testing.T) {
	// An answer that names neither success nor failure for an entry (or a
	// success without a MessageId) must not become a 2xx.
	c := clientFunc(func(in []types.SendMessageBatchRequestEntry) []types.SendMessageBatchResultEntry {
		return []types.SendMessageBatchResultEntry{{Id: in[0].Id}, {Id: aws.String("99"), MessageId: aws.String("m")}}
	})
	h, _ := newManual(t, c, testQueueURL, WithLinger(0))
	rep := serve(t, h, post("x"))
	assert.Equal(t, http.StatusServiceUnavailable, rep.Status)
	assert.Equal(t, uint64(1), h.Stats().EntryFailures)
}

func TestLoggerGetsTheSQSError(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	stub := &stubClient{err: &types.QueueDoesNotExist{ErrorCodeOverride: aws.String("AWS.SimpleQueueService.NonExistentQueue")}}
	h, _ := newManual(t, stub, testQueueURL, WithLinger(0), WithLogger(logger))
	rep := serve(t, h, post("x"))
	assert.Equal(t, http.StatusBadGateway, rep.Status)
	assert.NotContains(t, rep.Error, "NonExistentQueue", "the client does not see it...")
	assert.Contains(t, buf.String(), "NonExistentQueue", "...the operator does")
	assert.Contains(t, buf.String(), "status=502")

	buf.Reset()
	stub = &stubClient{failBody: map[string]types.BatchResultErrorEntry{"x": {Code: aws.String("InternalError"), Message: aws.String("shard 7 down")}}}
	h, _ = newManual(t, stub, testQueueURL, WithLinger(0), WithLogger(logger))
	assert.Equal(t, http.StatusServiceUnavailable, serve(t, h, post("x")).Status)
	assert.Contains(t, buf.String(), "shard 7 down")
}

func TestNilBody(t *testing.T) {
	h, _ := newManual(t, &stubClient{}, testQueueURL)
	r := post("")
	r.Body = nil
	assert.Equal(t, http.StatusBadRequest, serve(t, h, r).Status)
}
