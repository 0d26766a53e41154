package sqspool

import "sync/atomic"

// Stats is a snapshot of a pool's counters since it started.
type Stats struct {
	Received     int64 // messages received, duplicates included
	Processed    int64 // handler returned nil
	Failed       int64 // handler returned an error or panicked
	Panics       int64 // of Failed, how many panicked
	DecodeErrors int64 // bodies the decoder rejected
	Duplicates   int64 // deliveries dropped: the message was in flight here, or the delivery is older than one already handled
	Deleted      int64 // messages SQS confirmed deleted
	DeleteErrors int64 // deletes that failed for good (the message comes back)
	Returned     int64 // messages given back unstarted (shutdown, FIFO holds)
	Retried      int64 // failed messages whose retry delay was set
	Dropped      int64 // failed messages deleted because the handler said ErrNoRetry
	Extended     int64 // visibility extensions made by the heartbeat
	InFlight     int64 // received and not yet finished, now
	// ConcurrencyLimit is how many messages may be held at once now: the
	// worker count, or the live limit under WithAdaptiveConcurrency.
	ConcurrencyLimit int64
	// ReadAhead is how many messages may be held beyond ConcurrencyLimit
	// now, so that receives overlap handling (about one receive latency of
	// work, at most one receive per poller running plus one).
	ReadAhead int64
	// Pollers is how many long polls run now: one on an idle queue, more
	// while receives come back full and workers wait (see WithPollers).
	Pollers int64
	// Breaker is the circuit breaker's state; BreakerOpens counts openings.
	Breaker      BreakerState
	BreakerOpens int64
	// EmptyReceives counts long polls that returned no message.
	EmptyReceives int64
	// Calls counts SQS requests by API name; CallErrors the failed ones.
	Calls      map[string]int64
	CallErrors map[string]int64
}

// Requests is the total number of SQS requests made.
func (s Stats) Requests() int64 {
	var n int64
	for _, c := range s.Calls {
		n += c
	}
	return n
}

type api int

const (
	apiReceiveMessage api = iota
	apiDeleteMessageBatch
	apiChangeMessageVisibilityBatch
	apiGetQueueURL
	apiGetQueueAttributes
	numAPIs
)

var apiNames = [numAPIs]string{
	"ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch", "GetQueueUrl", "GetQueueAttributes",
}

func (a api) String() string { return apiNames[a] }

type apiCounters struct {
	calls, errors [numAPIs]atomic.Int64
	emptyReceives atomic.Int64
}

func (c *apiCounters) add(a api)  { c.calls[a].Add(1) }
func (c *apiCounters) fail(a api) { c.errors[a].Add(1) }
func (c *apiCounters) empty()     { c.emptyReceives.Add(1) }

type counters struct {
	received, processed, failed, panics, decodeErrors, duplicates atomic.Int64
	deleted, deleteErrors, returned, retried, dropped, extended   atomic.Int64
	held                                                          atomic.Int64 // messages holding a slot
	api                                                           apiCounters
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Received:      c.received.Load(),
		Processed:     c.processed.Load(),
		Failed:        c.failed.Load(),
		Panics:        c.panics.Load(),
		DecodeErrors:  c.decodeErrors.Load(),
		Duplicates:    c.duplicates.Load(),
		Deleted:       c.deleted.Load(),
		DeleteErrors:  c.deleteErrors.Load(),
		Returned:      c.returned.Load(),
		Retried:       c.retried.Load(),
		Dropped:       c.dropped.Load(),
		Extended:      c.extended.Load(),
		InFlight:      c.held.Load(),
		EmptyReceives: c.api.emptyReceives.Load(),
		Calls:         make(map[string]int64, numAPIs),
		CallErrors:    make(map[string]int64, numAPIs),
	}
	for a := range numAPIs {
		if n := c.api.calls[a].Load(); n > 0 {
			s.Calls[a.String()] = n
		}
		if n := c.api.errors[a].Load(); n > 0 {
			s.CallErrors[a.String()] = n
		}
	}
	return s
}
