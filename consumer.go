package sqspool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/internal/backoff"
	"github.com/sqspool/sqspool/internal/clock"
)

// maxVisibility is SQS's cap on a visibility timeout, and on the total time a
// message can be kept invisible from its receive.
const maxVisibility = 12 * time.Hour

// Consumer names the queue to consume and the client to reach it with.
type Consumer struct {
	// Client is usually an *sqs.Client. Its HTTP client must allow a request
	// to run longer than the long-poll wait (the SDK's default does). When
	// nil, a client is made from the default AWS configuration (environment,
	// shared config files, AWS_ENDPOINT_URL_SQS, instance roles).
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

// client returns the consumer's client, or one made from the default AWS
// configuration.
func (c *Consumer) client(ctx context.Context) (Client, error) {
	if c.Client != nil {
		return c.Client, nil
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqspool: load default AWS config: %w", err)
	}
	return sqs.NewFromConfig(cfg), nil
}

// resolve finds the queue URL and, unless known, its visibility timeout.
func (c *Consumer) resolve(ctx context.Context, client Client, visibility time.Duration, calls *apiCounters) (queueInfo, error) {
	if c.Queue == "" {
		return queueInfo{}, errors.New("sqspool: Consumer needs a Queue name or URL")
	}
	q := queueInfo{url: c.Queue, visibility: visibility}
	if !strings.Contains(c.Queue, "/") {
		calls.add(apiGetQueueURL)
		out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(c.Queue)})
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
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
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

// credits counts the slots that no received message holds. A poller takes
// slots before it receives, so that no more messages are held than the pool
// has room for: its workers, plus a read-ahead of about one receive's latency
// worth of work (see Pool.resize).
type credits struct {
	mu      sync.Mutex
	free    int
	waiters []*waiter // served in arrival order, so no poller starves
}

// waiter is a poller waiting until need slots are free: to be granted them,
// or, with peek, only to hear that they are.
type waiter struct {
	need int
	peek bool
	ch   chan struct{} // capacity 1; owned by the poller
}

func newCredits(n int) *credits { return &credits{free: n} }

// take takes up to want slots, at least one. Once a slot is free it waits up
// to fill for want of them, so that a busy pool receives full batches (one
// request per ten messages) while a pool with long handlers still puts a
// freed slot to use within fill. Slots are granted whole and in order, and a
// poller holds none while it waits, so that pollers neither split a batch's
// worth between them nor wait on each other.
func (c *credits) take(ctx context.Context, w *waiter, want int, fill time.Duration, clk clock.Clock) (int, error) {
	if _, err := c.wait(ctx, w, 1, true, nil); err != nil {
		return 0, err
	}
	if want > 1 && fill > 0 {
		if c.tryTake(want) {
			return want, nil // free already: no fill timer to arm
		}
		t := clk.NewTimer(fill)
		granted, err := c.wait(ctx, w, want, false, t.C())
		t.Stop()
		if err != nil {
			return 0, err
		}
		if granted {
			return want, nil
		}
	}
	if _, err := c.wait(ctx, w, 1, false, nil); err != nil {
		return 0, err
	}
	return 1 + c.takeUpTo(want-1), nil
}

// tryTake takes n slots if they are free and no one waits before it.
func (c *credits) tryTake(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiters) > 0 || c.free < n {
		return false
	}
	c.free -= n
	return true
}

// takeUpTo takes what is free, up to n slots.
func (c *credits) takeUpTo(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiters) > 0 || c.free <= 0 {
		return 0 // earlier waiters come first
	}
	n = min(c.free, n)
	c.free -= n
	return n
}

// wait is granted need slots (with peek, is told they are free), or gives
// up when timeout fires (granted false) or ctx ends (an error, and nothing
// granted).
func (c *credits) wait(ctx context.Context, w *waiter, need int, peek bool, timeout <-chan time.Time) (granted bool, err error) {
	c.mu.Lock()
	if len(c.waiters) == 0 && c.free >= need {
		if !peek {
			c.free -= need
		}
		c.mu.Unlock()
		return true, nil
	}
	w.need, w.peek = need, peek
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	select {
	case <-w.ch:
		return true, nil // release granted the slots and removed w
	case <-timeout:
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.mu.Lock()
	if i := slices.Index(c.waiters, w); i >= 0 {
		c.waiters = slices.Delete(c.waiters, i, i+1)
		c.grantLocked() // those behind w may fit now
		c.mu.Unlock()
		return false, err
	}
	c.mu.Unlock()
	<-w.ch // granted as we gave up
	if err != nil {
		if !peek {
			c.release(need)
		}
		return false, err
	}
	return true, nil
}

// release returns n slots and grants waiting pollers what now fits. n < 0
// takes slots away: when SQS returned more messages than were asked for, or
// when the pool shrinks.
func (c *credits) release(n int) {
	if n == 0 {
		return
	}
	c.mu.Lock()
	c.free += n
	c.grantLocked()
	c.mu.Unlock()
}

func (c *credits) grantLocked() {
	for len(c.waiters) > 0 && c.free >= c.waiters[0].need {
		w := c.waiters[0]
		if !w.peek {
			c.free -= w.need
		}
		c.waiters[0] = nil
		c.waiters = c.waiters[1:]
		w.ch <- struct{}{}
	}
}

// poller long-polls the queue while slots are free and hands what it
// receives to the dispatcher.
type poller struct {
	client   Client
	input    sqs.ReceiveMessageInput
	want     int                  // most messages per receive
	limit    *atomic.Int64        // the pool's live concurrency limit
	fill     func() time.Duration // how long to wait for a full batch's slots
	clock    clock.Clock
	credits  *credits
	breaker  *breaker   // nil: always admit
	ctl      *receivers // adds and sheds pollers
	dispatch func(msgs []types.Message, sent time.Time, probe uint64, asked int)
	calls    *apiCounters
	observe  func(a api, entries int, began time.Time, err error)
	received func(sent, at time.Time, n int)
	onError  func(error)
	jitter   backoff.Source
}

// Receive errors back off between these bounds.
const (
	minReceiveBackoff = 100 * time.Millisecond
	maxReceiveBackoff = 10 * time.Second
)

func newReceiveInput(queueURL string, cfg *config) sqs.ReceiveMessageInput {
	in := sqs.ReceiveMessageInput{
		QueueUrl:        aws.String(queueURL),
		WaitTimeSeconds: int32(cfg.waitTime / time.Second),
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
// jitter; throttling is treated the same way. The receive itself runs under
// recv, which the stop ends a little after ctx: SQS does not see a client
// leave, so a cancelled receive can still take messages, and a response on
// its way back would be lost with them in flight (see Pool.stop).
func (p *poller) run(ctx, recv context.Context) {
	pause := backoff.Policy{Base: minReceiveBackoff, Max: maxReceiveBackoff, Jitter: p.jitter}
	failures := 0 // in a row
	w := &waiter{ch: make(chan struct{}, 1)}
	for {
		want := min(p.want, max(int(p.limit.Load()), 1))
		var probe uint64 // see breaker.admit
		if p.breaker != nil {
			var err error
			if want, probe, err = p.breaker.admit(ctx, want); err != nil {
				return
			}
		}
		n, err := p.credits.take(ctx, w, want, p.fill(), p.clock)
		if err != nil {
			p.breaker.unadmit(probe, want)
			return
		}
		if ctx.Err() != nil {
			// Slots can be free as the stop begins; recv outlives ctx.
			p.credits.release(n)
			p.breaker.unadmit(probe, want)
			return
		}
		in := p.input // the SDK may keep a pointer to it for the call's life
		in.MaxNumberOfMessages = int32(n)
		p.calls.add(apiReceiveMessage)
		began := p.clock.Now()
		out, err := p.client.ReceiveMessage(recv, &in)
		if ctx.Err() == nil {
			got := 0
			if out != nil {
				got = len(out.Messages)
			}
			p.observe(apiReceiveMessage, got, began, err)
		}
		if err != nil {
			p.credits.release(n)
			p.breaker.unadmit(probe, want)
			if ctx.Err() != nil {
				return
			}
			p.calls.fail(apiReceiveMessage)
			p.onError(&APIError{API: "ReceiveMessage", Err: err})
			if sleep(ctx, p.clock, pause.Delay(failures)) != nil {
				return
			}
			failures++
			continue
		}
		failures = 0
		p.received(began, p.clock.Now(), len(out.Messages))
		// A negative release takes slots for any message beyond what was asked.
		p.credits.release(n - len(out.Messages))
		p.breaker.unadmit(probe, want-len(out.Messages))
		if len(out.Messages) == 0 {
			p.calls.empty()
		} else {
			p.dispatch(out.Messages, began, probe, n)
		}
		if p.ctl.after(n, len(out.Messages), p.clock.Now().Sub(began)) {
			return
		}
	}
}
