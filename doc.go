// Package sqspool consumes an Amazon SQS queue into a typed Go handler with a
// bounded pool of workers, and deletes each message only after its handler
// succeeded, with deletes sent in batches.
//
// # Model
//
//	            ReceiveMessage (long poll, asks only for free workers)
//	SQS queue ─────────────────────────────► pollers ──► dispatcher ──► workers ──► handler(ctx, *T)
//	    ▲                                                  │ dedup       │ decode      │
//	    │   DeleteMessageBatch (≤10, linger)               │ FIFO order  │ recover     │ nil: done
//	    └──────────────────────────────────────── dequeuer ◄─────────────┴─────────────┘
//	        ChangeMessageVisibilityBatch (heartbeat, retry delay, give back)
//
// Pollers (consumer.go) long-poll the queue, each asking for at most as many
// messages as there are idle workers, so that no message waits in a buffer
// while its visibility timeout runs. The dispatcher (dispatcher.go) keeps one
// in-flight record per MessageId: a second delivery of a message already in
// flight here is dropped, and its newer receipt handle is kept, because SQS
// honours only the newest (both, when equal receive counts do not tell which
// is newer). On FIFO queues it runs a message group's messages
// one at a time and in order, different groups in parallel. Workers (pool.go)
// decode the body into a T, call the handler with a context that carries the
// message's metadata (MessageFrom) and a deadline, and recover panics. The
// dequeuer (dequeuer.go) deletes finished messages in batches of up to ten,
// across all workers, and sends visibility changes the same way: heartbeats
// that keep a slow handler's message invisible, retry delays for failed
// messages, and unstarted messages given back at shutdown.
//
// StartBatchPool is the same pool for a BatchHandler: a worker gathers up to
// WithBatchSize messages across receives (WithBatchLinger bounds the wait),
// and the handler reports each one's outcome with BatchErrors; every message
// is then settled as the single-message pool settles it.
//
// # Delivery
//
// Delivery is at least once. A message is deleted only after its handler
// returned nil (or ErrNoRetry, or a malformed body under DeleteMalformed).
// Any other outcome leaves it to come back: after the retry backoff, or its
// visibility timeout, until the queue's redrive policy moves it to a
// dead-letter queue. Dedup covers deliveries that overlap inside one process;
// effects across processes and crashes are made idempotent by the sink
// (package sink: conditional writes keyed by MessageId or a producer id).
//
// # Lifecycle
//
// StartPool starts the pool; its context bounds the pool's life. Shutdown, or
// cancelling that context, stops receiving at once (the long poll in flight
// is cancelled), gives unstarted messages back to the queue, lets running
// handlers finish within a deadline, flushes pending deletes, and leaves no
// goroutine behind. Stats reports counters, SQS calls by API included.
package sqspool
