package lambdasqspool_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/lambdasqspool"
)

// batchRecorder is a batch handler whose outcome for each order its action
// names, as recorder's handle does for one.
type batchRecorder struct {
	panics bool // an order whose action is "panic" panics the batch
	mu     sync.Mutex
	calls  [][]string // order ids of each call
}

func (r *batchRecorder) handle(ctx context.Context, os []order) error {
	ms, ok := sqspool.MessagesFrom(ctx)
	if !ok || len(ms) != len(os) {
		return errors.New("the messages' metadata does not match the batch")
	}
	if _, ok := sqspool.MessageFrom(ctx); ok {
		return errors.New("MessageFrom in a batch handler")
	}
	ids := make([]string, len(os))
	errs := sqspool.BatchErrors{}
	for i, o := range os {
		ids[i] = o.ID
		m := ms[i]
		if m.ID == "" || m.QueueURL == "" || m.ReceiveCount < 1 {
			errs[i] = fmt.Errorf("metadata of %s missing: %+v", o.ID, m)
			continue
		}
		switch o.Action {
		case "fail":
			errs[i] = errors.New("downstream refused " + o.ID)
		case "noretry":
			errs[i] = sqspool.NoRetry(errors.New("order " + o.ID + " was cancelled"))
		case "retry":
			errs[i] = sqspool.RetryAfter(30*time.Second, errRateLimited)
		case "panic":
			if r.panics {
				panic("batch handler bug on " + o.ID)
			}
			errs[i] = errors.New("no panic for " + o.ID)
		}
	}
	r.mu.Lock()
	r.calls = append(r.calls, ids)
	r.mu.Unlock()
	return fmt.Errorf("some orders failed: %w", errs) // wrapped, as a handler may
}

const (
	o2 = `{"itemIdentifier":"2e1424d4-f796-459a-8184-9c92662be6da"}`
	o3 = `{"itemIdentifier":"8b6e1f3a-0c2d-4e5f-9a7b-1c3d5e7f9a2b"}`
	o4 = `{"itemIdentifier":"c4d5e6f7-a8b9-4c0d-8e1f-2a3b4c5d6e7f"}`
	o5 = `{"itemIdentifier":"d1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f5a"}`
	o6 = `{"itemIdentifier":"e7f8a9b0-c1d2-4e3f-9a4b-5c6d7e8f9a0b"}`
	o7 = `{"itemIdentifier":"f0a1b2c3-d4e5-4f6a-8b7c-9d0e1f2a3b4c"}`
)

func TestBatchReportsEachMessagesOwnOutcome(t *testing.T) {
	var rec batchRecorder
	var hooks hookLog
	client := &visibilityClient{}
	h, err := lambdasqspool.NewBatch(rec.handle, client, sqspool.WithSNSEnvelope(), sqspool.WithErrorHook(hooks.hook), quiet)
	require.NoError(t, err)

	got := invoke(t, context.Background(), h, "standard-sns.json")

	// As TestStandardQueueReportsTheRecordsToRetry: o-2 and o-6 failed,
	// o-3 and o-7 are malformed, o-5 asked for a retry; o-4's NoRetry is
	// done. One batch (default size 10) without the malformed ones.
	assert.JSONEq(t, `{"batchItemFailures":[`+o2+`,`+o3+`,`+o5+`,`+o6+`,`+o7+`]}`, got)
	assert.Equal(t, [][]string{{"o-1", "o-2", "o-4", "o-5", "o-6", "o-8"}}, rec.calls)
	require.Len(t, client.calls, 1)
	assert.Equal(t, "QVFFQjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA1cmVjZWlwdC1oYW5kbGUtb2YtNQ==", *client.calls[0].ReceiptHandle)
	assert.Equal(t, int32(30), client.calls[0].VisibilityTimeout)
	var derr *sqspool.DecodeError
	require.Len(t, hooks.errs["8b6e1f3a-0c2d-4e5f-9a7b-1c3d5e7f9a2b"], 1)
	assert.ErrorAs(t, hooks.errs["8b6e1f3a-0c2d-4e5f-9a7b-1c3d5e7f9a2b"][0], &derr)
	require.Len(t, hooks.errs["c4d5e6f7-a8b9-4c0d-8e1f-2a3b4c5d6e7f"], 1)
	assert.ErrorIs(t, hooks.errs["c4d5e6f7-a8b9-4c0d-8e1f-2a3b4c5d6e7f"][0], sqspool.ErrNoRetry)
	require.Len(t, hooks.errs["d1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f5a"], 1)
	assert.ErrorIs(t, hooks.errs["d1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f5a"][0], errRateLimited)
	assert.Len(t, hooks.errs, 6)
}

func TestBatchPanicFailsEveryMessageOfItsBatchOnly(t *testing.T) {
	rec := batchRecorder{panics: true}
	var hooks hookLog
	client := &visibilityClient{}
	h, err := lambdasqspool.NewBatch(rec.handle, client, sqspool.WithSNSEnvelope(), sqspool.WithBatchSize(3),
		sqspool.WithWorkers(1), sqspool.WithErrorHook(hooks.hook), quiet)
	require.NoError(t, err)

	got := invoke(t, context.Background(), h, "standard-sns.json")

	// Batches of three records: [o-1 o-2 (o-3)] [o-4 o-5 o-6] [(o-7) o-8].
	// o-6's panic fails o-4 and o-5 with it; o-5's RetryAfter was never
	// returned, so no visibility is set.
	assert.JSONEq(t, `{"batchItemFailures":[`+o2+`,`+o3+`,`+o4+`,`+o5+`,`+o6+`,`+o7+`]}`, got)
	assert.Equal(t, [][]string{{"o-1", "o-2"}, {"o-8"}}, rec.calls) // the panicking call records nothing
	assert.Empty(t, client.calls)
	for _, id := range []string{"c4d5e6f7-a8b9-4c0d-8e1f-2a3b4c5d6e7f", "d1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f5a", "e7f8a9b0-c1d2-4e3f-9a4b-5c6d7e8f9a0b"} {
		var perr *sqspool.PanicError
		require.Len(t, hooks.errs[id], 1, id)
		assert.ErrorAs(t, hooks.errs[id][0], &perr, id)
	}
}

func TestBatchErrorFailsEveryMessageOfTheBatch(t *testing.T) {
	down := errors.New("database down")
	var sizes []int
	h, err := lambdasqspool.NewBatch(func(_ context.Context, os []order) error {
		sizes = append(sizes, len(os))
		return down
	}, nil, sqspool.WithSNSEnvelope(), sqspool.WithWorkers(1), sqspool.WithBatchSize(4),
		sqspool.WithDecodeFailure(sqspool.DeleteMalformed), quiet)
	require.NoError(t, err)

	got := invoke(t, context.Background(), h, "standard-sns.json")

	// The malformed o-3 and o-7 are deleted; the rest come back.
	assert.JSONEq(t, `{"batchItemFailures":[
		{"itemIdentifier":"059f36b4-87a3-44ab-83d2-661975830a7d"},`+o2+`,`+o4+`,`+o5+`,`+o6+`,
		{"itemIdentifier":"a9b8c7d6-e5f4-4a3b-9c2d-1e0f9a8b7c6d"}]}`, got)
	assert.Equal(t, []int{3, 3}, sizes)
}

func TestBatchOnFIFOStopsAtTheFirstFailure(t *testing.T) {
	const f3, f4 = `{"itemIdentifier":"33c4d5e6-f7a8-4b92-a3b4-c5d6e7f8091a"}`, `{"itemIdentifier":"44d5e6f7-a8b9-4ca3-b4c5-d6e7f8091a2b"}`
	for _, tc := range []struct {
		size  int
		calls [][]string
	}{
		// f-3 fails: f-4 comes back with it, whether it ran in f-3's
		// batch and succeeded, or never ran.
		{1, [][]string{{"f-1"}, {"f-2"}, {"f-3"}}},
		{2, [][]string{{"f-1", "f-2"}, {"f-3", "f-4"}}},
		{3, [][]string{{"f-1", "f-2", "f-3"}}},
		{10, [][]string{{"f-1", "f-2", "f-3", "f-4"}}},
	} {
		t.Run(fmt.Sprint(tc.size), func(t *testing.T) {
			var rec batchRecorder
			h, err := lambdasqspool.NewBatch(rec.handle, nil, sqspool.WithSNSEnvelope(), sqspool.WithBatchSize(tc.size), quiet)
			require.NoError(t, err)
			assert.JSONEq(t, `{"batchItemFailures":[`+f3+`,`+f4+`]}`, invoke(t, context.Background(), h, "fifo-sns.json"))
			assert.Equal(t, tc.calls, rec.calls)
		})
	}
}

func TestBatchOnFIFOMalformedBodyEndsTheBatchBeforeIt(t *testing.T) {
	var calls [][]int
	var hooks hookLog
	// Without WithSNSEnvelope every body, an SNS envelope, is malformed
	// for an int: the first ends the invocation, nothing runs.
	h, err := lambdasqspool.NewBatch(func(_ context.Context, ns []int) error {
		calls = append(calls, ns)
		return nil
	}, nil, sqspool.WithErrorHook(hooks.hook), quiet)
	require.NoError(t, err)
	assert.JSONEq(t, `{"batchItemFailures":[
		{"itemIdentifier":"11a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8"},
		{"itemIdentifier":"22b3c4d5-e6f7-4a81-92a3-b4c5d6e7f809"},
		{"itemIdentifier":"33c4d5e6-f7a8-4b92-a3b4-c5d6e7f8091a"},
		{"itemIdentifier":"44d5e6f7-a8b9-4ca3-b4c5-d6e7f8091a2b"}]}`, invoke(t, context.Background(), h, "fifo-sns.json"))
	assert.Empty(t, calls)
	assert.Len(t, hooks.errs, 1) // the later bodies were not decoded
}

func TestBatchesOfAStandardQueueRunUpToWorkersAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const workers = 2
		var running, most, arrivals atomic.Int64
		release := make(chan struct{})
		var mu sync.Mutex
		var sizes []int
		h, err := lambdasqspool.NewBatch(func(_ context.Context, os []order) error {
			n := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			if arrivals.Add(1) <= workers {
				<-release
			}
			mu.Lock()
			sizes = append(sizes, len(os))
			mu.Unlock()
			return nil
		}, nil, sqspool.WithSNSEnvelope(), sqspool.WithBatchSize(2), sqspool.WithWorkers(workers), quiet)
		require.NoError(t, err)

		finished := make(chan string)
		go func() { finished <- invoke(t, context.Background(), h, "standard-sns.json") }()
		synctest.Wait()
		assert.Equal(t, int64(workers), running.Load(), "batches running while the first ones wait")
		close(release)
		got := <-finished

		assert.Equal(t, int64(workers), most.Load(), "most batches running at once")
		// Batches of two records, less the malformed o-3 and o-7.
		assert.ElementsMatch(t, []int{2, 1, 2, 1}, sizes)
		assert.JSONEq(t, `{"batchItemFailures":[`+o3+`,`+o7+`]}`, got)
	})
}

// A FIFO queue's batches run one at a time, in order, whatever WithWorkers.
func TestBatchesOfAFIFOQueueRunOneAtATimeInOrder(t *testing.T) {
	var running atomic.Int64
	var ids []string
	h, err := lambdasqspool.NewBatch(func(_ context.Context, os []order) error {
		if running.Add(1) > 1 {
			t.Errorf("%v runs beside another batch of the FIFO queue", os)
		}
		defer running.Add(-1)
		for _, o := range os {
			ids = append(ids, o.ID)
		}
		return nil
	}, nil, sqspool.WithSNSEnvelope(), sqspool.WithBatchSize(1), sqspool.WithWorkers(8), quiet)
	require.NoError(t, err)

	assert.JSONEq(t, `{"batchItemFailures":[]}`, invoke(t, context.Background(), h, "fifo-sns.json"))
	assert.Equal(t, []string{"f-1", "f-2", "f-3", "f-4"}, ids)
}

func TestNewBatchRejectsBadArguments(t *testing.T) {
	_, err := lambdasqspool.NewBatch[order](nil, nil)
	require.Error(t, err)
	_, err = lambdasqspool.NewBatch(func(context.Context, []order) error { return nil }, nil, sqspool.WithBatchSize(0))
	require.ErrorContains(t, err, "batch size")
	// A single-message handler has no batch size, as StartPool says.
	_, err = lambdasqspool.New(func(context.Context, *order) error { return nil }, nil, sqspool.WithBatchSize(5))
	require.ErrorContains(t, err, "StartBatchPool only")
}

// A malformed record that DeleteMalformed would delete still comes back
// when an earlier record of the FIFO event failed: nothing after the first
// failure is done.
func TestBatchOnFIFOKeepsAMalformedRecordAfterTheFirstFailure(t *testing.T) {
	h, err := lambdasqspool.NewBatch(func(context.Context, []int) error {
		return sqspool.BatchErrors{0: errors.New("refused")}
	}, nil, sqspool.WithDecodeFailure(sqspool.DeleteMalformed), quiet)
	require.NoError(t, err)
	assert.Equal(t, []events.SQSBatchItemFailure{{ItemIdentifier: "m-1"}, {ItemIdentifier: "m-2"}}, invokeFIFO(t, h, "1", "not a number"))
}

// After a FIFO batch's first failure the later messages are not settled:
// they come back with it, their own RetryAfter unset.
func TestBatchOnFIFOSettlesNothingAfterTheFirstFailure(t *testing.T) {
	client := &visibilityClient{}
	var hooks hookLog
	h, err := lambdasqspool.NewBatch(func(context.Context, []int) error {
		return sqspool.BatchErrors{0: errors.New("refused"), 1: sqspool.RetryAfter(time.Minute, errRateLimited)}
	}, client, sqspool.WithErrorHook(hooks.hook), quiet)
	require.NoError(t, err)
	assert.Equal(t, []events.SQSBatchItemFailure{{ItemIdentifier: "m-1"}, {ItemIdentifier: "m-2"}}, invokeFIFO(t, h, "1", "2"))
	assert.Empty(t, client.calls)
	assert.Len(t, hooks.errs, 1)
}

// invokeFIFO calls h with an event of a FIFO queue whose records m-1, m-2,
// ... have the bodies given, and returns the records it reports.
func invokeFIFO(t *testing.T, h lambdasqspool.Handler, bodies ...string) []events.SQSBatchItemFailure {
	t.Helper()
	ev := events.SQSEvent{}
	for i, b := range bodies {
		ev.Records = append(ev.Records, events.SQSMessage{
			MessageId: fmt.Sprintf("m-%d", i+1), Body: b, EventSourceARN: "arn:aws:sqs:us-east-1:123456789012:orders.fifo",
		})
	}
	resp, err := h(context.Background(), ev)
	require.NoError(t, err)
	return resp.BatchItemFailures
}
