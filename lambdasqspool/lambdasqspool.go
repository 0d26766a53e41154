package lambdasqspool

import (
	"context"
	"fmt"
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
	if h == nil {
		return nil, fmt.Errorf("lambdasqspool: New needs a handler")
	}
	s, err := share.Configure(opts)
	if err != nil {
		return nil, fmt.Errorf("lambdasqspool: %w", err)
	}
	run := func(ctx context.Context, rec *events.SQSMessage) share.Outcome {
		v := new(T)
		d := share.Delivery{
			Message:  message(rec),
			QueueURL: queueURL(rec.EventSourceARN),
			Decode:   func(body string) error { return s.DefaultDecode(body, v) },
			Handle:   func(ctx context.Context) error { return h(ctx, v) },
		}
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
		return s.Process(ctx, d)
	}
	return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		ctx, cancel := answerInTime(ctx)
		defer cancel()
		return handleEvent(ctx, ev, s.Workers, run), nil
	}, nil
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

// handleEvent runs the records of ev and lists those to retry. On a
// standard queue up to workers records run at once. On a FIFO queue they
// run one after another, in the event's order, and the first failure ends
// the invocation: that record and every later one are reported, so that no
// later message of a group is done before an earlier one (SQS gives them
// back in order). Records not yet started when ctx ends are reported
// without running.
func handleEvent(ctx context.Context, ev events.SQSEvent, workers int, run func(context.Context, *events.SQSMessage) share.Outcome) events.SQSEventResponse {
	recs := ev.Records
	done := make([]bool, len(recs)) // done[i]: record i may be deleted
	if len(recs) > 0 && isFIFO(recs[0].EventSourceARN) {
		for i := range recs {
			if ctx.Err() != nil || !run(ctx, &recs[i]).Done {
				break
			}
			done[i] = true
		}
	} else {
		runAll(ctx, recs, done, workers, run)
	}
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	for i := range recs {
		if !done[i] {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: recs[i].MessageId})
		}
	}
	return resp
}

// runAll runs every record, up to workers at once, on goroutines it waits
// for, and sets done[i] for each record done with.
func runAll(ctx context.Context, recs []events.SQSMessage, done []bool, workers int, run func(context.Context, *events.SQSMessage) share.Outcome) {
	var next atomic.Int64
	take := func() {
		for i := int(next.Add(1) - 1); i < len(recs) && ctx.Err() == nil; i = int(next.Add(1) - 1) {
			done[i] = run(ctx, &recs[i]).Done // each index is taken once
		}
	}
	var wg sync.WaitGroup
	for range min(workers, len(recs)) - 1 {
		wg.Go(take)
	}
	take() // this goroutine is a worker too: one record needs no goroutine
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
