package lambdasqspool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/lambdasqspool"
)

// benchEvent is a batch of ten JSON records of a standard queue.
func benchEvent() events.SQSEvent {
	var ev events.SQSEvent
	for i := range 10 {
		ev.Records = append(ev.Records, events.SQSMessage{
			MessageId:      fmt.Sprintf("m-%d", i),
			ReceiptHandle:  "AQEB",
			Body:           fmt.Sprintf(`{"id":"o-%d","action":"ok"}`, i),
			Attributes:     map[string]string{"ApproximateReceiveCount": "1", "SentTimestamp": "1764494047512"},
			EventSourceARN: "arn:aws:sqs:us-east-1:123456789012:orders",
		})
	}
	return ev
}

func nop(context.Context, *order) error { return nil }

// The adapter's cost per batch of ten, one record at a time, against the
// hand-written Lambda handler below.
func BenchmarkAdapter(b *testing.B) {
	h, err := lambdasqspool.New(nop, nil, sqspool.WithWorkers(1), quiet)
	if err != nil {
		b.Fatal(err)
	}
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if resp, _ := h(context.Background(), ev); len(resp.BatchItemFailures) != 0 {
			b.Fatal(resp)
		}
	}
}

// BenchmarkHandWritten is the least a Lambda SQS handler does: decode each
// body, run the handler, list the failures.
func BenchmarkHandWritten(b *testing.B) {
	h := func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		var resp events.SQSEventResponse
		for _, r := range ev.Records {
			var o order
			if err := json.Unmarshal([]byte(r.Body), &o); err != nil || nop(ctx, &o) != nil {
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
			}
		}
		return resp, nil
	}
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if resp, _ := h(context.Background(), ev); len(resp.BatchItemFailures) != 0 {
			b.Fatal(resp)
		}
	}
}
