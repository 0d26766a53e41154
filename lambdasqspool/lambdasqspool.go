package lambdasqspool

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/internal/share"
)

// Client is the SQS call the adapter makes: *sqs.Client implements it.
type Client interface {
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// Handler is a Lambda handler for an SQS event source mapping with
// ReportBatchItemFailures: lambda.Start takes it.
type Handler func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error)

// New turns h, the handler a sqspool pool runs, into a Lambda SQS handler.
// Each record goes through the pool's steps, and the response lists in
// BatchItemFailures the records that must come back; the event source
// mapping deletes the others.
//
// opts are the pool's options. These apply: WithSNSEnvelope,
// WithDecodeFailure, WithErrorHook, WithLogger, WithObserver, and
// WithWorkers (default 10), how many records of a standard queue's
// event run at once. The others concern receiving and deleting, which the
// event source mapping does, and are ignored. New returns the error
// StartPool would for invalid options. Bodies are decoded as the pool
// decodes them (a T that implements sqspool.BodyDecoder decodes itself).
//
// client makes RetryAfter's delay: the record's visibility timeout is set
// to it before the record is reported as failed. With a nil client, or if
// the call fails (the error hook hears of it), the record comes back after
// the queue's visibility timeout, as every other failure does.
func New[T any](h sqspool.Handler[T], client Client, opts ...sqspool.Option) (Handler, error) {
	s, err := configure("New", h == nil, opts, false)
	if err != nil {
		return nil, err
	}
	run := func(ctx context.Context, recs []events.SQSMessage, done []bool) {
		v := new(T)
		d := delivery(&recs[0], client)
		d.Decode = func(body string) error { return s.DefaultDecode(body, v) }
		d.Handle = func(ctx context.Context) error { return h(ctx, v) }
		done[0] = s.Process(ctx, d).Done
	}
	return serve(s.Workers, 1, run), nil
}

// NewBatch turns h, the handler a sqspool batch pool runs, into a Lambda SQS
// handler. The records of an event go to h in batches of up to
// WithBatchSize (default 10), in the event's order; each record goes
// through the pool's steps, so a malformed one never enters a batch, and h
// reports each message's outcome with a BatchErrors (RetryAfter and NoRetry
// apply per message) or fails them all with any other error or a panic.
// MessagesFrom(ctx) gives the messages' metadata.
//
// On a standard queue up to WithWorkers batches run at once. On a FIFO
// queue they run one after another, and the first failure ends the
// invocation: that record and every later one are reported, also those of
// its batch that succeeded. opts and client are as for New.
func NewBatch[T any](h sqspool.BatchHandler[T], client Client, opts ...sqspool.Option) (Handler, error) {
	s, err := configure("NewBatch", h == nil, opts, true)
	if err != nil {
		return nil, err
	}
	run := func(ctx context.Context, recs []events.SQSMessage, done []bool) {
		vals := make([]T, len(recs))
		ds := make([]share.Delivery, len(recs))
		for i := range recs {
			ds[i] = delivery(&recs[i], client)
			ds[i].Decode = func(body string) error { return s.DefaultDecode(body, &vals[i]) }
		}
		handle := func(ctx context.Context, ran []int) error {
			msgs := make([]T, len(ran))
			for k, i := range ran {
				msgs[k] = vals[i]
			}
			return h(ctx, msgs)
		}
		for i, o := range s.ProcessBatch(ctx, ds, isFIFO(recs[0].EventSourceARN), handle) {
			done[i] = o.Done
		}
	}
	return serve(s.Workers, s.BatchSize, run), nil
}

// configure checks the arguments of the constructor named fn: a handler
// (missing if nil) and the pool's options, as StartPool or, if batch,
// StartBatchPool checks them.
func configure(fn string, missing bool, opts []sqspool.Option, batch bool) (share.Settings, error) {
	if missing {
		return share.Settings{}, fmt.Errorf("lambdasqspool: %s needs a handler", fn)
	}
	s, err := share.Configure(opts, batch)
	if err != nil {
		return share.Settings{}, fmt.Errorf("lambdasqspool: %w", err)
	}
	return s, nil
}

// delivery is rec for the pool's steps, its RetryAfter delay set through
// client if there is one.
func delivery(rec *events.SQSMessage, client Client) share.Delivery {
	d := share.Delivery{Message: message(rec), QueueURL: queueURL(rec.EventSourceARN)}
	if client != nil {
		d.SetVisibility = func(ctx context.Context, delay time.Duration) error {
			_, err := client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
				QueueUrl:          aws.String(d.QueueURL),
				ReceiptHandle:     aws.String(rec.ReceiptHandle),
				VisibilityTimeout: visibilitySeconds(delay),
			})
			return err
		}
	}
	return d
}

// runFunc runs recs, a batch of an event's records, and sets done[i] for
// each record done with.
type runFunc func(ctx context.Context, recs []events.SQSMessage, done []bool)

// serve is the Lambda handler that runs each event's records in batches of
// up to size, up to workers batches at once.
func serve(workers, size int, run runFunc) Handler {
	return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		ctx, cancel := answerInTime(ctx)
		defer cancel()
		return handleEvent(ctx, ev, workers, size, run), nil
	}
}

// maxAnswerMargin bounds the time kept back from the handlers, at the end of
// an invocation, for the function to answer.
const maxAnswerMargin = time.Second

// answerInTime ends ctx a tenth of the invocation's time (at most
// maxAnswerMargin) before the invocation's deadline. A function still
// running at its deadline is stopped with no answer, and Lambda then retries
// the whole batch, successes included; ended this early, the handlers'
// contexts leave time to report what did and did not succeed.
func answerInTime(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return ctx, func() {}
	}
	margin := min(time.Until(deadline)/10, maxAnswerMargin)
	return context.WithDeadline(ctx, deadline.Add(-margin))
}

// handleEvent runs the records of ev in batches of up to size and lists
// those to retry. On a standard queue up to workers batches run at once. On
// a FIFO queue they run one after another, in the event's order, and the
// first failure ends the invocation: that record and every later one are
// reported, so that no later message of a group is done before an earlier
// one (SQS gives them back in order). Batches not yet started when ctx ends
// are reported without running.
func handleEvent(ctx context.Context, ev events.SQSEvent, workers, size int, run runFunc) events.SQSEventResponse {
	recs := ev.Records
	done := make([]bool, len(recs)) // done[i]: record i may be deleted
	if len(recs) > 0 && isFIFO(recs[0].EventSourceARN) {
		for lo := 0; lo < len(recs) && ctx.Err() == nil; lo += size {
			hi := min(lo+size, len(recs))
			run(ctx, recs[lo:hi], done[lo:hi])
			if failed := slices.Index(done[lo:hi], false); failed >= 0 {
				clear(done[lo+failed:]) // its batch's later successes come back too
				break
			}
		}
	} else {
		runAll(ctx, recs, done, workers, size, run)
	}
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	for i := range recs {
		if !done[i] {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: recs[i].MessageId})
		}
	}
	return resp
}

// runAll runs every batch of up to size records, up to workers batches at
// once, on goroutines it waits for.
func runAll(ctx context.Context, recs []events.SQSMessage, done []bool, workers, size int, run runFunc) {
	batches := (len(recs) + size - 1) / size
	var next atomic.Int64
	take := func() {
		for b := int(next.Add(1) - 1); b < batches && ctx.Err() == nil; b = int(next.Add(1) - 1) {
			lo, hi := b*size, min((b+1)*size, len(recs))
			run(ctx, recs[lo:hi], done[lo:hi]) // each batch is taken once
		}
	}
	var wg sync.WaitGroup
	for range min(workers, batches) - 1 {
		wg.Go(take)
	}
	take() // this goroutine is a worker too: one batch needs no goroutine
	wg.Wait()
}

// maxVisibility is SQS's cap on a visibility timeout.
const maxVisibility = 12 * time.Hour

// visibilitySeconds is delay in whole seconds, rounded up so that a message
// never comes back before the delay asked for, and capped as SQS caps it.
func visibilitySeconds(delay time.Duration) int32 {
	return int32((min(delay, maxVisibility) + time.Second - 1) / time.Second)
}

func isFIFO(arn string) bool { return strings.HasSuffix(arn, ".fifo") }

// queueURL is the URL of the queue an SQS ARN names
// (arn:partition:sqs:region:account:name).
func queueURL(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[2] != "sqs" {
		return arn
	}
	domain := "amazonaws.com"
	if parts[1] == "aws-cn" {
		domain = "amazonaws.com.cn"
	}
	return "https://sqs." + parts[3] + "." + domain + "/" + parts[4] + "/" + parts[5]
}

// message is rec as ReceiveMessage returns it, as far as the pool's steps
// read it (which is not the receipt handle), pointing into rec.
func message(rec *events.SQSMessage) types.Message {
	m := types.Message{
		MessageId:  &rec.MessageId,
		Body:       &rec.Body,
		Attributes: rec.Attributes,
	}
	if len(rec.MessageAttributes) > 0 {
		m.MessageAttributes = make(map[string]types.MessageAttributeValue, len(rec.MessageAttributes))
		for k, a := range rec.MessageAttributes {
			m.MessageAttributes[k] = types.MessageAttributeValue{
				DataType:         aws.String(a.DataType),
				StringValue:      a.StringValue,
				BinaryValue:      a.BinaryValue,
				StringListValues: a.StringListValues,
				BinaryListValues: a.BinaryListValues,
			}
		}
	}
	return m
}
