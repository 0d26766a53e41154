package sqsfake_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sqsfake"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// newFake returns a fake on a manual clock.
func newFake(opts ...sqsfake.Option) (*sqsfake.Fake, *clock.Manual) {
	clk := clock.NewManual(epoch)
	return sqsfake.New(append([]sqsfake.Option{clock.Option[sqsfake.Option](clk)}, opts...)...), clk
}

// receive short-polls up to max messages.
func receive(t *testing.T, f *sqsfake.Fake, url string, max int32) []types.Message {
	t.Helper()
	out, err := f.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: max})
	require.NoError(t, err)
	return out.Messages
}

// receiveOne short-polls and requires exactly one message.
func receiveOne(t *testing.T, f *sqsfake.Fake, url string) types.Message {
	t.Helper()
	msgs := receive(t, f, url, 1)
	require.Len(t, msgs, 1)
	return msgs[0]
}

func deleteMessage(t *testing.T, f *sqsfake.Fake, url, handle string) {
	t.Helper()
	_, err := f.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: &handle})
	require.NoError(t, err)
}

func changeVisibility(f *sqsfake.Fake, url, handle string, seconds int32) error {
	_, err := f.ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{
		QueueUrl: &url, ReceiptHandle: &handle, VisibilityTimeout: seconds,
	})
	return err
}

// requireCode requires err to be an API error with this code.
func requireCode(t *testing.T, err error, code string) {
	t.Helper()
	require.Error(t, err)
	var apiErr smithy.APIError
	require.True(t, errors.As(err, &apiErr), "not an API error: %v", err)
	require.Equal(t, code, apiErr.ErrorCode(), "error: %v", err)
}

// requireOneFailure requires a batch's Failed list to hold one entry.
func requireOneFailure(t *testing.T, failed []types.BatchResultErrorEntry, id, code string, senderFault bool) {
	t.Helper()
	require.Len(t, failed, 1)
	assert.Equal(t, id, *failed[0].Id)
	assert.Equal(t, code, *failed[0].Code)
	assert.Equal(t, senderFault, failed[0].SenderFault)
}

// longPoll starts a receive in its own goroutine and returns its result on
// a channel.
func longPoll(ctx context.Context, f *sqsfake.Fake, in *sqs.ReceiveMessageInput) <-chan result {
	ch := make(chan result, 1)
	go func() {
		out, err := f.ReceiveMessage(ctx, in)
		ch <- result{out, err}
	}()
	return ch
}

type result struct {
	out *sqs.ReceiveMessageOutput
	err error
}

// waitResult waits for a long poll to return; the bound only turns a hang
// into a failure.
func waitResult(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("receive did not return")
		return result{}
	}
}

// blockUntilWaiting waits until n receivers armed their clock timers.
func blockUntilWaiting(t *testing.T, clk *clock.Manual, n int) {
	t.Helper()
	done := make(chan struct{})
	timer := time.AfterFunc(10*time.Second, func() { close(done) })
	defer timer.Stop()
	require.True(t, clk.BlockUntil(n, done), "receiver did not start waiting")
}

func str(s string) *string { return aws.String(s) }

func itoa(i int) string { return strconv.Itoa(i) }

func itoa64(i int64) string { return strconv.FormatInt(i, 10) }
