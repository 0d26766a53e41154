package catcher

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/clock"
)

const testQueueURL = "https://sqs.us-east-1.amazonaws.com/123456789012/work"

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// stubClient is a local test double for what sqsfake cannot aim at one
// chosen request: a failed entry picked by its body, and calls held until
// the test releases them. With next set, the entries it does not fail go
// on to next (sqsfake); without, they all succeed.
type stubClient struct {
	next     Client
	failBody map[string]types.BatchResultErrorEntry // body -> its failure
	err      error                                  // returned by every call when set
	entered  chan struct{}                          // gets one send per call, if set
	release  chan struct{}                          // calls wait for a receive, if set

	mu    sync.Mutex
	calls [][]types.SendMessageBatchRequestEntry
}

// GetQueueAttributes asks next, or describes a queue with the defaults
// SQS gives one named like the URL.
func (s *stubClient) GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	if s.next != nil {
		return s.next.GetQueueAttributes(ctx, in, opts...)
	}
	return queueAttributes(aws.ToString(in.QueueUrl)), nil
}

func queueAttributes(url string) *sqs.GetQueueAttributesOutput {
	attrs := map[string]string{"MaximumMessageSize": strconv.Itoa(MaxMessageBytes)}
	if strings.HasSuffix(url, ".fifo") {
		attrs["FifoQueue"] = "true"
		attrs["ContentBasedDeduplication"] = "true"
	}
	return &sqs.GetQueueAttributesOutput{Attributes: attrs}
}

func (s *stubClient) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	s.mu.Lock()
	s.calls = append(s.calls, in.Entries)
	s.mu.Unlock()
	if s.entered != nil {
		s.entered <- struct{}{}
	}
	if s.release != nil {
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, fmt.Errorf("stub: %w", ctx.Err())
		}
	}
	if s.err != nil {
		return nil, s.err
	}
	out := &sqs.SendMessageBatchOutput{}
	var pass []types.SendMessageBatchRequestEntry
	for _, e := range in.Entries {
		if f, ok := s.failBody[aws.ToString(e.MessageBody)]; ok {
			f.Id = e.Id
			out.Failed = append(out.Failed, f)
			continue
		}
		pass = append(pass, e)
	}
	if len(pass) == 0 {
		return out, nil
	}
	if s.next == nil {
		for _, e := range pass {
			out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id, MessageId: aws.String("msg-" + aws.ToString(e.MessageBody))})
		}
		return out, nil
	}
	next, err := s.next.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: in.QueueUrl, Entries: pass}, opts...)
	if err != nil {
		return nil, err
	}
	out.Successful = next.Successful
	out.Failed = append(out.Failed, next.Failed...)
	return out, nil
}

func (s *stubClient) callSizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := make([]int, len(s.calls))
	for i, c := range s.calls {
		n[i] = len(c)
	}
	return n
}

// reply is a decoded answer of the handler.
type reply struct {
	Status    int
	MessageID string `json:"messageId"`
	Error     string `json:"error"`
	Header    http.Header
}

func post(body string, header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

func serve(t testing.TB, h http.Handler, r *http.Request) reply {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return decode(t, rec.Result())
}

func decode(t testing.TB, resp *http.Response) reply {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	rep := reply{Status: resp.StatusCode, Header: resp.Header}
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "body %q", b)
	require.NoError(t, json.Unmarshal(b, &rep), "body %q", b)
	return rep
}

// start serves the requests concurrently; the returned func waits for and
// returns their replies, in the order of reqs.
func start(t testing.TB, h http.Handler, reqs ...*http.Request) func() []reply {
	t.Helper()
	recs := make([]*httptest.ResponseRecorder, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		recs[i] = httptest.NewRecorder()
		wg.Go(func() { h.ServeHTTP(recs[i], r) })
	}
	return func() []reply {
		wg.Wait()
		out := make([]reply, len(recs))
		for i, rec := range recs {
			out[i] = decode(t, rec.Result())
		}
		return out
	}
}

// queuedSignal makes h report each request that joins a batch; the
// returned func waits until n more have.
func queuedSignal(h *Handler) func(n int) {
	ch := make(chan struct{}, 1024)
	h.testHookQueued = func() { ch <- struct{}{} }
	return func(n int) {
		for range n {
			<-ch
		}
	}
}

// newManual returns a handler on a manual clock, so that only the test
// decides when a linger ends, and closes it at the end of the test.
func newManual(t testing.TB, c Client, url string, opts ...Option) (*Handler, *clock.Manual) {
	t.Helper()
	clk := clock.NewManual(epoch)
	h, err := New(context.Background(), c, url, append([]Option{withClock(clk)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close(context.Background())) })
	return h, clk
}

func bodies(n int, format string) []*http.Request {
	reqs := make([]*http.Request, n)
	for i := range reqs {
		reqs[i] = post(fmt.Sprintf(format, i))
	}
	return reqs
}

// clientFunc answers every call with the successes it returns.
type clientFunc func([]types.SendMessageBatchRequestEntry) []types.SendMessageBatchResultEntry

func (f clientFunc) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	return &sqs.SendMessageBatchOutput{Successful: f(in.Entries)}, nil
}

func (f clientFunc) GetQueueAttributes(_ context.Context, in *sqs.GetQueueAttributesInput, _ ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	return queueAttributes(aws.ToString(in.QueueUrl)), nil
}

// mustNew is New for tests, on a standard context.
func mustNew(t testing.TB, c Client, url string, opts ...Option) *Handler {
	t.Helper()
	h, err := New(context.Background(), c, url, opts...)
	require.NoError(t, err)
	return h
}
