package sqspool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// maxVisibility is SQS's cap on a visibility timeout, and on the total time a
// message can be kept invisible from its receive.
const maxVisibility = 12 * time.Hour

// Consumer names the queue to consume and the client to reach it with.
type Consumer struct {
	// Client is usually an *sqs.Client. Its HTTP client must allow a request
	// to run longer than the long-poll wait (the SDK's default does).
	Client Client
	// Queue is a queue URL, or a queue name resolved with GetQueueUrl.
	Queue string
}

// queueInfo is what a pool needs to know about its queue.
type queueInfo struct {
	url        string
	fifo       bool
	visibility time.Duration
}

// resolve finds the queue URL and, unless known, its visibility timeout.
func (c *Consumer) resolve(ctx context.Context, visibility time.Duration, calls *apiCounters) (queueInfo, error) {
	if c == nil || c.Client == nil {
		return queueInfo{}, errors.New("sqspool: Consumer needs a Client")
	}
	if c.Queue == "" {
		return queueInfo{}, errors.New("sqspool: Consumer needs a Queue name or URL")
	}
	q := queueInfo{url: c.Queue, visibility: visibility}
	if !strings.Contains(c.Queue, "/") {
		calls.add(apiGetQueueURL)
		out, err := c.Client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(c.Queue)})
		if err != nil {
			return q, fmt.Errorf("sqspool: resolve queue %q: %w", c.Queue, err)
		}
		q.url = aws.ToString(out.QueueUrl)
	}
	q.fifo = strings.HasSuffix(q.url, ".fifo")
	if q.visibility > 0 {
		return q, nil
	}
	calls.add(apiGetQueueAttributes)
	out, err := c.Client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(q.url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameVisibilityTimeout},
	})
	if err != nil {
		return q, fmt.Errorf("sqspool: read visibility timeout of %s (or set WithVisibilityTimeout): %w", q.url, err)
	}
	secs, err := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameVisibilityTimeout)])
	if err != nil {
		return q, fmt.Errorf("sqspool: queue %s has no usable VisibilityTimeout attribute: %w", q.url, err)
	}
	q.visibility = time.Duration(secs) * time.Second
	return q, nil
}

// credits counts the worker slots that no received message holds. A poller
// takes slots before it receives, so that no message waits in a buffer while
// its visibility timeout runs.
type credits struct {
	mu      sync.Mutex
	free    int
	waiters int
	wake    chan struct{} // closed and replaced to wake waiting pollers
}

func newCredits(n int) *credits { return &credits{free: n, wake: make(chan struct{})} }

// acquire waits until n slots are free and takes them.
func (c *credits) acquire(ctx context.Context, n int) error {
	c.mu.Lock()
	for c.free < n {
		c.waiters++
		wake := c.wake
		c.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			c.mu.Lock()
			c.waiters--
			c.mu.Unlock()
			return ctx.Err()
		}
		c.mu.Lock()
		c.waiters--
	}
	c.free -= n
	c.mu.Unlock()
	return nil
}

// release returns n slots and wakes the pollers if one may now proceed.
func (c *credits) release(n int, want int) {
	if n == 0 {
		return
	}
	c.mu.Lock()
	// n < 0 only when SQS returned more than was asked for.
	c.free += n
	if c.waiters > 0 && c.free >= want {
		close(c.wake)
		c.wake = make(chan struct{})
	}
	c.mu.Unlock()
}

func (c *credits) available() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.free
}

// poller long-polls the queue while slots are free and hands what it
// receives to the dispatcher.
type poller struct {
	client     Client
	queueURL   string
	input      sqs.ReceiveMessageInput
	want       int
	credits    *credits
	dispatch   func([]types.Message)
	calls      *apiCounters
	onError    func(error)
	sleep      func(ctx context.Context, d time.Duration) error
	minBackoff time.Duration
	maxBackoff time.Duration
}

func newReceiveInput(queueURL string, cfg *config, want int) sqs.ReceiveMessageInput {
	in := sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(queueURL),
		MaxNumberOfMessages: int32(want),
		WaitTimeSeconds:     int32(cfg.waitTime / time.Second),
		// Ask with both parameters: real SQS honours the newer one, some
		// emulators only the older.
		AttributeNames:              []types.QueueAttributeName{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       cfg.attributeNames,
	}
	if cfg.visibility > 0 {
		in.VisibilityTimeout = int32(cfg.visibility / time.Second)
	}
	return in
}

// run polls until ctx ends. Receive errors back off exponentially with full
// jitter; throttling is treated the same way.
func (p *poller) run(ctx context.Context) {
	backoff := p.minBackoff
	for {
		if err := p.credits.acquire(ctx, p.want); err != nil {
			return
		}
		in := p.input // the SDK may keep a pointer to it for the call's life
		p.calls.add(apiReceiveMessage)
		out, err := p.client.ReceiveMessage(ctx, &in)
		if err != nil {
			p.credits.release(p.want, p.want)
			if ctx.Err() != nil {
				return
			}
			p.calls.fail(apiReceiveMessage)
			p.onError(&APIError{API: "ReceiveMessage", Err: err})
			if p.sleep(ctx, rand.N(backoff)+time.Millisecond) != nil {
				return
			}
			backoff = min(2*backoff, p.maxBackoff)
			continue
		}
		backoff = p.minBackoff
		// A negative release takes slots for any message beyond what was asked.
		p.credits.release(p.want-len(out.Messages), p.want)
		if len(out.Messages) == 0 {
			p.calls.empty()
			continue
		}
		p.dispatch(out.Messages)
	}
}
