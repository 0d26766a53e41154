package catcher

import (
	"sync/atomic"

	"github.com/sqspool/sqspool/internal/sendbatch"
)

// Reason says why a request was not accepted.
type Reason string

// The reasons a request is rejected, with the status it gets.
const (
	ReasonMethod      Reason = "method"      // 405
	ReasonTooLarge    Reason = "too_large"   // 413
	ReasonEmpty       Reason = "empty"       // 400
	ReasonBadRequest  Reason = "bad_request" // 400: characters, JSON, headers, validator
	ReasonReadError   Reason = "read_error"  // 400 or 408: the body could not be read
	ReasonInvalid     Reason = "invalid"     // 422: the validator refused it
	ReasonThrottled   Reason = "throttled"   // 503: SQS throttled the call or entry
	ReasonUnavailable Reason = "unavailable" // 503: SQS failed, timed out or was unreachable
	ReasonClosed      Reason = "closed"      // 503: the handler is closing
	ReasonCancelled   Reason = "cancelled"   // 503: the request ended before it was sent
	ReasonRejected    Reason = "rejected"    // 400 or 502: SQS refused the entry or call
	ReasonOverloaded  Reason = "overloaded"  // 503: waiting room or body memory full, or too late to send
	ReasonConflict    Reason = "conflict"    // 409: a FIFO deduplication id reused for another message
)

var reasons = [...]Reason{
	ReasonMethod, ReasonTooLarge, ReasonEmpty, ReasonBadRequest, ReasonReadError,
	ReasonInvalid, ReasonThrottled, ReasonUnavailable, ReasonClosed, ReasonCancelled,
	ReasonRejected, ReasonOverloaded, ReasonConflict,
}

// Stats are counters since New. They only grow.
type Stats struct {
	// Accepted counts requests answered 202.
	Accepted uint64
	// Rejected counts the other requests by reason; every reason is present.
	Rejected map[Reason]uint64
	// Calls counts SendMessageBatch calls; CallErrors those that failed as
	// a whole.
	Calls, CallErrors uint64
	// Entries counts the entries sent in those calls; EntryFailures those
	// SQS listed as failed (or did not report on).
	Entries, EntryFailures uint64
	// EntriesPerCall[n] counts the calls that carried n entries.
	EntriesPerCall [maxBatchEntries + 1]uint64
	// DroppedTraceparents counts traceparent headers that were not valid
	// W3C trace context and were left out of the message.
	DroppedTraceparents uint64
}

// CallsPer1000 returns the SendMessageBatch calls made per 1000 requests
// sent to SQS, the figure that drives the SQS bill of the catcher: 100 is
// the floor (10 entries per call), 1000 means no batching at all.
func (s Stats) CallsPer1000() float64 {
	if s.Entries == 0 {
		return 0
	}
	return float64(s.Calls) * 1000 / float64(s.Entries)
}

// counters is the lock-free side of Stats; the call counters are the
// sender's.
type counters struct {
	accepted atomic.Uint64
	rejected [len(reasons)]atomic.Uint64

	droppedTraceparents atomic.Uint64
}

func (c *counters) reject(r Reason) {
	for i, x := range reasons {
		if x == r {
			c.rejected[i].Add(1)
			return
		}
	}
	panic("catcher: unknown reason " + string(r)) // a bug: every Reason is listed
}

func (c *counters) snapshot(sent sendbatch.Stats) Stats {
	s := Stats{
		Accepted:       c.accepted.Load(),
		Rejected:       make(map[Reason]uint64, len(reasons)),
		Calls:          sent.Calls,
		CallErrors:     sent.CallErrors,
		Entries:        sent.Entries,
		EntryFailures:  sent.EntryFailures,
		EntriesPerCall: sent.EntriesPerCall,

		DroppedTraceparents: c.droppedTraceparents.Load(),
	}
	for i, r := range reasons {
		s.Rejected[r] = c.rejected[i].Load()
	}
	return s
}
