// Package lambdasqspool runs a sqspool handler in AWS Lambda, behind an SQS
// event source mapping, with the same decoding and the same outcomes as in
// a sqspool pool:
//
//	h, err := lambdasqspool.New(handleOrder, sqs.NewFromConfig(cfg), sqspool.WithSNSEnvelope())
//	...
//	lambda.Start(h)
//
// The handler returns the records to retry as BatchItemFailures, so the
// event source mapping must have FunctionResponseTypes
// ReportBatchItemFailures: without it Lambda reads the response as a
// success and deletes every record of the batch.
//
// Per record, as in a pool: the body is SNS-unwrapped if WithSNSEnvelope is
// set and decoded (by T's DecodeBody if *T is a sqspool.BodyDecoder, else
// as JSON, or the raw body for string and []byte); a body that does not decode never reaches the handler and is
// reported as a failure (LeaveMalformed, the default: it reaches the
// dead-letter queue through the redrive policy) or as a success, so that it
// is deleted (DeleteMalformed). sqspool.MessageFrom gives the handler the
// message's metadata. A nil result, or an error marked with
// sqspool.NoRetry, is reported as a success; any other error, or a panic
// (recovered), as a failure. sqspool.RetryAfter sets the record's
// visibility timeout to its delay before it is reported. The ErrorHook
// hears of every failure, and an Observer (sqspool.WithObserver) of every
// record: with otelsqspool.New(), each record gets a consumer span that
// continues the producer's trace, read from the record's traceparent
// message attribute or its AWSTraceHeader. The Observer hears Received and
// Start for each record and Call for each ChangeMessageVisibility, never
// Deleted: the event source mapping deletes, after the function returned.
//
// The records of a standard queue run up to WithWorkers (default 10) at
// once, on goroutines that end before the handler returns. Those of a FIFO
// queue (the event source ARN ends in .fifo) run one at a time, in the
// event's order, and the first failure ends the invocation: that record and
// every later one are reported, as Lambda requires for FIFO queues, so that
// no later message of a group is done before an earlier one.
//
// The handlers' context ends a tenth of the invocation's time (at most a
// second) before the invocation's deadline, so that the function always
// answers: a function stopped at its deadline answers nothing, and Lambda
// retries the whole batch, successes included. Records not started by then
// are reported without running.
//
// NewBatch does the same for a sqspool.BatchHandler: the event's records go
// to it in batches of up to WithBatchSize, each record through the same
// steps (a malformed one never enters a batch), and its BatchErrors
// reports each message's outcome. The FIFO rule holds across batches: they
// run one at a time, and the first failure reports every later record,
// also those of its batch that succeeded.
//
// Not done here, since the event source mapping does it or Lambda cannot:
// dedup of duplicate deliveries, the visibility heartbeat (set the queue's
// visibility timeout to at least six times the function's timeout, as
// Lambda advises), retry backoff (WithRetryBackoff: a failure comes back
// after the visibility timeout unless RetryAfter), the circuit breaker.
package lambdasqspool
