package faults

import (
	"context"
	"net/http/httptrace"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/awstest"
)

// The crash suite needs SQS's semantics where local-aws-sqs 2.0.2 differs
// (test/emulators/PATCHES.md): these check, through the SDK, that the
// patched emulator has them, so that a patch that stops applying fails here
// and not as a puzzling crash-suite figure.
func TestEmulatorBehavesAsSQS(t *testing.T) {
	c := awstest.SQS(t)
	ctx := t.Context()
	q := awstest.NewQueue(t, c, "faults-emu", map[string]string{"VisibilityTimeout": "30"})
	receive := func(wait int32) []types.Message {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q), MaxNumberOfMessages: 10, WaitTimeSeconds: wait,
			AttributeNames: []types.QueueAttributeName{"All"}}) //nolint:staticcheck // local-aws-sqs reads only the deprecated field
		require.NoError(t, err)
		return out.Messages
	}
	send := func(body string) {
		_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q), MessageBody: aws.String(body)})
		require.NoError(t, err)
	}

	// A long poll returns as soon as it holds a message, not at the end of
	// its wait with MaxNumberOfMessages.
	send("a")
	start := time.Now()
	msgs := receive(10)
	require.Len(t, msgs, 1)
	assert.Less(t, time.Since(start), 5*time.Second, "the long poll returned early")

	// A visibility change is not a receive.
	for _, v := range []int32{60, 0} {
		_, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(q), ReceiptHandle: msgs[0].ReceiptHandle, VisibilityTimeout: v})
		require.NoError(t, err)
	}
	again := receive(5)
	require.Len(t, again, 1)
	assert.Equal(t, "2", again[0].Attributes["ApproximateReceiveCount"], "receive, extend, release, receive")
	_, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q), ReceiptHandle: again[0].ReceiptHandle})
	require.NoError(t, err)

	// A long poll its client abandoned takes nothing sent afterwards.
	pollCtx, cancel := context.WithCancel(ctx)
	wrote := make(chan struct{})
	pollCtx = httptrace.WithClientTrace(pollCtx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(wrote) }})
	polled := make(chan error, 1)
	go func() {
		_, err := c.ReceiveMessage(pollCtx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q), WaitTimeSeconds: 10})
		polled <- err
	}()
	<-wrote // the poll is with the emulator
	cancel()
	assert.Error(t, <-polled)
	send("b")
	got := receive(5)
	require.Len(t, got, 1, "the message sent after the abandoned poll is there")
	assert.Equal(t, "1", got[0].Attributes["ApproximateReceiveCount"], "and was not taken by the abandoned poll")
}
