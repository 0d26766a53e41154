package faults

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sink/dynamofake"
	"github.com/sqspool/sqspool/sqsfake"
)

// event is a producer's message: PID is the id the producer assigned, the
// key under which its effect is stored.
type event struct {
	PID int `json:"pid"`
	N   int `json:"n"`
}

// effect is what handling an event stores.
type effect struct {
	PK     string `dynamodbav:"pk"`
	PID    int    `dynamodbav:"pid"`
	Square int    `dynamodbav:"square"`
}

// IdempotencyKey keys the idempotent sink on the producer id, not the
// MessageId.
func (e effect) IdempotencyKey() string { return e.PK }

func effectKey(pid int) string { return "p" + strconv.Itoa(pid) }

// The flood's injected handler behaviour, by producer id: 1% of bodies are
// malformed, and of the rest 10% fail their first attempt (half asking for a
// retry delay, half left to the backoff) and 1% panic on it.
func malformed(pid int) bool   { return pid%100 == 99 }
func failsFirst(pid int) bool  { return pid%100 < 10 }
func panicsFirst(pid int) bool { return pid%100 == 10 }

var errInjected = errors.New("injected handler failure")

// floodFaults are the SQS faults of the flood: receive errors, throttling
// and lost replies, duplicate deliveries, partial batch failures and jitter
// on every API the pool calls (GetQueueAttributes, called once at start,
// stays clean so that StartPool succeeds).
var floodFaults = sqsfake.Faults{
	sqsfake.OpReceiveMessage: {
		ErrorRate: 0.03, ThrottleRate: 0.03, LostReplyRate: 0.005, DuplicateRate: 0.02,
		Jitter: 300 * time.Microsecond,
	},
	sqsfake.OpDeleteMessageBatch: {
		ErrorRate: 0.02, ThrottleRate: 0.02, LostReplyRate: 0.01, PartialFailureRate: 0.05,
		Jitter: 300 * time.Microsecond,
	},
	sqsfake.OpChangeMessageVisibilityBatch: {
		ErrorRate: 0.02, ThrottleRate: 0.02, LostReplyRate: 0.01, PartialFailureRate: 0.05,
		Jitter: 300 * time.Microsecond,
	},
}

// spikes delays one call in 150 by 15 ms of wall time: latency spikes on
// top of the jitter.
func spikes() sqsfake.Hook {
	var n atomic.Int64
	return func(string, any) error {
		if n.Add(1)%150 == 0 {
			time.Sleep(15 * time.Millisecond) // injected latency, not synchronisation
		}
		return nil
	}
}

// handlerLog counts what the handlers did and what the error hook saw.
type handlerLog struct {
	mu           sync.Mutex
	attempts     map[int]int       // producer id -> handler calls
	decodeErrIDs map[string]int    // MessageId -> DecodeErrors seen by the hook
	hookErrs     map[string]int64  // kind -> count
	ok, errs     atomic.Int64      // handler calls returning nil / an error (panics excluded)
	panics       atomic.Int64      // handler calls that panicked
	apiErrs      map[string]string // API -> one example
}

func newHandlerLog() *handlerLog {
	return &handlerLog{attempts: map[int]int{}, decodeErrIDs: map[string]int{}, hookErrs: map[string]int64{}, apiErrs: map[string]string{}}
}

func (l *handlerLog) begin(pid int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts[pid]++
	return l.attempts[pid]
}

func (l *handlerLog) hook(_ context.Context, m *sqspool.Message, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var de *sqspool.DecodeError
	var pe *sqspool.PanicError
	var ae *sqspool.APIError
	switch {
	case errors.As(err, &de):
		l.decodeErrIDs[m.ID]++
		l.hookErrs["decode"]++
	case errors.As(err, &pe):
		l.hookErrs["panic"]++
	case errors.As(err, &ae):
		l.hookErrs["api:"+ae.API]++
		l.apiErrs[ae.API] = err.Error()
	default:
		l.hookErrs["handler"]++
	}
}

// TestFaultFlood is scenario 1: a flood of messages through a pool while the
// fake injects every fault it has, handlers fail and panic on first
// attempts, and some bodies are malformed. Effects go through an idempotent
// DynamoDB sink (on dynamofake, keyed by the producer id) and then a keyed
// memory sink. At the end: every good message's effect is stored once, every
// malformed message is in the DLQ, the source queue is empty, the pool's
// counters reconcile with the handler's, the hook's and the fake's, and no
// goroutine is left.
func TestFaultFlood(t *testing.T) {
	n := pick(10_000, 100_000)
	const maxReceives = 10 // far above what a good message ever needs
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	f := sqsfake.New(clock.Option[sqsfake.Option](clk), sqsfake.WithSeed(20260101))
	dlq := f.MustCreateQueue("flood-dlq", nil)
	src := f.MustCreateQueue("flood", map[string]string{
		"VisibilityTimeout": "5",
		"RedrivePolicy":     sqsfake.RedrivePolicy(f.QueueARN("flood-dlq"), maxReceives),
	})
	badIDs := map[string]bool{}
	var nGood int
	for pid := range n {
		body := fmt.Sprintf(`{"pid":%d,"n":%d}`, pid, pid%1000)
		if malformed(pid) {
			body = fmt.Sprintf(`{"pid":%d,"n":`, pid)
		}
		id := f.MustSend(src, body)
		if malformed(pid) {
			badIDs[id] = true
		} else {
			nGood++
		}
	}

	// The sinks: the idempotent DynamoDB sink applies each producer id once;
	// the keyed memory sink behind it counts every Put that got through.
	ddbFake := dynamofake.New()
	ddbFake.CreateTable("results", "pk", "")
	ddbFake.CreateTable("idem", sink.DefaultIdempotencyKeyAttribute, "")
	ddbFake.SetUnprocessedFraction(0.03)
	ddbFake.Throttle("", 50)
	writes := newLedger()
	ddb, err := sink.NewDynamoDB[effect](recordingDynamoDB{DynamoDBAPI: ddbFake, ledger: writes, pkAttr: "pk"}, "results",
		sink.WithBackoff(time.Millisecond, 20*time.Millisecond),
		sink.WithIdempotency(sink.IdempotencyConfig{Table: "idem"}))
	require.NoError(t, err)
	mem := sink.NewMemoryKeyed(func(e effect) string { return e.PK })
	store := sink.Func[effect](func(ctx context.Context, items ...effect) error {
		if err := ddb.Put(ctx, items...); err != nil {
			return err
		}
		return mem.Put(ctx, items...)
	})

	hl := newHandlerLog()
	process := func(ctx context.Context, ev *event) (effect, error) {
		if hl.begin(ev.PID) == 1 {
			switch {
			case panicsFirst(ev.PID):
				hl.panics.Add(1)
				panic(fmt.Sprintf("injected panic for %d", ev.PID))
			case failsFirst(ev.PID) && ev.PID%2 == 0:
				return effect{}, sqspool.RetryAfter(time.Second, errInjected)
			case failsFirst(ev.PID):
				return effect{}, errInjected
			}
		}
		return effect{PK: effectKey(ev.PID), PID: ev.PID, Square: ev.N * ev.N}, nil
	}
	pipe := sink.Pipe(process, store)
	handler := func(ctx context.Context, ev *event) error {
		err := pipe(ctx, ev)
		if err != nil {
			hl.errs.Add(1)
		} else {
			hl.ok.Add(1)
		}
		return err
	}

	f.SetFaults(floodFaults)
	f.SetHook(spikes())
	began := time.Now()
	pool, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: f, Queue: src}, handler,
		clock.Option[sqspool.Option](clk),
		sqspool.WithWorkers(32),
		// Two attempts per batch entry, not five: with these fault rates
		// about 1% of deletes then fail for good, so that messages already
		// handled come back and the idempotent sink has repeats to skip.
		sqspool.WithBatchAttempts(2),
		sqspool.WithRetryBackoff(sqspool.ExponentialBackoff(time.Second, 4*time.Second)),
		sqspool.WithErrorHook(hl.hook),
		sqspool.WithLogger(quietLogger()),
	)
	require.NoError(t, err)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = pool.Shutdown(context.Background())
			_ = ddb.Close(context.Background())
		}
	})
	d := startDriver(t, clk, 10*time.Millisecond, 250*time.Millisecond, func() bool {
		return f.Stats(src).Visible > 0 || held(pool.Stats()) > 0
	})

	d.waitFor(t, pick(60*time.Second, 600*time.Second), "source queue drained", func() bool {
		s := f.Stats(src)
		return s.Visible+s.InFlight+s.Delayed == 0 && f.Stats(dlq).MovedIn == int64(len(badIDs))
	})
	elapsed := time.Since(began)
	simulated := clk.Now().Sub(time.Unix(1_700_000_000, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, pool.Shutdown(ctx), "a clean stop: nothing cut short")
	require.NoError(t, ddb.Close(ctx))
	stopped = true
	d.halt()
	f.ClearFaults()

	st := pool.Stats()
	fs, ds := f.Stats(src), f.Stats(dlq)

	// Every good message's effect is stored, once per producer id.
	assert.Equal(t, nGood, mem.Len(), "one stored effect per good message")
	for pid := range n {
		e, ok := mem.Get(effectKey(pid))
		if malformed(pid) {
			assert.False(t, ok, "malformed %d stored", pid)
			continue
		}
		if assert.True(t, ok, "effect of %d missing", pid) {
			assert.Equal(t, (pid%1000)*(pid%1000), e.Square)
		}
	}
	ms := mem.Stats()
	assert.EqualValues(t, nGood+ms.Overwrites, ms.Applied, "memory sink: every Put beyond the first of a key is an overwrite")
	// ... and the idempotent DynamoDB sink applied each exactly once.
	written, completed := writes.snapshot()
	assert.Len(t, written, nGood)
	assert.Len(t, completed, nGood)
	for pk, procs := range written {
		assert.Len(t, procs, 1, "DynamoDB writes of %s", pk)
	}
	for id, procs := range completed {
		assert.Len(t, procs, 1, "COMPLETE updates of %s", id)
	}
	for _, rec := range ddbFake.Items("idem") {
		assert.Equal(t, sink.StatusComplete, stringValue(rec, sink.RecordStatusAttribute), "record %s", stringValue(rec, "id"))
	}
	dst := ddb.Stats()
	assert.EqualValues(t, nGood, dst.ItemsWritten)
	assert.Equal(t, int64(ms.Overwrites), dst.DuplicatesSkipped, "every repeat that reached the memory sink was skipped by the idempotent sink")

	// Every malformed message is in the DLQ, and only those; the source
	// queue is empty.
	dead := f.Messages(dlq)
	assert.Len(t, dead, len(badIDs))
	for _, m := range dead {
		assert.True(t, badIDs[m.MessageID], "good message %s (%q) in the DLQ", m.MessageID, m.Body)
	}
	assert.EqualValues(t, n, fs.Sent)
	assert.EqualValues(t, nGood, fs.Deleted, "each good message deleted once, with its newest handle")
	assert.EqualValues(t, len(badIDs), fs.MovedToDLQ)
	assert.EqualValues(t, len(badIDs), ds.MovedIn)
	assert.Zero(t, fs.Visible+fs.InFlight+fs.Delayed, "source queue empty")

	// The pool's counters reconcile with the handler's, the hook's and the
	// fake's.
	assert.Equal(t, st.Received, st.Duplicates+st.Processed+st.Failed+st.DecodeErrors+st.Returned,
		"every received message was dropped as a duplicate, handled, rejected or given back: %+v", st)
	assert.Zero(t, st.Returned)
	assert.Zero(t, st.InFlight)
	assert.Equal(t, hl.ok.Load(), st.Processed)
	assert.Equal(t, hl.errs.Load()+hl.panics.Load(), st.Failed)
	assert.Equal(t, hl.panics.Load(), st.Panics)
	assert.Zero(t, st.Dropped)
	assert.Equal(t, st.Failed, st.Retried, "every failure got its retry delay")
	assert.Equal(t, st.Processed+st.Dropped, st.Deleted+st.DeleteErrors, "every finished message's delete ended once")
	assert.GreaterOrEqual(t, st.Processed, int64(nGood))
	hl.mu.Lock()
	assert.Equal(t, st.DecodeErrors, hl.hookErrs["decode"])
	assert.Equal(t, st.Panics, hl.hookErrs["panic"])
	assert.Len(t, hl.decodeErrIDs, len(badIDs), "every malformed message reached the decoder")
	for id := range hl.decodeErrIDs {
		assert.True(t, badIDs[id], "decode error for good message %s", id)
	}
	for pid := range hl.attempts {
		assert.False(t, malformed(pid), "handler called for malformed %d", pid)
	}
	hookErrs := fmt.Sprint(hl.hookErrs)
	hl.mu.Unlock()
	for _, api := range []string{sqsfake.OpReceiveMessage, sqsfake.OpDeleteMessageBatch, sqsfake.OpChangeMessageVisibilityBatch, sqsfake.OpGetQueueAttributes} {
		assert.EqualValues(t, f.Calls(api), st.Calls[api], "%s calls: pool and fake agree", api)
	}

	figures(t, fmt.Sprintf("scenario 1: fault flood, %d messages (%d good, %d malformed), 32 workers", n, nGood, len(badIDs)),
		fmt.Sprintf("wall %.2fs, %.0f messages/s (simulated time %v)", elapsed.Seconds(), float64(n)/elapsed.Seconds(), simulated.Round(time.Second)),
		fmt.Sprintf("pool: received %d, processed %d, failed %d (panics %d), decode errors %d, duplicates dropped %d, deleted %d, delete errors %d, retried %d, returned %d, extended %d",
			st.Received, st.Processed, st.Failed, st.Panics, st.DecodeErrors, st.Duplicates, st.Deleted, st.DeleteErrors, st.Retried, st.Returned, st.Extended),
		fmt.Sprintf("fake: sent %d, deliveries %d, deleted %d, stale deletes %d, redundant deletes %d, injected duplicates %d, moved to DLQ %d",
			fs.Sent, fs.Received, fs.Deleted, fs.StaleDeletes, fs.RedundantDeletes, fs.Duplicates, fs.MovedToDLQ),
		fmt.Sprintf("SQS requests %d = %.3f per message (%.0f per 1000): %v; failed %v; empty receives %d",
			st.Requests(), float64(st.Requests())/float64(n), 1000*float64(st.Requests())/float64(n), st.Calls, st.CallErrors, st.EmptyReceives),
		fmt.Sprintf("sinks: memory applied %d (overwrites %d); DynamoDB written %d, duplicates skipped %d, in progress rejected %d, %d calls (%.0f per 1000 items)",
			ms.Applied, ms.Overwrites, dst.ItemsWritten, dst.DuplicatesSkipped, dst.InProgressRejected, dst.Calls(), dst.CallsPer1000Items()),
		"error hook: "+hookErrs,
	)
}
