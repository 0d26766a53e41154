// Package sink is where sqspool handlers put their results, and the
// contract that makes "delete the message only after its work is durable"
// hold end to end.
//
// # Model
//
// The pool runs a handler per message; the handler computes items and calls
// Sink.Put; the pool deletes the message only if the handler, and so the
// Put, returned nil. A Sink therefore promises (see Sink):
//
//   - Put returns nil only once every item is durable;
//   - on error it never reports as written an item that was not;
//   - it is safe for concurrent use by the pool's workers.
//
// Together with SQS's at-least-once delivery this gives at-least-once
// writes: a message whose Put failed, or whose delete was lost, comes back
// and is written again. Writes must therefore be safe to repeat; DynamoDB's
// PutItem (a whole-item replace) mostly is. Where it is not (items carrying
// a write time or a generated id, a stale redelivery overwriting a newer
// version of the item, effects counted downstream through DynamoDB
// Streams), use the idempotent mode below.
//
// Before running a handler, the pool stores the message's SQS MessageId in
// the context with WithKey; sinks read it with KeyFrom.
//
// Implementations: Memory for tests, Func to adapt a function, and DynamoDB.
//
// # DynamoDB
//
// NewDynamoDB returns a sink that groups the Puts of all workers into
// BatchWriteItem calls: at most 25 items and about 16 MB per call, sent
// when full or after a short linger (DefaultLinger), with at most
// DefaultMaxInFlight calls at once (batches grow while all are busy). A
// Put returns when its own items are written. One BatchWriteItem call per
// up to 25 items, instead of one PutItem per item, is what makes the sink
// cheap on requests; DynamoDBStats counts the calls.
//
// What DynamoDB may answer, and what the sink does:
//
//   - UnprocessedItems, throttling (ProvisionedThroughputExceededException,
//     ThrottlingException, RequestLimitExceeded) and 5xx errors: retried
//     with capped exponential backoff and full jitter until the caller's
//     context ends.
//   - The same key twice in one call (a ValidationException for the whole
//     call): avoided. The sink knows the table's key attributes
//     (WithKeyAttributes, default DefaultHashKey "pk") and moves the later
//     write of a key to the next call, so the last writer wins.
//   - A ValidationException for the call: the sink retries its items one by
//     one with PutItem, so only the invalid items fail, reported as a
//     *WriteError of *ItemError.
//   - An item over 400 KB: that Put fails with ErrItemTooLarge before
//     anything is sent.
//
// # Idempotent mode
//
// WithIdempotency turns a repeated Put under the same idempotency key, within
// an expiry window, into a no-op, following AWS Lambda Powertools'
// idempotency utility (with the limits listed below). The key is KeyFrom(ctx), the SQS MessageId, unless
// IdempotencyConfig.KeyFunc derives one, for example from an id the
// producer assigned. A Put then:
//
//  1. takes the key with a conditional PutItem of an INPROGRESS record in
//     the idempotency table. The condition admits no record, an expired
//     record, or an INPROGRESS record whose in-progress expiry passed. If
//     the key is held: a COMPLETE record means the items were written
//     before, and Put returns nil without writing (DuplicatesSkipped); an
//     INPROGRESS record means another write is running, and Put returns
//     ErrInProgress (leave the message for redelivery); with PayloadHash, a
//     record made from other items fails with *PayloadMismatchError.
//  2. writes the items as above (batched with other Puts);
//  3. marks the record COMPLETE with UpdateItem. If the write failed, it
//     deletes the record instead, so that a retry can run.
//
// That costs two calls per Put (three when the write fails) on top of the
// batched writes.
//
// Record layout (one item per key in IdempotencyConfig.Table, whose
// partition key is a string attribute, DefaultIdempotencyKeyAttribute "id"):
//
//	id                      S  "<prefix>#<key>", prefix defaulting to the sink's table name
//	status                  S  "INPROGRESS" or "COMPLETE"
//	expiration              N  epoch seconds; the record no longer counts after it
//	in_progress_expiration  N  epoch milliseconds; an INPROGRESS record may be taken over after it
//	validation              S  hex SHA-256 of the items, with PayloadHash only
//
// The sink compares expiration with its own clock, because DynamoDB's TTL
// deletes expired items up to 48 hours late; enabling TTL on "expiration" is
// still worth it to keep the table small. The sink uses neither
// TransactWriteItems nor UpdateTimeToLive, which some emulators lack.
//
// What idempotent mode covers:
//
//   - a redelivery of a message whose items were written, to this or to
//     another process: after a failed or lost delete, a visibility timeout
//     that expired during a slow handler, or a crash after the write and
//     before the delete;
//   - a concurrent duplicate (two receives of one message at once): one
//     takes the key, the other gets ErrInProgress and is retried after its
//     visibility timeout, by when the key is COMPLETE;
//   - with a producer-assigned key, the same event sent twice.
//
// What it cannot cover:
//
//   - a crash (or a lost UpdateItem) between the item write and the
//     COMPLETE update leaves the record INPROGRESS: redeliveries get
//     ErrInProgress until InProgressExpiry passes, and then the write runs
//     again. InProgressExpiry trades how long such a key stays blocked
//     against the risk of taking over a write that is merely slow.
//   - anything older than Expiry: after it, a redelivery writes again.
//   - effects outside DynamoDB, or outside this Put: only the sink's
//     writes are guarded, not what the handler did before calling Put.
//   - two different Puts under one key: the second is taken for a repeat
//     of the first (and, with PayloadHash, rejected). Give each Put of a
//     message its own key, or use one Put per message.
//   - the items themselves are not written atomically with the record; a
//     reader may see them before the record is COMPLETE.
package sink
