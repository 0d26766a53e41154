package lambdasqspool_test

import (
	"context"
	"fmt"
	"log"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/lambdasqspool"
)

type Order struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

// handleOrder is the handler a sqspool pool runs elsewhere.
func handleOrder(ctx context.Context, o *Order) error {
	if o.Total < 0 {
		return sqspool.NoRetry(fmt.Errorf("order %s: negative total", o.ID))
	}
	m, _ := sqspool.MessageFrom(ctx)
	fmt.Printf("order %s, delivery %d\n", o.ID, m.ReceiveCount)
	return nil
}

// A Lambda function's main: the handler of a pool, behind an SQS event
// source mapping with FunctionResponseTypes ReportBatchItemFailures.
func Example() {
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	h, err := lambdasqspool.New(handleOrder, sqs.NewFromConfig(cfg), sqspool.WithSNSEnvelope())
	if err != nil {
		log.Fatal(err)
	}
	lambda.Start(h)
}

// What the function answers for a batch: the records to retry.
func ExampleNew() {
	h, err := lambdasqspool.New(handleOrder, nil)
	if err != nil {
		log.Fatal(err)
	}
	arn := "arn:aws:sqs:us-east-1:123456789012:orders"
	resp, _ := h(context.Background(), events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "m-1", Body: `{"id":"o-1","total":12}`, EventSourceARN: arn, Attributes: map[string]string{"ApproximateReceiveCount": "1"}},
		{MessageId: "m-2", Body: `{"id":"o-2",`, EventSourceARN: arn},
		{MessageId: "m-3", Body: `{"id":"o-3","total":-1}`, EventSourceARN: arn},
	}})
	fmt.Println(resp.BatchItemFailures)
	// Output:
	// order o-1, delivery 1
	// [{m-2}]
}

// A batch handler behind the event source mapping: only the orders it
// names in BatchErrors come back.
func ExampleNewBatch() {
	saveOrders := func(ctx context.Context, orders []Order) error {
		ms, _ := sqspool.MessagesFrom(ctx)
		failed := sqspool.BatchErrors{}
		for i, o := range orders {
			if o.Total < 0 {
				failed[i] = fmt.Errorf("order %s (message %s): negative total", o.ID, ms[i].ID)
				continue
			}
			fmt.Printf("saved order %s\n", o.ID)
		}
		return failed
	}
	h, err := lambdasqspool.NewBatch(saveOrders, nil, sqspool.WithBatchSize(25))
	if err != nil {
		log.Fatal(err)
	}
	arn := "arn:aws:sqs:us-east-1:123456789012:orders"
	resp, _ := h(context.Background(), events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "m-1", Body: `{"id":"o-1","total":12}`, EventSourceARN: arn},
		{MessageId: "m-2", Body: `{"id":"o-2",`, EventSourceARN: arn},
		{MessageId: "m-3", Body: `{"id":"o-3","total":-1}`, EventSourceARN: arn},
		{MessageId: "m-4", Body: `{"id":"o-4","total":7}`, EventSourceARN: arn},
	}})
	fmt.Println(resp.BatchItemFailures)
	// Output:
	// saved order o-1
	// saved order o-4
	// [{m-2} {m-3}]
}
