package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sqspool/sqspool/internal/sdkhttp"
	"github.com/sqspool/sqspool/sqsfake"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is one run of the command in this process.
type server struct {
	endpoint string
	lines    []string // what it printed before serving
	stop     context.CancelFunc
	result   func() error // waits for run's result
	client   *sqs.Client
}

// start runs the command with args on a free port and returns once it has
// printed its endpoint and queues.
func start(t *testing.T, fake *sqsfake.Fake, queues int, args ...string) *server {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	out, w := io.Pipe()
	done := make(chan error, 1)
	s := &server{stop: stop, result: sync.OnceValue(func() error { return <-done })}
	go func() {
		err := run(ctx, fake, append([]string{"-addr", "127.0.0.1:0"}, args...), w, io.Discard)
		_ = w.Close()
		done <- err
	}()
	lines := bufio.NewScanner(out)
	for i := 0; i <= queues && lines.Scan(); i++ {
		s.lines = append(s.lines, lines.Text())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	require.Len(t, s.lines, queues+1, "printed lines")
	var ok bool
	s.endpoint, ok = strings.CutPrefix(s.lines[0], "AWS_ENDPOINT_URL_SQS=http://127.0.0.1:")
	require.True(t, ok, "first line %q", s.lines[0])
	s.endpoint = "http://127.0.0.1:" + s.endpoint

	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	s.client = fake.NewSDKClient(s.endpoint, func(o *sqs.Options) {
		o.HTTPClient = sdkhttp.Client(tr)
		o.RetryMaxAttempts = 1
	})
	t.Cleanup(func() { _ = s.shutdown() })
	return s
}

// shutdown stops the command as SIGINT would and returns run's result.
func (s *server) shutdown() error {
	s.stop()
	return s.result()
}

func TestServesSQSThroughTheSDK(t *testing.T) {
	ctx := t.Context()
	s := start(t, sqsfake.New(), 2, "-queue", "orders", "-queue", "jobs.fifo", "-visibility", "45s")
	assert.Equal(t, []string{
		"queue orders: https://sqs.us-east-1.amazonaws.com/000000000000/orders",
		"queue jobs.fifo: https://sqs.us-east-1.amazonaws.com/000000000000/jobs.fifo",
	}, s.lines[1:])

	// The -queue queues, with the -visibility timeout.
	for name, fifo := range map[string]string{"orders": "", "jobs.fifo": "true"} {
		url, err := s.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		require.NoError(t, err)
		attrs, err := s.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl: url.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
		})
		require.NoError(t, err)
		assert.Equal(t, "45", attrs.Attributes["VisibilityTimeout"], name)
		assert.Equal(t, fifo, attrs.Attributes["FifoQueue"], name)
	}

	// A queue created through the API, a message sent, received, deleted.
	q, err := s.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("made-by-api")})
	require.NoError(t, err)
	_, err = s.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(`{"id":1}`)})
	require.NoError(t, err)
	got, err := s.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, WaitTimeSeconds: 1})
	require.NoError(t, err)
	require.Len(t, got.Messages, 1)
	assert.Equal(t, `{"id":1}`, aws.ToString(got.Messages[0].Body))
	_, err = s.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: q.QueueUrl, ReceiptHandle: got.Messages[0].ReceiptHandle})
	require.NoError(t, err)

	// SQS's errors, typed as the SDK types them.
	_, err = s.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("missing")})
	var missing *types.QueueDoesNotExist
	assert.ErrorAs(t, err, &missing)

	assert.NoError(t, s.shutdown())
}

// A stop ends the long polls in flight at once, with no messages, and run
// returns nil (the command exits 0).
func TestStopEndsLongPolls(t *testing.T) {
	fake := sqsfake.New()
	polling := make(chan struct{})
	fake.SetHook(func(api string, _ any) error {
		if api == sqsfake.OpReceiveMessage {
			close(polling)
		}
		return nil
	})
	s := start(t, fake, 1, "-queue", "idle")
	polled := make(chan error, 1)
	go func() {
		out, err := s.client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(fake.QueueURL("idle")), WaitTimeSeconds: 20,
		})
		if err == nil && len(out.Messages) > 0 {
			err = errors.New("a message from an empty queue")
		}
		polled <- err
	}()
	<-polling
	require.NoError(t, s.shutdown())
	assert.NoError(t, <-polled, "the long poll ends with no messages")
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-visibility", "13h"},
		{"-visibility", "1500ms"},
		{"-queue", "bad name"},
		{"-queue", "dup", "-queue", "dup.fifo", "-queue", "bad.fifo.fifo"},
		{"-addr", "127.0.0.1:notaport"},
		{"-nosuchflag"},
		{"extra"},
	} {
		err := run(t.Context(), sqsfake.New(), args, io.Discard, io.Discard)
		assert.Error(t, err, "%q", args)
	}
	// An invalid queue name is SQS's error, wrapped.
	err := run(t.Context(), sqsfake.New(), []string{"-queue", "bad name"}, io.Discard, io.Discard)
	var apiErr smithy.APIError
	assert.ErrorAs(t, err, &apiErr)
	assert.ErrorIs(t, run(t.Context(), sqsfake.New(), []string{"-h"}, io.Discard, io.Discard), flag.ErrHelp)
}
