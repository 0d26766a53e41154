// Package sqsfake is an in-memory Amazon SQS for tests: of sqspool, and of
// code that consumes or produces SQS messages with aws-sdk-go-v2.
//
// A *Fake has the methods of *sqs.Client with the same signatures
// (ReceiveMessage, DeleteMessage, DeleteMessageBatch, ChangeMessageVisibility,
// ChangeMessageVisibilityBatch, SendMessage, SendMessageBatch, GetQueueUrl,
// GetQueueAttributes, SetQueueAttributes, CreateQueue, DeleteQueue,
// PurgeQueue, ListQueues), so it stands in wherever code takes an interface
// that *sqs.Client satisfies, such as sqspool.Client. For code that needs a
// real *sqs.Client, Handler serves the same fake over SQS's JSON protocol:
// point the SDK at an httptest.Server with NewSDKClient.
//
// # The model
//
// The fake keeps SQS's rules where consumers get them wrong, and is strict
// where SQS is only probabilistic, so that a test fails on behaviour that
// would fail in production only sometimes:
//
//   - Every receive hands out a new receipt handle. Deleting with an older
//     handle of a message that has been received again succeeds and deletes
//     nothing (Stats.StaleDeletes counts these); deleting a message that is
//     already gone succeeds; a malformed handle is ReceiptHandleIsInvalid.
//   - Visibility timeouts, delays, long-poll waits, the FIFO deduplication
//     window and the PurgeQueue interval run on timers. In a test under
//     testing/synctest they follow the bubble's fake time: time.Sleep moves
//     them, and synctest.Wait returns once a long-poll receiver is waiting.
//   - ChangeMessageVisibility works only on an in-flight message with its
//     newest handle (MessageNotInflight otherwise; InvalidParameterValue for
//     a message already deleted), cannot take a message past 12 hours from
//     its receive, and does not carry over to the next receive.
//   - A redrive policy moves a message to its dead-letter queue when a
//     receive would exceed maxReceiveCount; it keeps its MessageId and gets
//     DeadLetterQueueSourceArn.
//   - FIFO queues deliver each message group in order, lock a group while
//     any of its messages is in flight, and deduplicate sends for five
//     minutes.
//   - Batch calls take 1 to 10 entries with distinct, well-formed ids, and
//     report failed entries in Failed with the call succeeding. Messages
//     are limited to 1 MiB (body and attributes), as is a whole
//     SendMessageBatch.
//   - Errors are the SDK's: typed errors from the types package (with the
//     ErrorCode the SDK reports for SQS, such as
//     "AWS.SimpleQueueService.NonExistentQueue") or *smithy.GenericAPIError,
//     inside a *smithy.OperationError, as *sqs.Client returns them.
//
// Short polls return every available message up to MaxNumberOfMessages;
// unlike SQS, the fake does not sample a subset of servers. Message
// retention, queue tags, permissions, KMS and message move tasks are not
// modeled.
//
// # Faults
//
// SetFaults injects latency, errors, throttling, lost replies, partial batch
// failures and duplicate deliveries per API, drawn from a random source
// seeded by WithSeed. FailNext fails the next n calls of an API, and SetHook
// runs a function before every call, which can fail or block it. Calls and
// CallCounts count the calls of each API, so a test can assert how many
// requests a consumer made.
//
// # Testing a handler
//
// Create the queues with MustCreateQueue, send with MustSend or SendMessage,
// run the code under test against the fake, and check the outcome with
// Stats (how many messages were deleted, are still in flight, went to the
// dead-letter queue) and Messages (what a queue holds).
package sqsfake
