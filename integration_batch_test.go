package sqspool_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/internal/awstest"
)

// The batch pool through the real SDK: batches of up to ten gathered
// across receives, MessagesFrom index for index, and a per-message outcome:
// one message of the first batch fails with RetryAfter and comes back
// alone, one is dropped with NoRetry, the rest are deleted once.
func TestIntegrationBatchPool(t *testing.T) {
	t.Parallel()
	c := itSQS(t)
	url := awstest.NewQueue(t, c, "it-batch", nil)
	const n = 30
	ns := make([]int, n)
	for i := range ns {
		ns[i] = i
	}
	ids := itSend(t, c, url, itJobs("", ns...)...)

	var mu sync.Mutex
	var sizes []int
	calls := map[int][]int{} // job -> receive counts of its runs
	base := []sqspool.Option{sqspool.WithWaitTime(time.Second), sqspool.WithLogger(itQuiet)}
	p, err := sqspool.StartBatchPool(t.Context(), &sqspool.Consumer{Client: c, Queue: url},
		func(ctx context.Context, jobs []itJob) error {
			metas, ok := sqspool.MessagesFrom(ctx)
			if !assert.True(t, ok) || !assert.Len(t, metas, len(jobs)) {
				return errors.New("no metadata")
			}
			mu.Lock()
			defer mu.Unlock()
			sizes = append(sizes, len(jobs))
			failed := sqspool.BatchErrors{}
			for i, j := range jobs {
				assert.Equal(t, ids[j.N], metas[i].ID, "MessagesFrom is index for index")
				calls[j.N] = append(calls[j.N], metas[i].ReceiveCount)
				switch {
				case j.N == 7 && len(calls[j.N]) == 1:
					failed[i] = sqspool.RetryAfter(time.Second, errors.New("busy"))
				case j.N == 8:
					failed[i] = sqspool.NoRetry(errors.New("poison"))
				}
			}
			return failed
		},
		append(base, sqspool.WithBatchSize(10), sqspool.WithBatchLinger(200*time.Millisecond), sqspool.WithWorkers(2),
			sqspool.WithHeartbeat(false))...)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, p.Wait()) })
	itEventually(t, 20*time.Second, func() bool { return p.Stats().Deleted == n }, "all %d deleted", n)
	itShutdown(t, p)

	mu.Lock()
	defer mu.Unlock()
	for _, job := range ns {
		want := 1
		if job == 7 {
			want = 2
		}
		assert.Len(t, calls[job], want, "job %d runs", job)
	}
	assert.GreaterOrEqual(t, calls[7][1], 2, "the failed message came back")
	assert.Less(t, len(sizes), n/2, "messages came in batches: %v", sizes)
	st := p.Stats()
	assert.EqualValues(t, n-1, st.Processed)
	assert.EqualValues(t, 2, st.Failed)
	assert.EqualValues(t, 1, st.Dropped)
	t.Logf("batch sizes %v; calls %v", sizes, st.Calls)
	itAssertEmpty(t, c, url)
}
