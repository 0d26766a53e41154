package sink_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sqsfake"
)

// completeKey marks key COMPLETE, as its live holder does when it ends.
func (e *env) completeKey(key string) {
	rec, ok := e.record(key)
	require.True(e.t, ok)
	rec[sink.RecordStatusAttribute] = &types.AttributeValueMemberS{Value: sink.StatusComplete}
	e.fake.Set(idemTable, rec)
}

// withDeadline is a Put context for key with a deadline an hour away, as a
// handler's context has one.
func withDeadline(t *testing.T, key string) context.Context {
	ctx, cancel := context.WithTimeout(msg(t, key), time.Hour)
	t.Cleanup(cancel)
	return ctx
}

// pending is the result of a Put running in a goroutine.
type pending struct {
	once sync.Once
	done chan struct{}
	err  error
}

func newPending() *pending { return &pending{done: make(chan struct{})} }

// end records the Put's result; only the first counts.
func (p *pending) end(err error) {
	p.once.Do(func() {
		p.err = err
		close(p.done)
	})
}

func (p *pending) wait() error {
	<-p.done
	return p.err
}

// goPut runs e.sink.Put in a goroutine.
func (e *env) goWaitingPut(ctx context.Context, items ...order) *pending {
	p := newPending()
	go func() { p.end(e.sink.Put(ctx, items...)) }()
	return p
}

// advanceWhileWaiting moves the clock by step, n times, each once the
// waiting Put p has armed its timer.
func (e *env) advanceWhileWaiting(p *pending, n int, step time.Duration) {
	e.t.Helper()
	for i := range n {
		require.True(e.t, e.clk.BlockUntil(1, p.done), "the Put returned before it waited %d times", i+1)
		e.clk.Advance(step)
	}
}

// A redelivery whose earlier delivery died mid-Put finds the dead writer's
// record INPROGRESS. With its handler's deadline leaving room, the Put waits
// for that lease to lapse (trying the key every quarter of the lease) and
// then takes the key over and writes, instead of giving the message back,
// which would spend one of its receives.
func TestIdempotentPutWaitsForADeadWritersLease(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{Lease: 4 * time.Second}) // margin 1 s
	e.holdKey("m-1", epoch.Add(3*time.Second))
	p := e.goWaitingPut(withDeadline(t, "m-1"), order{PK: "a", N: 1})
	// Free at the lease's end plus the margin: 4 s, four tries of 1 s apart.
	e.advanceWhileWaiting(p, 4, time.Second)
	require.NoError(t, p.wait())
	e.assertN("a", 1)
	rec, _ := e.record("m-1")
	assert.Equal(t, sink.StatusComplete, stringAttr(rec, sink.RecordStatusAttribute))
	st := e.sink.Stats()
	assert.EqualValues(t, 1, st.InProgressWaited)
	assert.Zero(t, st.InProgressRejected)
	assert.EqualValues(t, 5, st.PutItemCalls, "a try at 0, 1, 2 and 3 s, the take at 4 s")
}

// A Put that waits for a live holder ends as soon as a try finds the
// holder's record COMPLETE, long before the lease would have lapsed: the
// duplicate delivery succeeds without writing.
func TestIdempotentPutWaitEndsWhenTheHolderCompletes(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{Lease: 8 * time.Second}) // margin 2 s
	e.holdKey("m-1", epoch.Add(8*time.Second))
	p := e.goWaitingPut(withDeadline(t, "m-1"), order{PK: "a", N: 2})
	require.True(t, e.clk.BlockUntil(1, p.done))
	e.completeKey("m-1")
	e.clk.Advance(2 * time.Second)
	require.NoError(t, p.wait())
	assert.Zero(t, e.fake.Len(table), "nothing written: the holder's write counts")
	st := e.sink.Stats()
	assert.EqualValues(t, 1, st.DuplicatesSkipped)
	assert.EqualValues(t, 1, st.InProgressWaited)
	assert.Zero(t, st.InProgressRejected)
	assert.EqualValues(t, 2, st.PutItemCalls)
}

// A live holder that renews its lease while a Put waits keeps the key: the
// Put waits only until the lease it first saw could have lapsed, then
// returns ErrInProgress with the delay of the renewed lease.
func TestIdempotentPutWaitsOnceForARenewingHolder(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{Lease: 4 * time.Second})
	e.holdKey("m-1", epoch.Add(3*time.Second))
	p := e.goWaitingPut(withDeadline(t, "m-1"), order{PK: "a"})
	e.advanceWhileWaiting(p, 1, time.Second)
	e.holdKey("m-1", epoch.Add(7*time.Second)) // renewed at 1 s (its 3 s of 4 left)
	e.advanceWhileWaiting(p, 3, time.Second)
	err := p.wait()
	require.ErrorIs(t, err, sink.ErrInProgress)
	delay, ok := sqspool.RetryDelay(err)
	require.True(t, ok)
	assert.Equal(t, 4*time.Second, delay, "until the renewed lease can have lapsed: 3 s, plus the 1 s margin")
	st := e.sink.Stats()
	assert.EqualValues(t, 1, st.InProgressWaited)
	assert.EqualValues(t, 1, st.InProgressRejected)
	assert.EqualValues(t, 5, st.PutItemCalls)
}

// Where the wait cannot help, or must not happen, a Put returns
// ErrInProgress at once, with the delay until the lease can have lapsed.
func TestIdempotentPutDoesNotWaitWithoutRoom(t *testing.T) {
	for _, c := range []struct {
		name    string
		maxWait time.Duration
		ctx     func(t *testing.T) context.Context
	}{
		{"no deadline", 0, func(t *testing.T) context.Context { return msg(t, "m-1") }},
		{"the deadline before the lease can lapse and a write follow", 0, func(t *testing.T) context.Context {
			ctx, cancel := context.WithTimeout(msg(t, "m-1"), 4500*time.Millisecond) // needs 4 s + 1 s
			t.Cleanup(cancel)
			return ctx
		}},
		{"negative MaxWait", -1, func(t *testing.T) context.Context { return withDeadline(t, "m-1") }},
		{"MaxWait shorter than the lease left", 3 * time.Second, func(t *testing.T) context.Context { return withDeadline(t, "m-1") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newIdemEnv(t, sink.IdempotencyConfig{Lease: 4 * time.Second, MaxWait: c.maxWait})
			e.holdKey("m-1", epoch.Add(3*time.Second))
			p := e.goWaitingPut(c.ctx(t), order{PK: "a"})
			if e.clk.BlockUntil(1, p.done) {
				t.Error("the Put waits")
				e.clk.Advance(time.Hour) // let it end
			}
			err := p.wait()
			require.ErrorIs(t, err, sink.ErrInProgress)
			delay, _ := sqspool.RetryDelay(err)
			assert.Equal(t, 4*time.Second, delay)
			st := e.sink.Stats()
			assert.Zero(t, st.InProgressWaited)
			assert.EqualValues(t, 1, st.PutItemCalls)
		})
	}
}

// A Put whose context ends while it waits returns ErrInProgress with the
// delay left until the lease can have lapsed.
func TestIdempotentPutWaitEndsWithItsContext(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{Lease: 4 * time.Second})
	e.holdKey("m-1", epoch.Add(3*time.Second))
	ctx, cancel := context.WithTimeout(msg(t, "m-1"), time.Hour)
	p := e.goWaitingPut(ctx, order{PK: "a"})
	e.advanceWhileWaiting(p, 1, time.Second)
	require.True(t, e.clk.BlockUntil(1, p.done))
	cancel()
	err := p.wait()
	require.ErrorIs(t, err, sink.ErrInProgress)
	delay, _ := sqspool.RetryDelay(err)
	assert.Equal(t, 3*time.Second, delay, "2 s of the lease left at 1 s, plus the margin")
	assert.EqualValues(t, 1, e.sink.Stats().InProgressRejected)
}

// Through a pool: a message whose earlier delivery died mid-Put (its record
// INPROGRESS for 3 s more) comes again, on a queue that moves a message to
// its DLQ after one receive. The handler's Put waits for the dead writer's
// lease and writes; the message is deleted on its first receive and never
// reaches the DLQ. Without the wait, ErrInProgress gave it back, and its
// next receive moved it to the DLQ.
func TestPipeRedeliveryAfterADeadWriterSpendsNoReceive(t *testing.T) {
	e := newIdemEnv(t, sink.IdempotencyConfig{Lease: 4 * time.Second})
	f := sqsfake.New()
	dlq := f.MustCreateQueue("dead", nil)
	q := f.MustCreateQueue("jobs", map[string]string{"RedrivePolicy": sqsfake.RedrivePolicy(f.QueueARN("dead"), 1)})
	id := f.MustSendJSON(q, job{N: 3})
	e.holdKey(id, epoch.Add(3*time.Second))

	counts := make(chan int, 10)
	put := newPending() // the first Put
	store := sink.Func[order](func(ctx context.Context, items ...order) error {
		err := e.sink.Put(ctx, items...)
		put.end(err)
		return err
	})
	process := func(ctx context.Context, j *job) (order, error) {
		m, _ := sqspool.MessageFrom(ctx)
		counts <- m.ReceiveCount
		return order{PK: "a", N: j.N}, nil
	}
	p, err := sqspool.StartPool(t.Context(), &sqspool.Consumer{Client: f, Queue: q}, sink.Pipe(process, store),
		sqspool.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) }) // if the test ends early
	assert.Equal(t, 1, <-counts)
	e.advanceWhileWaiting(put, 4, time.Second)
	require.NoError(t, put.wait())
	require.NoError(t, p.Shutdown(context.Background()))

	e.assertN("a", 3)
	assert.EqualValues(t, 1, f.Stats(q).Deleted)
	assert.Zero(t, f.Stats(dlq).Visible, "nothing in the DLQ")
	assert.EqualValues(t, 1, e.sink.Stats().InProgressWaited)
}
