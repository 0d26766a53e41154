package sqspool

import (
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/sqspool/sqspool/sqsfake"
)

// check runs the end-of-run invariants, after Wait returned.
func (o *simOracle) check(p *Pool, fake *sqsfake.Fake, url string, final error) {
	stored := map[string]bool{}
	for _, m := range fake.Messages(url) {
		stored[m.MessageID] = true
	}
	o.mu.Lock()
	defer o.mu.Unlock()

	for _, s := range o.shutdowns {
		if took := s.end.Sub(s.start); took > s.bound {
			o.violate(invShutdownHang, s.who, "%s took %v, more than its bound %v", s.who, took, s.bound)
		}
	}

	lostAtStop := 0
	for _, m := range o.byK {
		key := strconv.Itoa(m.k)
		if m.id != "" && stored[m.id] == m.deleted {
			o.violate("simulator", key, "message %d: the oracle says deleted=%v, the fake disagrees", m.k, m.deleted)
		}
		// A delete with a stale handle that SQS accepted silently, or
		// refused, before the newer delivery reached the pool: the pool
		// could not know better, and the message comes back.
		unknowable := slices.ContainsFunc(m.stale, func(s simStaleReply) bool { return !s.at.Before(m.lastDone) && !s.knownNewer })
		if m.doneEver && !m.deleted && !unknowable {
			var last *simReportRec
			for i := range m.reports {
				if r := &m.reports[i]; !r.at.Before(m.lastDone) && r.api == "DeleteMessageBatch" {
					last = r
				}
			}
			switch {
			case last == nil:
				o.violate(invUnreported, key, "message %d finished at %v, is not deleted, and no failure of its delete was reported", m.k, m.lastDone.Sub(o.t0))
				lostAtStop++
			case !o.stopBegun.IsZero() && last.at.After(o.stopBegun):
				// A failure in the instant Shutdown was called may have
				// come before the stop began, and been only reported
				// (seed 317306): the order within one instant is the
				// scheduler's.
				lostAtStop++
			}
		}
		o.checkLastChange(m)
	}
	var se *ShutdownError
	if lostAtStop > 0 && !errors.As(final, &se) {
		o.violate(invShutdownNil, "", "%d finished messages were not deleted at the stop, and Wait returned %v", lostAtStop, final)
	}
	o.checkStats(p.Stats(), fake.Stats(url))
}

// checkLastChange: after a run that asked for a delay, the last visibility
// change SQS applied before the message came back is that delay.
func (o *simOracle) checkLastChange(m *simMsgState) {
	for i, r := range m.runs {
		if !r.ended || !r.asksDelay || r.cappedByHorizon {
			continue
		}
		until := time.Time{}
		for _, d := range m.deliveries {
			if d.at.After(r.end) {
				until = d.at
				break
			}
		}
		// A FIFO retry in place: the next run of the same delivery ends
		// what this outcome asked for (the pool kept the delay itself).
		if i+1 < len(m.runs) && (until.IsZero() || m.runs[i+1].start.Before(until)) {
			until = m.runs[i+1].start
		}
		want := int32((r.wantDelay + time.Second - 1) / time.Second)
		// fits: the change brings the message back when the outcome asked,
		// give or take the rounding up to whole seconds. A stop that cuts a
		// retry in place short sends what is left of its delay.
		fits := func(c *simChangeRec) bool {
			back := c.sent.Add(time.Duration(c.timeout) * time.Second)
			return !c.sent.Before(r.end) && c.timeout <= want && !back.Before(r.end.Add(r.wantDelay))
		}
		var last *simChangeRec
		asked := false // the change the outcome asked for took effect
		for i := range m.changes {
			c := &m.changes[i]
			if c.applied.After(r.end) && (until.IsZero() || c.applied.Before(until)) {
				last = c
				asked = asked || fits(c)
			}
		}
		// If the asked-for change never took effect (its every attempt
		// failed, and that was reported), nothing can be required of the
		// last one.
		if asked && !fits(last) {
			o.violate(invRetryOverridden, strconv.Itoa(m.k), "message %d run %d asked to come back after %v (%ds); the last visibility change applied was %ds, sent at %v, applied at %v",
				m.k, r.idx, r.wantDelay, want, last.timeout, last.sent.Sub(o.t0), last.applied.Sub(o.t0))
		}
	}
}

func (o *simOracle) checkStats(s Stats, f sqsfake.Stats) {
	mismatch := func(what string, got, want int64) {
		if got != want {
			o.violate(invStats, what, "Stats.%s is %d, the run saw %d", what, got, want)
		}
	}
	for _, op := range []string{sqsfake.OpReceiveMessage, sqsfake.OpDeleteMessageBatch, sqsfake.OpChangeMessageVisibilityBatch, sqsfake.OpGetQueueUrl, sqsfake.OpGetQueueAttributes} {
		mismatch("Calls["+op+"]", s.Calls[op], int64(o.calls[op]))
	}
	mismatch("Received", s.Received, int64(o.returnedCount))
	mismatch("Processed", s.Processed, int64(o.handlerOK))
	mismatch("Failed", s.Failed, int64(o.handlerFailed))
	mismatch("Panics", s.Panics, int64(o.handlerPanics))
	mismatch("DecodeErrors", s.DecodeErrors, int64(o.decodeFailures))
	mismatch("Dropped", s.Dropped, int64(o.noRetries))
	if s.Retried < int64(o.retried) || s.Retried > int64(o.retried+o.maybeRetried) {
		o.violate(invStats, "Retried", "Stats.Retried is %d, the run saw %d (and %d more a FIFO pool may retry in place)", s.Retried, o.retried, o.maybeRetried)
	}
	mismatch("InFlight", s.InFlight, 0)
	if s.Deleted > int64(o.deleteOK) {
		o.violate(invStats, "Deleted", "Stats.Deleted is %d, but SQS confirmed only %d delete entries", s.Deleted, o.deleteOK)
	}
	// The fake's own counts: every delivery the pool counts is one the
	// fake made, and every delete it counts one the fake accepted.
	if s.Received > f.Received {
		o.violate(invStats, "fake-Received", "Stats.Received is %d, the fake delivered %d", s.Received, f.Received)
	}
	if accepted := f.Deleted + f.StaleDeletes + f.RedundantDeletes; s.Deleted > accepted {
		o.violate(invStats, "fake-Deleted", "Stats.Deleted is %d, the fake accepted %d deletes", s.Deleted, accepted)
	}
	if s.Duplicates > s.Received {
		o.violate(invStats, "Duplicates", "Stats.Duplicates is %d, more than Received %d", s.Duplicates, s.Received)
	}
}
