package sqspool_test

// Integration tests: the pool's core behaviours through the real AWS SDK,
// against SQS or, under ./scripts/test, the local-aws-sqs emulator. They
// skip unless SQSPOOL_INTEGRATION=1 (see internal/awstest).
//
// They hold on AWS and on local-aws-sqs 2.0.2, whose differences they work
// around (internal/awstest/emulator_test.go lists them):
//   - long polls stay open until full, so pools poll with 1 s waits;
//   - every ChangeMessageVisibility counts as a receive, so tests about
//     receive counts or redrive turn the heartbeat and retry backoff off;
//   - FIFO groups are not locked while in flight, and a delete with an older
//     receipt handle deletes, so tests check handles and order themselves;
//     FIFO pools run one poller, since the pool's default of several relies
//     on SQS's group lock to keep a group's batches in order.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/internal/awstest"
	"github.com/sqspool/sqspool/internal/sdkhttp"
)

// itJob is the message body of the integration tests.
type itJob struct {
	N     int    `json:"n"`
	Group string `json:"group,omitempty"`
}

// itSQS returns an SQS client whose connections are closed when the test
// ends, after its queues are deleted: the package's TestMain fails on
// leftover goroutines, idle keep-alive connections included.
func itSQS(t *testing.T) *sqs.Client {
	t.Helper()
	cfg := awstest.Config(t)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	t.Cleanup(tr.CloseIdleConnections)
	return sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.HTTPClient = sdkhttp.Client(tr) })
}

var itQuiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// itStart starts a pool on url with short long polls and stops it when the
// test ends (if the test has not).
func itStart[T any](t *testing.T, c sqspool.Client, url string, h sqspool.Handler[T], opts ...sqspool.Option) *sqspool.Pool {
	t.Helper()
	base := []sqspool.Option{sqspool.WithWaitTime(time.Second), sqspool.WithLogger(itQuiet)}
	p, err := sqspool.StartPool(t.Context(), &sqspool.Consumer{Client: c, Queue: url}, h, append(base, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		assert.NoError(t, p.Shutdown(ctx))
		assert.NoError(t, p.Wait())
	})
	return p
}

func itShutdown(t *testing.T, p *sqspool.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, p.Shutdown(ctx))
}

// itMsg is a message to send; Group is for FIFO queues.
type itMsg struct {
	Body  string
	Group string
}

func itJobs(group string, ns ...int) []itMsg {
	msgs := make([]itMsg, len(ns))
	for i, n := range ns {
		b, _ := json.Marshal(itJob{N: n, Group: group})
		msgs[i] = itMsg{Body: string(b), Group: group}
	}
	return msgs
}

// itSend sends msgs in order, in batches of ten, and returns their
// MessageIds.
func itSend(t *testing.T, c *sqs.Client, url string, msgs ...itMsg) []string {
	t.Helper()
	var ids []string
	for chunk := range slices.Chunk(msgs, 10) {
		entries := make([]types.SendMessageBatchRequestEntry, len(chunk))
		for i, m := range chunk {
			entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(m.Body)}
			if m.Group != "" {
				entries[i].MessageGroupId = aws.String(m.Group)
				entries[i].MessageDeduplicationId = aws.String(fmt.Sprint(len(ids) + i))
			}
		}
		out, err := c.SendMessageBatch(t.Context(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		require.NoError(t, err)
		require.Empty(t, out.Failed)
		byEntry := make([]string, len(chunk))
		for _, s := range out.Successful {
			i, _ := strconv.Atoi(aws.ToString(s.Id))
			byEntry[i] = aws.ToString(s.MessageId)
		}
		ids = append(ids, byEntry...)
	}
	return ids
}

// itReceive makes one raw receive of up to max messages, waiting up to 1 s.
func itReceive(t *testing.T, c *sqs.Client, url string, max int32) []types.Message {
	t.Helper()
	out, err := c.ReceiveMessage(context.WithoutCancel(t.Context()), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), MaxNumberOfMessages: max, WaitTimeSeconds: 1,
		AttributeNames:              []types.QueueAttributeName{"All"}, //nolint:staticcheck // local-aws-sqs reads only this one
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	require.NoError(t, err)
	return out.Messages
}

// itAssertEmpty checks that the queue holds no message, visible or not.
func itAssertEmpty(t *testing.T, c *sqs.Client, url string) {
	t.Helper()
	out, err := c.GetQueueAttributes(context.WithoutCancel(t.Context()), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	require.NoError(t, err)
	assert.Equal(t, "0", out.Attributes["ApproximateNumberOfMessages"], "visible messages left in %s", url)
	assert.Equal(t, "0", out.Attributes["ApproximateNumberOfMessagesNotVisible"], "in-flight messages left in %s", url)
	assert.Empty(t, itReceive(t, c, url, 10), "a receive from %s", url)
}

// itLog records handler calls.
type itLog struct {
	mu    sync.Mutex
	calls []itCall
}

type itCall struct {
	Job      itJob
	ID       string
	Delivery int
	At       time.Time
}

func (l *itLog) add(ctx context.Context, j *itJob) {
	m, _ := sqspool.MessageFrom(ctx)
	l.mu.Lock()
	l.calls = append(l.calls, itCall{Job: *j, ID: m.ID, Delivery: m.ReceiveCount, At: time.Now()})
	l.mu.Unlock()
}

func (l *itLog) snapshot() []itCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

func (l *itLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.calls)
}

// of returns the calls for job n, in call order.
func (l *itLog) of(n int) []itCall {
	return slices.DeleteFunc(l.snapshot(), func(c itCall) bool { return c.Job.N != n })
}

func itEventually(t *testing.T, within time.Duration, cond func() bool, what string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, within, 20*time.Millisecond, append([]any{what}, args...)...)
}

// Messages are received, decoded, handled once each and deleted in batches:
// far fewer DeleteMessageBatch calls than messages.
func TestIntegrationReceiveHandleAndBatchedDelete(t *testing.T) {
	t.Parallel()
	c := itSQS(t)
	url := awstest.NewQueue(t, c, "it-basic", nil)
	const n = 50
	ns := make([]int, n)
	for i := range ns {
		ns[i] = i
	}
	ids := itSend(t, c, url, itJobs("", ns...)...)

	var log itLog
	p := itStart(t, c, url, func(ctx context.Context, j *itJob) error {
		log.add(ctx, j)
		return nil
	}, sqspool.WithWorkers(16))
	itEventually(t, 20*time.Second, func() bool { return p.Stats().Deleted == n }, "all %d deleted", n)
	itShutdown(t, p)

	calls := log.snapshot()
	require.Len(t, calls, n, "each message handled once")
	seen := map[int]bool{}
	for _, call := range calls {
		assert.False(t, seen[call.Job.N], "job %d handled twice", call.Job.N)
		seen[call.Job.N] = true
		assert.Equal(t, ids[call.Job.N], call.ID, "MessageFrom gives the MessageId")
		assert.Equal(t, 1, call.Delivery, "MessageFrom gives the receive count")
	}
	st := p.Stats()
	assert.EqualValues(t, n, st.Received)
	assert.EqualValues(t, n, st.Processed)
	assert.Zero(t, st.DeleteErrors)
	assert.Less(t, st.Calls["DeleteMessageBatch"], int64(n/2), "deletes are batched: %v", st.Calls)
	t.Logf("%d messages: %v", n, st.Calls)
	itAssertEmpty(t, c, url)
}

// A failed message comes back: after the RetryAfter delay the handler asked
// for, or, without one, when its visibility timeout ends. It keeps its
// MessageId, and its receive count grows.
func TestIntegrationRedeliveryAfterHandlerFailure(t *testing.T) {
	t.Parallel()
	c := itSQS(t)
	url := awstest.NewQueue(t, c, "it-redeliver", nil)
	itSend(t, c, url, itJobs("", 1, 2)...)

	const visibility = 2 * time.Second
	var log itLog
	p := itStart(t, c, url, func(ctx context.Context, j *itJob) error {
		log.add(ctx, j)
		if len(log.of(j.N)) > 1 {
			return nil
		}
		if j.N == 1 {
			return sqspool.RetryAfter(time.Second, errors.New("busy, come back in a second"))
		}
		return errors.New("failed; left to the visibility timeout")
	},
		sqspool.WithVisibilityTimeout(visibility),
		sqspool.WithRetryBackoff(nil), // plain errors wait out the visibility timeout
		sqspool.WithHeartbeat(false),
		// Receives of one message: local-aws-sqs starts the visibility
		// timeout when a long poll picks a message, and holds the poll open
		// until it has all it asked for.
		sqspool.WithMaxMessages(1), sqspool.WithWorkers(2))
	itEventually(t, 20*time.Second, func() bool { return p.Stats().Deleted == 2 }, "both deleted after a retry")
	itShutdown(t, p)

	for _, n := range []int{1, 2} {
		calls := log.of(n)
		require.Len(t, calls, 2, "job %d: a failure, then a success", n)
		assert.Equal(t, calls[0].ID, calls[1].ID, "job %d keeps its MessageId", n)
		assert.Equal(t, 1, calls[0].Delivery)
		// AWS counts receives only; local-aws-sqs also counts the
		// visibility change that RetryAfter makes.
		assert.GreaterOrEqual(t, calls[1].Delivery, 2, "job %d receive count", n)
	}
	plain := log.of(2)
	assert.Equal(t, 2, plain[1].Delivery, "no visibility change in between: exactly the second receive")
	assert.GreaterOrEqual(t, plain[1].At.Sub(plain[0].At), visibility-500*time.Millisecond,
		"a plain failure waits out the visibility timeout")
	st := p.Stats()
	assert.EqualValues(t, 2, st.Failed)
	assert.EqualValues(t, 1, st.Retried, "only RetryAfter sets a delay")
	assert.EqualValues(t, 2, st.Processed)
	itAssertEmpty(t, c, url)
}

// A body that does not decode never reaches the handler; it is left in the
// queue until the redrive policy moves it to the dead-letter queue, with its
// MessageId. The heartbeat and retry backoff are off: on local-aws-sqs every
// visibility change would count as a receive.
func TestIntegrationPoisonMessageReachesDLQ(t *testing.T) {
	t.Parallel()
	c := itSQS(t)
	const maxReceiveCount = 2
	url, dlq := awstest.NewQueueWithDLQ(t, c, maxReceiveCount, map[string]string{"VisibilityTimeout": "1"})
	ids := itSend(t, c, url, itMsg{Body: `{"n": "not a number"`}, itJobs("", 7)[0])

	var log itLog
	var decodeErrs atomic.Int64
	p := itStart(t, c, url, func(ctx context.Context, j *itJob) error {
		log.add(ctx, j)
		return nil
	},
		sqspool.WithHeartbeat(false),
		sqspool.WithRetryBackoff(nil),
		sqspool.WithErrorHook(func(_ context.Context, m *sqspool.Message, err error) {
			var de *sqspool.DecodeError
			if errors.As(err, &de) && m != nil && m.ID == ids[0] {
				decodeErrs.Add(1)
			}
		}))

	var dead []types.Message
	deadline := time.Now().Add(30 * time.Second)
	for len(dead) == 0 && time.Now().Before(deadline) {
		dead = itReceive(t, c, dlq, 1)
	}
	itShutdown(t, p)
	require.Len(t, dead, 1, "the poison message reached the DLQ")
	assert.Equal(t, ids[0], aws.ToString(dead[0].MessageId))
	assert.Equal(t, `{"n": "not a number"`, aws.ToString(dead[0].Body))

	calls := log.snapshot()
	require.Len(t, calls, 1, "only the good message reached the handler")
	assert.Equal(t, 7, calls[0].Job.N)
	// One decode error per delivery; at most maxReceiveCount deliveries.
	errs := decodeErrs.Load()
	assert.True(t, errs >= 1 && errs <= maxReceiveCount, "decode errors: %d", errs)
	st := p.Stats()
	assert.EqualValues(t, 1, st.Deleted, "the poison message is not deleted, the good one is")
	itAssertEmpty(t, c, url)
}

// Shutdown gives back, at once, the messages received but not started: here
// the FIFO messages waiting behind their group's running message. Once the
// running one is done, the others are receivable immediately, in order,
// rather than after their 30 s visibility timeout.
//
// The pool holds exactly as many messages as there are, so that no long poll
// is open when it stops: local-aws-sqs, like SQS, keeps a cancelled long poll
// running to its end, and it would pick up a message the stop gives back.
// (Without the heartbeat a FIFO pool holds one message per worker.)
func TestIntegrationShutdownReturnsUnstartedFIFO(t *testing.T) {
	t.Parallel()
	c := itSQS(t)
	url := awstest.NewQueue(t, c, "it-fifo-stop", map[string]string{"FifoQueue": "true", "VisibilityTimeout": "30"})
	itSend(t, c, url, itJobs("g", 0, 1, 2)...)

	started, release := make(chan struct{}), make(chan struct{})
	var log itLog
	p := itStart(t, c, url, func(ctx context.Context, j *itJob) error {
		log.add(ctx, j)
		if j.N == 0 {
			close(started)
			<-release
		}
		return nil
	}, sqspool.WithWorkers(3), sqspool.WithPollers(1), sqspool.WithHeartbeat(false))
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the first message was not handled")
	}
	itEventually(t, 10*time.Second, func() bool { return p.Stats().Received == 3 }, "the whole group received")

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stopped <- p.Shutdown(ctx)
	}()
	itEventually(t, 10*time.Second, func() bool { return p.Stats().Returned == 2 },
		"the waiting messages given back while the first still runs")
	close(release)
	require.NoError(t, <-stopped)

	require.Len(t, log.snapshot(), 1, "only the running message was handled")
	begun := time.Now()
	var rest []string
	for len(rest) < 2 && time.Since(begun) < 10*time.Second {
		for _, m := range itReceive(t, c, url, int32(2-len(rest))) {
			rest = append(rest, aws.ToString(m.Body))
		}
	}
	assert.Equal(t, []string{itJobs("g", 1)[0].Body, itJobs("g", 2)[0].Body}, rest, "the rest of the group, in order")
	assert.Less(t, time.Since(begun), 5*time.Second, "given back at once, not after the visibility timeout")
}

// recorder is an sqspool.Client that records which receipt handles each
// receive handed out and each delete used.
type recorder struct {
	sqspool.Client
	mu       sync.Mutex
	received map[string][]string // MessageId -> receipt handles, in receive order
	owner    map[string]string   // receipt handle -> MessageId
	deleted  map[string][]string // MessageId -> receipt handles deleted with
	// redelivered is closed when a receive is made after one that handed
	// out a message for the second time. With one poller, which dispatches
	// a response before it makes its next receive, the pool has by then
	// taken in that delivery.
	redelivered chan struct{}
	again       bool // a receive handed out a message again
}

func newRecorder(c sqspool.Client) *recorder {
	return &recorder{Client: c, received: map[string][]string{}, owner: map[string]string{}, deleted: map[string][]string{},
		redelivered: make(chan struct{})}
}

func (r *recorder) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, o ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	r.mu.Lock()
	if r.again {
		r.again = false
		close(r.redelivered)
	}
	r.mu.Unlock()
	out, err := r.Client.ReceiveMessage(ctx, in, o...)
	if err == nil {
		r.mu.Lock()
		for _, m := range out.Messages {
			id, h := aws.ToString(m.MessageId), aws.ToString(m.ReceiptHandle)
			r.received[id] = append(r.received[id], h)
			r.owner[h] = id
			if len(r.received[id]) == 2 {
				r.again = true
			}
		}
		r.mu.Unlock()
	}
	return out, err
}

func (r *recorder) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, o ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	r.mu.Lock()
	for _, e := range in.Entries {
		h := aws.ToString(e.ReceiptHandle)
		r.deleted[r.owner[h]] = append(r.deleted[r.owner[h]], h)
	}
	r.mu.Unlock()
	return r.Client.DeleteMessageBatch(ctx, in, o...)
}

func (r *recorder) handles(id string) (received, deleted []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.received[id]), slices.Clone(r.deleted[id])
}

// A handler that outlives its message's visibility timeout (the heartbeat
// is off, and it ignores its cancelled context) sees the message delivered
// again. The pool drops that duplicate, keeps its newer receipt handle, and
// deletes with it: SQS honours only the newest handle (local-aws-sqs honours
// any, so the test checks the handle itself).
func TestIntegrationDuplicateDeliveryDeletesWithNewestHandle(t *testing.T) {
	t.Parallel()
	c := itSQS(t)
	url := awstest.NewQueue(t, c, "it-newest", map[string]string{"VisibilityTimeout": "1"})
	id := itSend(t, c, url, itJobs("", 1)...)[0]

	rec := newRecorder(c)
	var log itLog
	p := itStart(t, rec, url, func(ctx context.Context, j *itJob) error {
		log.add(ctx, j)
		// Ignore ctx, which ends before the visibility timeout, and return
		// only once the pool has taken in the message's second delivery.
		select {
		case <-rec.redelivered:
		case <-time.After(20 * time.Second): // a hang guard; the assertions below fail
		}
		return nil
	}, sqspool.WithHeartbeat(false), sqspool.WithWorkers(2), sqspool.WithPollers(1))
	itEventually(t, 20*time.Second, func() bool { return p.Stats().Deleted == 1 }, "deleted")
	itShutdown(t, p)

	received, deleted := rec.handles(id)
	require.GreaterOrEqual(t, len(received), 2, "delivered again while handled")
	require.NotEmpty(t, deleted)
	assert.Equal(t, received[len(received)-1], deleted[len(deleted)-1], "deleted with the newest receipt handle")
	assert.NotEqual(t, received[0], deleted[len(deleted)-1], "not with the first one")
	assert.Len(t, log.snapshot(), 1, "the duplicate never reached the handler")
	st := p.Stats()
	assert.GreaterOrEqual(t, st.Duplicates, int64(1))
	assert.Zero(t, st.DeleteErrors)
	itAssertEmpty(t, c, url)
}

// The heartbeat keeps a slow handler's message invisible: a handler that
// runs three visibility timeouts is called once, and no other consumer
// receives the message meanwhile. (No redrive policy: on local-aws-sqs each
// extension counts as a receive.)
func TestIntegrationHeartbeatKeepsSlowMessageInvisible(t *testing.T) {
	t.Parallel()
	c := itSQS(t)
	const visibility = 2 * time.Second
	url := awstest.NewQueue(t, c, "it-heartbeat", map[string]string{"VisibilityTimeout": "2"})
	itSend(t, c, url, itJobs("", 1)...)

	var log itLog
	p := itStart(t, c, url, func(ctx context.Context, j *itJob) error {
		log.add(ctx, j)
		select {
		case <-time.After(3 * visibility):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, sqspool.WithWorkers(2), sqspool.WithMaxMessages(1)) // see TestIntegrationRedeliveryAfterHandlerFailure
	itEventually(t, 20*time.Second, func() bool { return log.len() == 1 }, "handler started")

	// Another consumer polls the queue while the handler runs.
	var stolen []types.Message
	for end := time.Now().Add(3*visibility - 500*time.Millisecond); time.Now().Before(end); {
		stolen = append(stolen, itReceive(t, c, url, 1)...)
	}
	itEventually(t, 20*time.Second, func() bool { return p.Stats().Deleted == 1 }, "deleted")
	itShutdown(t, p)

	assert.Empty(t, stolen, "another consumer received the message while it was handled")
	assert.Len(t, log.snapshot(), 1, "handler called once")
	st := p.Stats()
	assert.Zero(t, st.Duplicates, "the pool did not receive it again either")
	assert.GreaterOrEqual(t, st.Extended, int64(2), "extended at least twice")
	t.Logf("extensions: %d; calls: %v", st.Extended, st.Calls)
	itAssertEmpty(t, c, url)
}

// On a FIFO queue, groups run in parallel and each group's messages run one
// at a time, in order.
func TestIntegrationFIFOGroupOrderUnderConcurrency(t *testing.T) {
	t.Parallel()
	c := itSQS(t)
	url := awstest.NewQueue(t, c, "it-fifo-order", map[string]string{"FifoQueue": "true", "VisibilityTimeout": "30"})
	const groups, perGroup = 5, 12
	var msgs []itMsg
	for i := range perGroup { // interleaved: g0-0, g1-0, ..., g0-1, ...
		for g := range groups {
			msgs = append(msgs, itJobs(fmt.Sprint("g", g), i)...)
		}
	}
	itSend(t, c, url, msgs...)

	var (
		log     itLog
		mu      sync.Mutex
		busy    = map[string]bool{} // groups with a running handler
		maxBusy int
		overlap bool
	)
	p := itStart(t, c, url, func(ctx context.Context, j *itJob) error {
		mu.Lock()
		overlap = overlap || busy[j.Group]
		busy[j.Group] = true
		maxBusy = max(maxBusy, len(busy))
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(busy, j.Group)
			mu.Unlock()
		}()
		log.add(ctx, j)
		time.Sleep(time.Duration(5+j.N%3*10) * time.Millisecond)
		return nil
	}, sqspool.WithWorkers(8), sqspool.WithPollers(1))
	itEventually(t, 30*time.Second, func() bool { return p.Stats().Deleted == groups*perGroup }, "all deleted")
	itShutdown(t, p)

	mu.Lock()
	defer mu.Unlock()
	assert.False(t, overlap, "two messages of one group ran at once")
	order := map[string][]int{}
	for _, call := range log.snapshot() {
		order[call.Job.Group] = append(order[call.Job.Group], call.Job.N)
	}
	want := make([]int, perGroup)
	for i := range want {
		want[i] = i
	}
	for g := range groups {
		assert.Equal(t, want, order[fmt.Sprint("g", g)], "group g%d in order, each once", g)
	}
	assert.Greater(t, maxBusy, 1, "groups ran in parallel")
	t.Logf("at most %d groups at once; calls: %v", maxBusy, p.Stats().Calls)
	itAssertEmpty(t, c, url)
}
