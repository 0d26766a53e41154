package sqspool

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"time"
)

// The simulation runs the batch pool too: about a third of the seeds (every
// seed with SQSPOOL_SIM_FOCUS=batch) start StartBatchPool, and its handler
// runs each message's drawn behaviour in turn, as the single pool's handler
// would, so that the same invariants are checked per message. The draws are
// keyed dice, so a seed's other choices are those it has without batches.

// batchSize is the seed's batch size; 0: the single-message pool.
func (sc *simScenario) batchSize() int {
	if sc.adaptive != nil { // not for batch pools
		return 0
	}
	if !sc.d.chance(0.3, "batch") && os.Getenv("SQSPOOL_SIM_FOCUS") != "batch" {
		return 0
	}
	return 1 + int(sc.d.u64("batch-size")%12)
}

func (sc *simScenario) batchLinger() time.Duration {
	return sc.q(sc.d.dur(0, 2*time.Second, "batch-linger"))
}

// simStart starts the seed's pool.
func simStart(parent context.Context, c *Consumer, o *simOracle, pp *atomic.Pointer[Pool]) (*Pool, error) {
	n := o.sc.batchSize()
	if n == 0 {
		return StartPool(parent, c, o.handler(pp), o.sc.options(o)...)
	}
	opts := append(o.sc.options(o), WithBatchSize(n), WithBatchLinger(o.sc.batchLinger()))
	return StartBatchPool(parent, c, o.batchHandler(pp), opts...)
}

// errSimSkipped is the outcome of a FIFO message after its group's first
// failure in a batch: a batch handler that keeps a group's order stops there.
var errSimSkipped = errors.New("simulated: skipped behind its group's failure")

// batchHandler runs the single handler on each message of the batch in
// order, under the batch's context with that message's metadata, until
// that context ends. A panic
// fails that message alone (as a *PanicError, which the pool counts as a
// panic), so that the oracle's record of each run stays its outcome.
func (o *simOracle) batchHandler(pp *atomic.Pointer[Pool]) BatchHandler[simBody] {
	h := o.handler(pp)
	return func(ctx context.Context, bodies []simBody) error {
		metas, _ := MessagesFrom(ctx)
		// The stall check counts running handlers against the limit, a
		// batch per worker: a running batch, full or not, is a busy worker.
		size := o.sc.batchSize()
		o.mu.Lock()
		o.running += size
		o.mu.Unlock()
		defer func() {
			o.mu.Lock()
			o.running -= size
			o.mu.Unlock()
		}()
		errs := BatchErrors{}
		failed := map[string]bool{}
		for i := range bodies {
			gid := metas[i].GroupID
			if o.sc.fifo && failed[gid] {
				errs[i] = errSimSkipped
				continue
			}
			mctx := context.WithValue(ctx, messageKey{}, metas[i])
			var err error
			if ctx.Err() != nil {
				// Cut short: the rest of the batch ends at once, as a
				// handler that minds its context ends, so that a batch
				// outlives its deadline by one message's run at most.
				k := bodies[i].K
				r := o.runStart(mctx, k)
				err = ctx.Err()
				o.runEnded(k, r, err, false, metas[i].ReceiveCount)
			} else {
				err = callHandler(mctx, h, &bodies[i])
			}
			if err != nil {
				errs[i] = err
				failed[gid] = !errors.Is(err, ErrNoRetry)
			}
		}
		return errs
	}
}
