package sqsfake_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/sqsfake"
)

// Queue is the part of *sqs.Client that the code under test uses; both
// *sqs.Client and *sqsfake.Fake satisfy it.
type Queue interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
}

// pollOnce is the code under test: it receives a batch, handles each
// message and deletes the ones handled; a failed message is left to come
// back when its visibility timeout ends.
func pollOnce(ctx context.Context, q Queue, url string, handle func(body string) error) error {
	out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10})
	if err != nil {
		return err
	}
	for _, m := range out.Messages {
		if handle(*m.Body) != nil {
			continue
		}
		if _, err := q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: m.ReceiptHandle}); err != nil {
			return err
		}
	}
	return nil
}

// A test of a handler: a poison message ends in the dead-letter queue after
// three receives, and the good one is deleted. A zero visibility timeout
// makes a failed message visible again at once; for real timeouts, run the
// test under testing/synctest, whose fake time the fake's timers follow.
func Example() {
	ctx := context.Background()
	fake := sqsfake.New()
	fake.MustCreateQueue("orders-dlq", nil)
	url := fake.MustCreateQueue("orders", map[string]string{
		"VisibilityTimeout": "0",
		"RedrivePolicy":     sqsfake.RedrivePolicy(fake.QueueARN("orders-dlq"), 3),
	})
	fake.MustSendJSON(url, map[string]int{"order": 1})
	fake.MustSend(url, "not json")

	handle := func(body string) error {
		var order map[string]int
		return json.Unmarshal([]byte(body), &order)
	}
	for range 4 {
		if err := pollOnce(ctx, fake, url, handle); err != nil {
			fmt.Println(err)
		}
	}

	s := fake.Stats(url)
	fmt.Println("deleted:", s.Deleted, "moved to the DLQ:", s.MovedToDLQ, "stale deletes:", s.StaleDeletes)
	for _, m := range fake.Messages("orders-dlq") {
		fmt.Printf("dead letter %q from %s\n", m.Body, m.SourceQueueARN)
	}
	fmt.Println("receive calls:", fake.Calls(sqsfake.OpReceiveMessage))
	// Output:
	// deleted: 1 moved to the DLQ: 1 stale deletes: 0
	// dead letter "not json" from arn:aws:sqs:us-east-1:000000000000:orders
	// receive calls: 4
}

// Injected faults test the error paths: here the first receive fails as if
// SQS had an internal error, and every DeleteMessage is slowed down.
func ExampleFake_SetFaults() {
	ctx := context.Background()
	fake := sqsfake.New(sqsfake.WithSeed(1))
	url := fake.MustCreateQueue("q", nil)
	fake.MustSend(url, "hello")

	fake.FailNext(sqsfake.OpReceiveMessage, 1, nil)
	fake.SetFaults(sqsfake.Faults{
		sqsfake.OpDeleteMessage: {Latency: time.Millisecond},
	})
	handle := func(string) error { return nil }
	fmt.Println(pollOnce(ctx, fake, url, handle) != nil)
	fmt.Println(pollOnce(ctx, fake, url, handle))
	fmt.Println(fake.Stats(url).Deleted)
	// Output:
	// true
	// <nil>
	// 1
}

// Code that needs a real *sqs.Client talks to the fake over HTTP.
func ExampleFake_Handler() {
	fake := sqsfake.New()
	srv := httptest.NewServer(fake.Handler())
	defer srv.Close()
	client := fake.NewSDKClient(srv.URL)

	ctx := context.Background()
	created, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("events")})
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: created.QueueUrl, MessageBody: aws.String("hello")}); err != nil {
		fmt.Println(err)
		return
	}
	out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: created.QueueUrl, WaitTimeSeconds: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(*out.Messages[0].Body, fake.Stats("events").InFlight)

	_, err = client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("missing")})
	var gone *types.QueueDoesNotExist
	fmt.Println(errors.As(err, &gone))
	// Output:
	// hello 1
	// true
}
