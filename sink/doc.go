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
// when full or after a short linger (DefaultLinger), or sooner when every
// caller is already waiting on the sink and full batches paid for a partial
// one (batches stay 90 % full on average), with at most
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
//   - A ValidationException, or an ItemCollectionSizeLimitExceededException,
//     for the whole call (one item can cause either): the sink retries its
//     items one by one with PutItem, so only the items at fault fail,
//     reported as a *WriteError of *ItemError.
//   - UnprocessedItems are matched to the items sent by table and primary
//     key; if one matches nothing, no item of the call is taken as written
//     and all are sent again.
//   - An item over 400 KB: that Put fails with ErrItemTooLarge before
//     anything is sent.
//
// # Idempotent mode
//
// WithIdempotency turns a repeated Put under the same idempotency key, within
// an expiry window, into a no-op, after AWS Lambda Powertools' idempotency
// utility, with a lease in the manner of the DynamoDB Lock Client. The key
// is KeyFrom(ctx), the SQS MessageId, unless the item type implements
// IdempotencyKeyer, for example with an id the producer assigned (which also
// covers the producer sending an event twice, and a redrive from the
// dead-letter queue, which gets a new MessageId). A Put then:
//
//  1. takes the key with a conditional PutItem of an INPROGRESS record
//     holding a random token and the end of its lease (Lease from now, on
//     the sink's clock, read before the request is sent). The condition
//     admits no record, an expired record, or an INPROGRESS record whose
//     lease ended. If the key is held: a COMPLETE record means the items
//     were written before, and Put returns nil without writing
//     (DuplicatesSkipped), so the pool deletes the message; an INPROGRESS
//     record means another Put holds it: Put waits until that lease can
//     have lapsed, trying the key every quarter of Lease, if its context's
//     deadline leaves room and MaxWait allows (InProgressWaited), so that
//     the redelivery of a message whose consumer died mid-Put takes the
//     key over without spending a receive; otherwise, or if the key is
//     still held then, it returns ErrInProgress wrapped in a
//     sqspool.RetryAfter whose delay lasts until that lease can have
//     lapsed, so the message comes back then rather than spending a
//     receive at once; with PayloadHash, a record made from other items
//     fails with *PayloadMismatchError.
//  2. writes the items as above (batched with other Puts). While the Put
//     runs, one renewer per sink extends its lease every third of Lease
//     (an UpdateItem conditioned on the token, for the Puts that take that
//     long). No BatchWriteItem or PutItem carrying the Put's items is sent
//     after the lease's end minus a quarter of Lease (the margin for clock
//     skew between hosts and for requests in transit): each call's context
//     ends there, so neither the sink's retries nor the SDK's go out later.
//  3. once the items are durable, marks the record COMPLETE: the whole
//     record, put through the batcher with other Puts' writes, while the
//     lease is held (the same deadline applies), so it costs a share of a
//     BatchWriteItem and not a call of its own. If that fails, an UpdateItem
//     conditioned on the token tries once more; if that fails too, Put
//     still returns nil (the items are durable: the Sink contract) and
//     counts it in CompletesFailed. If the write failed, it deletes the
//     record instead, conditioned on the token, so that a retry can run.
//
// At load that is one conditional PutItem per Put and a share of two
// BatchWriteItem calls (about 1,090 calls per 1,000 single-item Puts in
// sqsbench's scenario 7), against two calls per Put (Powertools) or more.
//
// Record layout (one item per key in IdempotencyConfig.Table, whose
// partition key is a string attribute, DefaultIdempotencyKeyAttribute "id",
// with no sort key):
//
//	id                      S  "<prefix>#<key>", prefix defaulting to the sink's table name
//	status                  S  "INPROGRESS" or "COMPLETE"
//	expiration              N  epoch seconds; the record no longer counts after it
//	in_progress_expiration  N  epoch milliseconds; the lease's end: an INPROGRESS record may be taken over after it
//	lease_token             S  the token of the Put that took the key
//	validation              S  hex SHA-256 of the items, with PayloadHash only
//
// The sink compares expiration with its own clock, because DynamoDB's TTL
// deletes expired items up to 48 hours late; enabling TTL on "expiration" is
// still worth it to keep the table small. The sink uses neither
// TransactWriteItems nor UpdateTimeToLive, which some emulators lack.
//
// What idempotent mode guarantees, for writes made through the sink and
// within Expiry after completion:
//
//   - one writer per key at a time: a Put sends nothing after its lease's
//     end minus the margin, and renews, completes or releases the record
//     only under its own token, so a stale writer (paused, partitioned,
//     slow) neither lands after another Put took the key over nor deletes
//     or completes that Put's record; this holds as long as the hosts'
//     clocks differ by less than the margin less the time a request takes
//     to reach DynamoDB;
//   - a redelivery of a message whose Put completed, to this or to another
//     process (after a lost delete, a visibility timeout that expired
//     during a slow handler, a crash after the write), writes nothing;
//   - a concurrent duplicate finds the key held and comes back after the
//     holder's lease, by when the key is COMPLETE (or free, if the holder
//     died);
//   - a key whose writer died is free a lease after its last renewal.
//
// What it cannot cover:
//
//   - items that landed without their record becoming COMPLETE (a crash
//     between the two, or CompletesFailed): the record stays INPROGRESS
//     until its lease lapses. The Put that then takes the key over reads
//     the items first, and writes nothing if the table holds them exactly
//     as it would write them (TakeoverWritesSkipped: a deterministic
//     handler is covered); items that differ (a handler whose output
//     changes between deliveries) it writes again. The same goes for a
//     write whose answer was lost when its lease ended (reported failed; it
//     may have landed).
//   - anything older than Expiry: after it, a redelivery writes again.
//   - effects outside DynamoDB, or outside this Put: only the sink's
//     writes are guarded, not what the handler did before calling Put.
//   - two different Puts under one key: the second is taken for a repeat
//     of the first (and, with PayloadHash, rejected). Give each Put of a
//     message its own key, or use one Put per message.
//   - the items themselves are not written atomically with the record; a
//     reader may see them before the record is COMPLETE.
package sink
