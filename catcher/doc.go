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
// # Statuses
//
//	202 Accepted               message in the queue; body {"messageId":"..."}
//	400 Bad Request            empty body; a character SQS does not accept;
//	                           malformed JSON (WithJSON); a bad header value;
//	                           a validator error wrapping ErrBadRequest;
//	                           SQS rejected the entry for its content
//	405 Method Not Allowed     not POST; the Allow header says POST
//	408 Request Timeout        the body did not arrive in time
//	413 Content Too Large      body over the limit (checked while reading),
//	                           or body plus attributes over 1 MiB
//	422 Unprocessable Content  the validator (WithValidate) refused the body
//	502 Bad Gateway            SQS refused the call for a reason a retry will
//	                           not fix (permissions, missing queue, KMS)
//	503 Service Unavailable    SQS throttled, failed, timed out or was
//	                           unreachable; the handler is closing; or the
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
// retries at its own pace.
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
// # Attributes
//
// Headers become String message attributes: by default traceparent (the W3C
// trace context, so that a trace crosses the queue) and X-Request-Id, as the
// attributes "traceparent" and "x-request-id". WithHeaderAttributes changes
// the mapping.
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
