package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/catcher"
	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sink/dynamofake"
	"github.com/sqspool/sqspool/sqsfake"
)

// Request is what clients POST to the catcher: the body of one message.
type Request struct {
	// ID is assigned by the client. It is the idempotency key, so that a
	// request sent twice, or a message delivered twice, is stored once.
	ID   string `json:"id"`
	Text string `json:"text"`
}

// Result is what processing a Request stores: one item per request.
type Result struct {
	ID        string `dynamodbav:"pk"`
	Words     int    `dynamodbav:"words"`
	MessageID string `dynamodbav:"message_id"`
	Delivery  int    `dynamodbav:"delivery"`
}

// IdempotencyKey keys the idempotent sink on the request id: a message
// delivered again (or a request the client sent twice) is not applied twice.
func (r Result) IdempotencyKey() string { return r.ID }

// process is the business logic: it turns a request into its result.
func process(ctx context.Context, r *Request) (Result, error) {
	m, _ := sqspool.MessageFrom(ctx)
	return Result{ID: r.ID, Words: len(strings.Fields(r.Text)), MessageID: m.ID, Delivery: m.ReceiveCount}, nil
}

// validate lets the catcher refuse (422) what process could not handle,
// before it reaches the queue.
func validate(body []byte, _ *http.Request) error {
	var r Request
	if err := json.Unmarshal(body, &r); err != nil || r.ID == "" {
		return errors.New(`want {"id": "...", "text": "..."} with an id`)
	}
	return nil
}

// SQSClient is what the pipeline needs of SQS: the consumer's calls and the
// catcher's. *sqs.Client and *sqsfake.Fake have them.
type SQSClient interface {
	sqspool.Client
	catcher.Client
}

// Config wires a pipeline.
type Config struct {
	// SQS and DynamoDB are the clients; Queue (name or URL), Table and
	// IdempotencyTable must exist. inMemory sets them all to fakes.
	SQS              SQSClient
	DynamoDB         sink.DynamoDBAPI
	Queue            string
	Table            string // partition key "pk" (string)
	IdempotencyTable string // partition key "id" (string)

	Addr        string        // catcher listen address (default 127.0.0.1:0)
	Metrics     string        // if set, serve /metrics and /readyz here
	Requests    int           // requests the load generator sends
	Concurrency int           // requests in flight at once (default 64)
	Workers     int           // pool workers (default 32)
	WaitTime    time.Duration // long-poll wait (default 20s; emulators want 1s)
	Timeout     time.Duration // bound on the whole run (default 2m)
	Logger      *slog.Logger  // default slog.Default()
	Out         io.Writer     // where the addresses served are printed (default: nowhere)
}

// inMemory points cfg at a new in-memory SQS and DynamoDB.
func inMemory(cfg *Config) {
	q := sqsfake.New()
	ddb := dynamofake.New()
	ddb.CreateTable("results", "pk", "")
	ddb.CreateTable("idempotency", "id", "")
	cfg.SQS, cfg.Queue = q, q.MustCreateQueue("requests", nil)
	cfg.DynamoDB, cfg.Table, cfg.IdempotencyTable = ddb, "results", "idempotency"
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.Workers <= 0 {
		c.Workers = 32
	}
	if c.WaitTime <= 0 {
		c.WaitTime = 20 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
}

// run serves the catcher, consumes its queue into the DynamoDB sink, sends
// cfg.Requests requests through the catcher, waits until every accepted one
// is stored, stops everything in order and says what flowed through.
//
// Cancelling ctx (SIGINT) is a request to stop early, not a failure: run
// stops everything in the same order and returns a summary marked
// Interrupted, whose counts still add up, and no error. Messages accepted
// but not yet handled stay in the queue. Running out of cfg.Timeout is an
// error.
func run(parent context.Context, cfg Config) (Summary, error) {
	cfg.setDefaults()
	ctx, cancel := context.WithTimeout(parent, cfg.Timeout)
	defer cancel()
	start := time.Now()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return Summary{}, err
	}
	url := "http://" + ln.Addr().String() + "/"

	// The sink writes results in BatchWriteItem calls shared by all workers.
	// Idempotent mode keys each write on the request id: a message delivered
	// again (or a request the client sent twice) is not applied twice.
	results, err := sink.NewDynamoDB[Result](cfg.DynamoDB, cfg.Table,
		sink.WithIdempotency(sink.IdempotencyConfig{
			Table:  cfg.IdempotencyTable,
			Expiry: 24 * time.Hour,
		}))
	if err != nil {
		return Summary{}, errors.Join(err, ln.Close())
	}

	// Metrics and a readiness probe, when asked for.
	opts := []sqspool.Option{sqspool.WithWorkers(cfg.Workers), sqspool.WithWaitTime(cfg.WaitTime), sqspool.WithLogger(cfg.Logger)}
	var mon *monitor
	if cfg.Metrics != "" {
		if mon, err = startMonitor(cfg.Metrics, cfg.Out); err != nil {
			return Summary{}, errors.Join(err, ln.Close(), results.Close(ctx))
		}
		defer func() { _ = mon.Close(context.WithoutCancel(ctx)) }()
		opts = append(opts, sqspool.WithObserver(mon.Observer))
	}

	// The pool: process, store durably, and only then delete the message.
	stored := newTracker()
	store := sink.Pipe(process, results)
	pool, err := sqspool.StartPool(ctx, &sqspool.Consumer{Client: cfg.SQS, Queue: cfg.Queue},
		func(ctx context.Context, r *Request) error {
			err := store(ctx, r)
			if errors.Is(err, sink.ErrInProgress) {
				// Another copy of this request is being written right
				// now: look again once it is done.
				return sqspool.RetryAfter(time.Second, err)
			}
			if err != nil {
				return err // the message comes back after a backoff
			}
			stored.add(r.ID)
			return nil
		}, opts...)
	if err != nil {
		return Summary{}, errors.Join(err, ln.Close(), results.Close(ctx))
	}
	if mon != nil {
		mon.SetPool(pool)
	}

	// The catcher: every POST becomes a message; messages go in batches.
	h, err := catcher.New(ctx, cfg.SQS, pool.QueueURL(), catcher.WithJSON(), catcher.WithValidate(validate),
		catcher.WithLogger(cfg.Logger))
	if err != nil {
		stopCtx, stopCancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer stopCancel()
		return Summary{}, errors.Join(err, ln.Close(), pool.Shutdown(stopCtx), results.Close(stopCtx))
	}
	serveCtx, stopServing := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- catcher.Serve(serveCtx, ln, h) }()
	fmt.Fprintf(cfg.Out, "catcher at %s\n", url)

	load := sendRequests(ctx, url, cfg.Requests, cfg.Concurrency)
	err = stored.waitFor(ctx, load.accepted)
	if err == nil {
		// Duplicates (a request sent twice, a message delivered twice) may
		// still be queued: let the pool drain them. The idempotency table
		// makes them no-ops.
		waitEmpty(ctx, cfg.SQS, pool.QueueURL(), 10*time.Second)
	}
	interrupted := parent.Err() != nil

	// Stop in the order work flows: no new requests (pending sends
	// flushed), then no new messages (pending deletes flushed), then no new
	// writes.
	var errs []error
	if !interrupted {
		errs = append(errs, err)
		if failed := load.sent - len(load.accepted); failed > 0 {
			errs = append(errs, fmt.Errorf("%d of %d requests were not accepted", failed, load.sent))
		}
	}
	stopServing()
	errs = append(errs, <-served)
	stopCtx, stopCancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer stopCancel()
	errs = append(errs, pool.Shutdown(stopCtx))
	errs = append(errs, results.Close(stopCtx))
	s := Summary{
		Requests: cfg.Requests, Interrupted: interrupted,
		Sent: load.sent, Accepted: len(load.accepted), CutShort: load.cutShort, Retries: load.retries, Stored: stored.len(),
		Elapsed: time.Since(start), Catcher: h.Stats(), Pool: pool.Stats(), Sink: results.Stats(),
	}
	s.QueueVisible, s.QueueInFlight, err = queueDepth(stopCtx, cfg.SQS, pool.QueueURL())
	return s, errors.Join(append(errs, err)...)
}

// queueDepth reads how many messages the queue holds, visible and in flight
// (approximate on SQS, exact on the fake and the emulators).
func queueDepth(ctx context.Context, c sqspool.Client, url string) (visible, inFlight int, err error) {
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("queue depth: %w", err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight, nil
}

// waitEmpty waits, at most for max, until the queue looks empty.
func waitEmpty(ctx context.Context, c sqspool.Client, url string, max time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	_ = poll(ctx, 50*time.Millisecond, func() bool {
		visible, inFlight, err := queueDepth(ctx, c, url)
		return err != nil || visible+inFlight == 0
	})
}

// poll calls done every interval until it returns true or ctx ends.
func poll(ctx context.Context, interval time.Duration, done func() bool) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// tracker records which requests are stored.
type tracker struct {
	mu  sync.Mutex
	ids map[string]bool
}

func newTracker() *tracker { return &tracker{ids: make(map[string]bool)} }

func (t *tracker) add(id string) {
	t.mu.Lock()
	t.ids[id] = true
	t.mu.Unlock()
}

func (t *tracker) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.ids)
}

// waitFor returns once every id in ids is stored, or ctx ends.
func (t *tracker) waitFor(ctx context.Context, ids []string) error {
	ids = slices.Clone(ids)
	err := poll(ctx, 5*time.Millisecond, func() bool {
		t.mu.Lock()
		defer t.mu.Unlock()
		ids = slices.DeleteFunc(ids, func(id string) bool { return t.ids[id] })
		return len(ids) == 0
	})
	if err != nil {
		return fmt.Errorf("%d accepted requests not stored: %w", len(ids), err)
	}
	return nil
}
