// Package catcher is the front half of sqspool: a net/http handler that
// accepts work requests and enqueues each one as an SQS message.
//
// # Model
//
// Every POST body becomes one message. Concurrent requests are gathered into
// SendMessageBatch calls: a batch goes out when it holds 10 entries (the SQS
// limit), when the next message would take its payload past 1 MiB (the SQS
// limit for a whole call), or when its first request has waited the linger
// (5 ms by default, WithLinger). At most 16 calls (WithMaxInFlight) run at once;
// while they are all busy new requests keep filling the next batch, so
// batches grow with load and the number of SQS requests per message falls.
//
// A request is answered only once SQS has answered for its own entry:
//
//   - 202 Accepted with {"messageId":"..."}: the message is in the queue.
//   - Every other status means this request's message was not accepted, and
//     carries {"error":"..."}. A failed entry fails only its own request;
//     the other requests of the same call are answered on their own results.
//
// Nothing is half-sent: the body is read completely (and never past the
// limit), checked, and turned into an entry before it joins a batch, so a
// rejected request never reaches SQS. A request whose client has gone away
// (its context is done) before its batch is sent is dropped from the batch.
//
// New reads the queue's attributes once (GetQueueAttributes): whether it is
// a FIFO queue, how it deduplicates, and its MaximumMessageSize, against
// which body plus attributes are held (413), so that a queue with a limit
// below 1 MiB does not turn a large body into an SQS error.
//
// # Overload and hostile clients
//
// Memory follows what clients send, not what they announce. A body is read
// into pooled chunks that grow with the bytes that arrived (4 KiB up to
// 64 KiB each), never into a buffer sized by Content-Length, so a client
// that declares 1 MiB and sends nothing costs no body memory. All bodies in
// progress share one budget (WithMaxBodyMemory, 64 MiB): a request that
// would take it past gets 503. Serve and NewServer bound the open
// connections (WithMaxConnections) besides the timeouts.
//
// Admission is bounded. At most WithMaxWaiting messages wait for a free
// SendMessageBatch call; a request beyond that gets 503 with Retry-After at
// once, before its body is read. And a message is never handed to SQS when
// its answer could no longer be written in time: the handler takes the
// server's WriteTimeout (from the end of the request headers) as the
// request's deadline, and sends a message only while the whole send
// timeout still fits before it. A message still waiting at that point is
// taken back and answered 503. So under overload the number of messages
// stored equals the number of 202s (short of a connection that breaks
// after SQS stored the message, which no server can answer through).
//
// # Statuses
//
//	202 Accepted               message in the queue; body {"messageId":"..."}
//	400 Bad Request            empty body; a character SQS does not accept;
//	                           malformed JSON (WithJSON); a bad header value
//	                           or one over WithMaxAttributeBytes; a FIFO
//	                           request without group id, or without dedup id
//	                           on a queue without content-based dedup; a
//	                           validator error wrapping ErrBadRequest;
//	                           SQS rejected the entry for its content
//	405 Method Not Allowed     not POST; the Allow header says POST
//	408 Request Timeout        the body did not arrive in time
//	409 Conflict               FIFO: the deduplication id stands for another
//	                           message (see FIFO queues)
//	413 Content Too Large      body over the limit (checked while reading),
//	                           or body plus attributes over the queue's
//	                           MaximumMessageSize
//	422 Unprocessable Content  the validator (WithValidate) refused the body
//	502 Bad Gateway            SQS refused the call for a reason a retry will
//	                           not fix (permissions, missing queue, KMS)
//	503 Service Unavailable    SQS throttled, failed, timed out or was
//	                           unreachable; the waiting room or the body
//	                           budget is full; the message could not be sent
//	                           in time; the handler is closing; or the
//	                           request was cancelled before it was sent.
//	                           Always with Retry-After.
//
// # Delivery guarantee
//
// The guarantee is at least once. A 2xx is only ever given for a message SQS
// reported as stored. The reverse does not hold: when a call times out or the
// connection breaks after SQS stored the message, the request gets a 503 and
// a client that retries creates a duplicate. Give requests an idempotency key
// (for FIFO queues, the deduplication id) when duplicates matter.
//
// Retries of whole calls are the SDK's business (its retryer runs inside
// SendMessageBatch, bounded by WithSendTimeout); the handler does not retry
// failed entries itself but answers 503 with Retry-After so that the client
// retries at its own pace. The batching is the engine of sqspool.Producer,
// which does retry transient entry failures: it has no client to hand them to.
//
// # FIFO queues
//
// For a queue whose URL ends in ".fifo" the MessageGroupId and
// MessageDeduplicationId come from the X-Message-Group-Id and
// X-Deduplication-Id headers unless WithFIFOHeaders or WithFIFOFunc says
// otherwise; a request without a group id gets 400. Requests that run
// concurrently have no order between them, and neither do their messages;
// a client that waits for each 202 before sending the next one gets its
// messages in order.
//
// SQS answers a send whose deduplication id it saw in the last 5 minutes
// with the MessageId of the first message, whatever the body: passing a
// client's id through would let a 202 name another request's message. So
// the id sent to SQS is a SHA-256 of the namespace, the client's id, the
// group and the body (consumers see that hash as MessageDeduplicationId):
//
//   - A true repeat (same id, group and body) is deduplicated by SQS and
//     answered 202 with the first message's id: the retry of a request
//     whose answer was lost is safe.
//   - The same id with another body or group is answered 409 Conflict and
//     not sent, while a request with the id is in progress or for 5
//     minutes after one was stored. The handler remembers the last 50,000
//     ids for this; past that, or between two catcher processes, such a
//     request is stored as a message of its own and answered 202 with its
//     own id: never with another request's.
//   - Without a client id on a queue with ContentBasedDeduplication, the
//     hash of group and body is the id, so equal bodies in different
//     groups are different messages.
//
// Clients of different tenants may pick the same ids: WithDedupNamespace
// gives each request a namespace (for instance its tenant, from
// authentication), so that ids of one namespace never deduplicate or
// conflict with those of another.
//
// # Attributes
//
// Headers become String message attributes: by default traceparent (the W3C
// trace context, so that a trace crosses the queue) and X-Request-Id, as the
// attributes "traceparent" and "x-request-id". WithHeaderAttributes changes
// the mapping. Clients are not trusted with them: a traceparent that is not
// valid W3C trace context is dropped, as the W3C spec tells a receiver to
// do, and the request goes on without it (Stats.DroppedTraceparents counts
// these); a header value longer than WithMaxAttributeBytes (256 bytes) gets
// 400.
//
// # Stats
//
// Handler.Stats counts accepted requests, rejected requests by Reason, and
// SendMessageBatch calls with the entries they carried. CallsPer1000 is the
// figure that drives the SQS bill: 100 calls per 1000 requests is the floor.
//
// # Serving
//
// NewServer returns an *http.Server with read, write and idle timeouts set;
// Serve runs one until its context ends and then shuts down gracefully: it
// stops accepting, waits for the requests in progress, and closes the
// Handler, which flushes what is pending and leaves no goroutine behind.
package catcher
