package sink

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// errLeaseEnded fails the items of an idempotent Put that were not sent
// before the Put's lease on its key ended (less the margin): another
// delivery may own the key by now, so sending them could apply the message
// twice.
var errLeaseEnded = errors.New("sink: idempotency lease ended before the write was sent")

// lease is an idempotent Put's hold on its key: the record it wrote carries
// its token and an end time; nobody takes the key over before the end, and
// the Put sends nothing after end minus the margin, which absorbs the clock
// skew between hosts and the time a request takes to reach DynamoDB.
type lease struct {
	id, token, hash string

	mu        sync.Mutex
	end       time.Time // as written in the record, measured on our clock before the write was sent
	nextRenew time.Time // when the renewer next extends it
	lost      bool      // a renewal found another token or no INPROGRESS record
	// tookOver: the key was taken from an INPROGRESS record whose lease had
	// lapsed. Set by takeKey before the lease is shared.
	tookOver bool
}

// deadline is the last moment a write may be sent under the lease; zero
// once the lease is lost.
func (l *lease) deadline(margin time.Duration) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return time.Time{}
	}
	return l.end.Add(-margin)
}

// leases is the set of leases a sink holds, renewed by one goroutine with
// one timer: renewals due at about the same time go out together.
type leases struct {
	mu    sync.Mutex
	held  map[*lease]struct{}
	armed time.Time     // when the renewer's timer fires; zero when idle
	wake  chan struct{} // tells the renewer to re-arm (capacity 1)
}

func newLeases() *leases {
	return &leases{held: map[*lease]struct{}{}, wake: make(chan struct{}, 1)}
}

// add starts renewing l. The renewer is woken only when l is due before its
// timer, which (all leases being equally long) is only when it is idle.
func (ls *leases) add(l *lease) {
	ls.mu.Lock()
	ls.held[l] = struct{}{}
	wake := ls.armed.IsZero() || l.nextRenew.Before(ls.armed)
	ls.mu.Unlock()
	if wake {
		select {
		case ls.wake <- struct{}{}:
		default:
		}
	}
}

// remove stops renewing l (its Put is over).
func (ls *leases) remove(l *lease) {
	ls.mu.Lock()
	delete(ls.held, l)
	ls.mu.Unlock()
}

// next returns the earliest renewal time and records it as armed.
func (ls *leases) next() (time.Time, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var first time.Time
	for l := range ls.held {
		l.mu.Lock()
		at, lost := l.nextRenew, l.lost
		l.mu.Unlock()
		if !lost && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	ls.armed = first
	return first, !first.IsZero()
}

// due returns the leases to renew at now: those due before now+slack, so
// that leases taken close together are renewed in one round.
func (ls *leases) due(now time.Time, slack time.Duration) []*lease {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var out []*lease
	for l := range ls.held {
		l.mu.Lock()
		if !l.lost && !l.nextRenew.After(now.Add(slack)) {
			out = append(out, l)
		}
		l.mu.Unlock()
	}
	return out
}

// renewConcurrency bounds the renewal calls of one round.
const renewConcurrency = 8

// renewLoop extends, every third of a lease, the leases of the Puts still
// running, until ctx ends (Close).
func (s *DynamoDB[T]) renewLoop(ctx context.Context) {
	defer close(s.renewDone)
	ls := s.leases
	for {
		var fire <-chan time.Time
		var stop func() bool
		if at, ok := ls.next(); ok {
			t := s.o.clock.NewTimer(max(at.Sub(s.o.clock.Now()), time.Nanosecond))
			fire, stop = t.C(), t.Stop
		}
		select {
		case <-ctx.Done():
			if stop != nil {
				stop()
			}
			return
		case <-ls.wake:
			if stop != nil {
				stop()
			}
			continue
		case <-fire:
		}
		due := ls.due(s.o.clock.Now(), s.idem.period/6)
		var wg sync.WaitGroup
		sem := make(chan struct{}, renewConcurrency)
		for _, l := range due {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				s.renew(ctx, l)
			})
		}
		wg.Wait()
	}
}

// renew extends l by a whole lease from now, on condition that the record
// is still INPROGRESS under l's token.
func (s *DynamoDB[T]) renew(ctx context.Context, l *lease) {
	cfg := s.idem.cfg
	start := s.o.clock.Now()
	end := start.Add(s.idem.period)
	// A bound on a hung call, so that it cannot hold up the next round: in
	// real time, since it only guards the call (a renewal that lands late
	// is harmless: it is conditioned on the token).
	cctx, cancel := context.WithTimeout(ctx, s.idem.period/3)
	defer cancel()
	s.st.updateItem.Add(1)
	_, err := s.client.UpdateItem(cctx, &dynamodb.UpdateItemInput{
		TableName:                &cfg.Table,
		Key:                      s.recordKey(l.id),
		UpdateExpression:         ptr("SET #ipexp = :end"),
		ConditionExpression:      ptr(ownedCondition),
		ExpressionAttributeNames: map[string]string{"#ipexp": RecordInProgressExpiryAttribute, "#token": RecordTokenAttribute, "#status": RecordStatusAttribute},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":end":        epochMillis(end),
			":token":      &types.AttributeValueMemberS{Value: l.token},
			":inprogress": &types.AttributeValueMemberS{Value: StatusInProgress},
		},
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	var lost *types.ConditionalCheckFailedException
	switch {
	case err == nil:
		s.st.renewals.Add(1)
		l.end = end
		l.nextRenew = start.Add(s.idem.period / 3)
	case errors.As(err, &lost):
		// Completed, released or taken over: either way not ours to extend.
		s.st.leasesLost.Add(1)
		l.lost = true
	default:
		// Try again soon; the deadline holds the Put's writes meanwhile.
		l.nextRenew = s.o.clock.Now().Add(s.idem.period / 12)
	}
}

// ownedCondition holds while the record is INPROGRESS under our token.
const ownedCondition = "#token = :token AND #status = :inprogress"

// boundByLeases fails the entries whose lease deadline has passed and
// returns the others with a context that ends at the earliest deadline among
// them, so that neither the call nor the SDK's own retries of it are sent
// after a lease ended. leaseCut reports, after the call, that the deadline
// (and not ctx) ended it.
func (s *DynamoDB[T]) boundByLeases(ctx context.Context, entries []*entry) (kept []*entry, callCtx context.Context, leaseCut func() bool, release func()) {
	now := s.o.clock.Now()
	var first time.Time
	kept = entries[:0:0]
	for _, e := range entries {
		if e.lease == nil {
			kept = append(kept, e)
			continue
		}
		dl := e.lease.deadline(s.idem.margin)
		if !now.Before(dl) {
			s.settle(e, errLeaseEnded)
			continue
		}
		if first.IsZero() || dl.Before(first) {
			first = dl
		}
		kept = append(kept, e)
	}
	if first.IsZero() {
		return kept, ctx, func() bool { return false }, func() {}
	}
	cctx, cancel := context.WithCancelCause(ctx)
	t := s.o.clock.AfterFunc(first.Sub(now), func() { cancel(errLeaseEnded) })
	return kept, cctx,
		func() bool { return ctx.Err() == nil && errors.Is(context.Cause(cctx), errLeaseEnded) },
		func() {
			t.Stop()
			cancel(nil)
		}
}
