package sqspool

import (
	"context"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/sqsfake"
)

// heldChanges holds every ChangeMessageVisibilityBatch call until the test
// lets it go, as a slow network would.
type heldChanges struct {
	*sqsfake.Fake
	calls   chan struct{} // a call is on its way
	release chan struct{}
}

func (c *heldChanges) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, o ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	c.calls <- struct{}{}
	<-c.release
	return c.Fake.ChangeMessageVisibilityBatch(ctx, in, o...)
}

// staleRig is a dispatcher and a dequeuer over sqsfake, for the life of one
// message that SQS delivers more than once.
type staleRig struct {
	e        *env
	d        *dispatcher
	deq      *dequeuer
	reported chan error
}

func newStaleRig(t *testing.T, wrap func(*sqsfake.Fake) Client) *staleRig {
	e := newEnv(t, nil) // visibility 30 s
	client := wrap(e.fake)
	r := &staleRig{e: e, d: plainDispatcher(e.clk), reported: make(chan error, 10)}
	cfg := defaultConfig()
	cfg.clock, cfg.deleteLinger, cfg.batchAttempts = e.clk, 0, 1
	r.deq = newDequeuer(context.Background(), &dequeuer{
		client: client, queueURL: e.queue, attempts: 1, clock: e.clk, counters: r.d.counters, log: quietLogger(),
		onError: func(_ *Message, err error) { r.reported <- err },
		forget:  r.d.forget, gone: r.d.forgetDeleted,
		observe: func(api, int, time.Time, error) {},
		deleted: func(*Message) {},
	}, &cfg)
	t.Cleanup(func() { require.NoError(t, r.deq.close(context.Background())) })
	return r
}

// receive receives the message from the fake: one delivery, as the pool's
// dispatcher is given it.
func (r *staleRig) receive(t *testing.T) types.Message {
	out, err := r.e.fake.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: &r.e.queue, MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	return out.Messages[0]
}

// twoDeliveries sends a message and has SQS deliver it twice: the older
// delivery first, then the newer (its visibility ended, say).
func (r *staleRig) twoDeliveries(t *testing.T) (older, newer types.Message) {
	r.e.sendOrders(1)
	older = r.receive(t)
	_, err := r.e.fake.ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{
		QueueUrl: &r.e.queue, ReceiptHandle: older.ReceiptHandle,
	})
	require.NoError(t, err)
	return older, r.receive(t)
}

// arrives hands m to the dispatcher as a receive's response, and returns
// the record a worker would get, if any.
func (r *staleRig) arrives(m types.Message) *record {
	r.d.dispatch([]types.Message{m}, r.e.clk.Now())
	select {
	case rec := <-r.d.work:
		return rec
	default:
		return nil
	}
}

func withCount(m types.Message, n int) types.Message {
	m.Attributes = maps.Clone(m.Attributes)
	m.Attributes["ApproximateReceiveCount"] = strconv.Itoa(n)
	return m
}

// Issue 11 (the simulator's visible-while-running, seeds 6944 and 1141): a
// record given back at visibility 0 leaves the in-flight set as its change
// is sent. An older delivery of its message, from a receive that overlapped
// the newer one, may reach the pool only now. Run, it would be made visible
// by the give-back's change while its handler runs (SQS applies the change:
// it was made with the newest handle), and could never delete its message.
// It is dropped; a newer delivery runs.
func TestOlderDeliveryOfAGivenBackMessageDoesNotRun(t *testing.T) {
	var client *heldChanges
	r := newStaleRig(t, func(f *sqsfake.Fake) Client {
		client = &heldChanges{Fake: f, calls: make(chan struct{}, 10), release: make(chan struct{})}
		return client
	})
	older, newer := r.twoDeliveries(t)
	rec := r.arrives(newer)
	require.NotNil(t, rec)
	r.deq.setVisibility(rec, 0) // given back unstarted
	<-client.calls              // on its way
	assert.Nil(t, r.arrives(older), "an older delivery, late: dropped")
	assert.Nil(t, r.arrives(withCount(older, 2)), "equal receive counts while the change may still apply: dropped")
	assert.EqualValues(t, 2, r.d.counters.duplicates.Load())
	close(client.release)
	require.NoError(t, r.deq.changes.Close(context.Background())) // the change has its answer
	fs := r.e.fake.Stats(r.e.queue)
	assert.Equal(t, 1, fs.Visible, "given back")
	third := r.receive(t)
	assert.NotNil(t, r.arrives(third), "a newer delivery runs")
	assert.Nil(t, r.arrives(older), "and an older one stays dropped")
}

// Issue 11 (the simulator's lost-unreported, seed 20453): a record whose
// delete failed for good is forgotten, and its message comes back when the
// newest delivery's visibility ends. An older delivery reaching the pool
// after that must not run: its delete would be made with a stale handle,
// which SQS accepts and which deletes nothing, so a finished message would
// stay, with no failure reported. It is dropped; the message runs again
// when SQS delivers it again, and what the forgotten record knew is pruned
// a visibility timeout later.
func TestOlderDeliveryAfterAFailedDeleteDoesNotRun(t *testing.T) {
	r := newStaleRig(t, func(f *sqsfake.Fake) Client { return f })
	older, newer := r.twoDeliveries(t)
	rec := r.arrives(newer)
	require.NotNil(t, rec)
	r.e.fake.FailNext(sqsfake.OpDeleteMessageBatch, 1, nil) // InternalError, and no attempt left
	r.deq.delete(rec)
	var aerr *APIError
	require.ErrorAs(t, <-r.reported, &aerr, "the failed delete is reported")
	assert.Equal(t, "DeleteMessageBatch", aerr.API)
	assert.Nil(t, r.arrives(older), "an older delivery, late: dropped")
	assert.EqualValues(t, 1, r.d.counters.duplicates.Load())
	r.d.pruneGone(r.e.clk.Now().Add(30 * time.Second))
	assert.Len(t, r.d.gone, 1, "kept for a visibility timeout")
	r.d.pruneGone(r.e.clk.Now().Add(31 * time.Second))
	assert.Empty(t, r.d.gone, "then pruned")
	r.e.clk.Advance(30 * time.Second) // the newest delivery's visibility ends
	again := r.arrives(r.receive(t))
	require.NotNil(t, again, "delivered again, it runs")
	r.deq.delete(again)
	require.NoError(t, r.deq.deletes.Close(context.Background()))
	fs := r.e.fake.Stats(r.e.queue)
	assert.EqualValues(t, 1, fs.Deleted)
	assert.Zero(t, fs.StaleDeletes)
	assert.Len(t, r.d.gone, 1, "kept for the message's older deliveries")
	assert.Empty(t, r.d.inflight)
	select {
	case err := <-r.reported:
		t.Fatalf("reported: %v", err)
	default:
	}
}

// Seed 2262 of the simulator (second-run): the newest delivery's delete went
// through, and an older delivery reached the pool only after that. Run, it
// would handle a message deleted already. It is dropped. A message received
// once leaves nothing behind when it is deleted: no older delivery exists.
func TestOlderDeliveryAfterTheDeleteDoesNotRun(t *testing.T) {
	r := newStaleRig(t, func(f *sqsfake.Fake) Client { return f })
	older, newer := r.twoDeliveries(t)
	rec := r.arrives(newer)
	require.NotNil(t, rec)
	r.deq.delete(rec)
	require.NoError(t, r.deq.deletes.Close(context.Background()))
	assert.EqualValues(t, 1, r.e.fake.Stats(r.e.queue).Deleted)
	assert.Nil(t, r.arrives(older), "an older delivery, late: dropped")

	r = newStaleRig(t, func(f *sqsfake.Fake) Client { return f })
	r.e.sendOrders(1)
	once := r.arrives(r.receive(t))
	require.NotNil(t, once)
	r.deq.delete(once)
	require.NoError(t, r.deq.deletes.Close(context.Background()))
	assert.EqualValues(t, 1, r.e.fake.Stats(r.e.queue).Deleted)
	assert.Empty(t, r.d.gone, "received once: nothing remembered")
}
