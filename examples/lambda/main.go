// Command lambda runs a sqspool handler as an AWS Lambda function behind an
// SQS event source mapping (FunctionResponseTypes ReportBatchItemFailures),
// with OpenTelemetry: each record gets a consumer span that continues the
// producer's trace, from its traceparent message attribute or its
// AWSTraceHeader. The same handler runs in a pool with
// sqspool.StartPool(ctx, consumer, handleJob, options()...).
//
//	GOOS=linux GOARCH=arm64 go build -tags lambda.norpc -o bootstrap ./examples/lambda
//
// and deploy bootstrap on the provided.al2023 runtime. Install a tracer
// provider with an exporter in main to send the spans somewhere.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/lambdasqspool"
	"github.com/sqspool/sqspool/otelsqspool"
)

// Job is the JSON body of a message.
type Job struct {
	ID     string `json:"id"`
	Action string `json:"action"`
}

// handleJob is the handler, whichever runs it.
func handleJob(ctx context.Context, job *Job) error {
	m, _ := sqspool.MessageFrom(ctx)
	switch job.Action {
	case "fail":
		return errors.New("job " + job.ID + " failed")
	case "cancel":
		return sqspool.NoRetry(fmt.Errorf("job %s was cancelled", job.ID))
	}
	log.Printf("job %s done (message %s, delivery %d)", job.ID, m.ID, m.ReceiveCount)
	return nil
}

// options are the pool's, and the function's.
func options() []sqspool.Option {
	return []sqspool.Option{sqspool.WithObserver(otelsqspool.New())}
}

func main() {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	h, err := lambdasqspool.New(handleJob, sqs.NewFromConfig(cfg), options()...)
	if err != nil {
		log.Fatal(err)
	}
	lambda.Start(h)
}
