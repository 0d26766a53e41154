// Command consumer is the child process of the fault suite (package
// github.com/sqspool/sqspool/test/faults): a sqspool consumer that the tests
// start, SIGKILL and SIGTERM, and whose event log they read afterwards.
//
// It consumes -queue with the SDK's default configuration (so
// AWS_ENDPOINT_URL_SQS and AWS_ENDPOINT_URL_DYNAMODB point it at emulators
// or at an sqsfake served over HTTP). Each body is {"pid": N}. The handler
// optionally works for -work, then, when -table and -idem-table are set,
// writes the item {pk: MessageId, pid: N} through sink.NewDynamoDB in
// idempotent mode (key: the MessageId) with sink.Pipe.
//
// Every line of the -log file is one write(2) on a file opened with
// O_APPEND, so that the lines of several processes, one after the other or
// killed mid-way, stay whole. A line is "PID EVENT ARGS...":
//
//	READY                          the pool has started
//	R  N                           a ReceiveMessage call returned N > 0 messages
//	H  MSGID PRODUCERID RECEIVES   a handler call began
//	W  MSGID                       BatchWriteItem confirmed the item written
//	OK MSGID                       the handler returned nil (the pool deletes)
//	E  MSGID ERROR                 the handler returned an error
//	STOP                           SIGTERM or SIGINT arrived
//	EXIT MILLIS ERROR STATSJSON    the stop took MILLIS; ERROR is "nil" or the
//	                               stop's error; STATSJSON is sqspool.Stats
//
// The exit status is 0 after a clean stop, 3 when the stop returned an
// error, 2 on a start-up failure.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/internal/sdkhttp"
	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/test/faults"
)

type job struct {
	PID int `json:"pid"`
	// Poison jobs always fail; Fail makes a job fail while its receive
	// count is at most Fail (its first one or two attempts).
	Poison bool `json:"poison,omitempty"`
	Fail   int  `json:"fail,omitempty"`
}

type result struct {
	PK  string `dynamodbav:"pk"`
	PID int    `dynamodbav:"pid"`
}

// eventLog appends whole lines to the shared log.
type eventLog struct {
	f   *os.File
	tag string
}

func (l *eventLog) event(format string, args ...any) {
	line := l.tag + " " + fmt.Sprintf(format, args...) + "\n"
	if _, err := l.f.Write([]byte(line)); err != nil {
		fmt.Fprintln(os.Stderr, "consumer: event log:", err)
	}
}

// loggingDynamoDB logs every item that a BatchWriteItem call confirms
// written (those not handed back as UnprocessedItems).
type loggingDynamoDB struct {
	sink.DynamoDBAPI
	log *eventLog
}

func (c loggingDynamoDB) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	out, err := c.DynamoDBAPI.BatchWriteItem(ctx, in, opts...)
	if err != nil {
		return out, err
	}
	for _, pk := range faults.ConfirmedPuts(in, out, "pk") {
		c.log.event("W %s", pk)
	}
	return out, nil
}

// loggingSQS logs how many messages each ReceiveMessage call returned, and
// the MessageId of each ("RM id": a receive, whether or not it reaches a
// handler).
type loggingSQS struct {
	*sqs.Client
	log *eventLog
}

func (c loggingSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := c.Client.ReceiveMessage(ctx, in, opts...)
	if err == nil && len(out.Messages) > 0 {
		c.log.event("R %d", len(out.Messages))
		for _, m := range out.Messages {
			c.log.event("RM %s", aws.ToString(m.MessageId))
		}
	}
	return out, err
}

func main() {
	os.Exit(run())
}

func run() int {
	var (
		queue     = flag.String("queue", "", "queue URL")
		logPath   = flag.String("log", "", "event log (appended)")
		workers   = flag.Int("workers", 8, "sqspool.WithWorkers")
		maxMsgs   = flag.Int("max", 10, "sqspool.WithMaxMessages")
		pollers   = flag.Int("pollers", 0, "sqspool.WithPollers (0: the pool's default)")
		heartbeat = flag.Bool("heartbeat", true, "sqspool.WithHeartbeat")
		wait      = flag.Duration("wait", time.Second, "sqspool.WithWaitTime")
		shutdown  = flag.Duration("shutdown", 5*time.Second, "sqspool.WithShutdownTimeout")
		work      = flag.Duration("work", 0, "how long each handler works")
		deaf      = flag.Bool("deaf", false, "handlers ignore their context's cancellation (a hung handler)")
		table     = flag.String("table", "", "results table (with -idem-table: write through the idempotent DynamoDB sink)")
		idemTable = flag.String("idem-table", "", "idempotency table")
		lease     = flag.Duration("lease", 2*time.Second, "sink IdempotencyConfig.Lease")
		backoff   = flag.Duration("backoff", 500*time.Millisecond, "base of sqspool.ExponentialBackoff (cap 4 times the base)")
		// A deliberate defect, for checking the crash suite's oracle: a Put
		// that finds its key held does not wait for it, and its
		// ErrInProgress loses its RetryAfter, so the pool retries it after
		// its short backoff and each retry spends a receive.
		inProgressNow = flag.Bool("inprogress-now", false, "test only: no wait for a held key, and ErrInProgress retried after the backoff, not the lease")
	)
	flag.Parse()
	if *queue == "" || *logPath == "" {
		fmt.Fprintln(os.Stderr, "consumer: -queue and -log are required")
		return 2
	}
	f, err := os.OpenFile(*logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		return 2
	}
	defer f.Close()
	log := &eventLog{f: f, tag: fmt.Sprint(os.Getpid())}

	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopSignals()
	// The proxy in front of SQS answers quickly enough to meet the SDK race
	// that cuts a response and retries the call (see internal/sdkhttp); a
	// receive lost so would be an outcome-less receive the oracle rejects.
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		return 2
	}
	cfg.HTTPClient = sdkhttp.Wrap(cfg.HTTPClient)

	var store *sink.DynamoDB[result]
	if *table != "" && *idemTable != "" {
		ddb := loggingDynamoDB{DynamoDBAPI: dynamodb.NewFromConfig(cfg), log: log}
		idem := sink.IdempotencyConfig{Table: *idemTable, Lease: *lease, Expiry: time.Hour}
		if *inProgressNow {
			idem.MaxWait = -1
		}
		if store, err = sink.NewDynamoDB[result](ddb, *table, sink.WithIdempotency(idem)); err != nil {
			fmt.Fprintln(os.Stderr, "consumer:", err)
			return 2
		}
	}
	process := func(ctx context.Context, j *job) (result, error) {
		m, _ := sqspool.MessageFrom(ctx)
		log.event("H %s %d %d", m.ID, j.PID, m.ReceiveCount)
		switch {
		case j.Poison:
			return result{}, errors.New("poison")
		case m.ReceiveCount <= j.Fail:
			return result{}, fmt.Errorf("failing attempt %d of %d", m.ReceiveCount, j.Fail)
		}
		if *work > 0 {
			t := time.NewTimer(*work) // the work itself, not synchronisation
			defer t.Stop()
			done := ctx.Done()
			if *deaf {
				done = nil
			}
			select {
			case <-t.C:
			case <-done:
				return result{}, ctx.Err()
			}
		}
		return result{PK: m.ID, PID: j.PID}, nil
	}
	var put sink.Sink[result] = sink.Func[result](func(context.Context, ...result) error { return nil })
	if store != nil {
		put = store
	}
	pipe := sink.Pipe(process, put)
	handler := func(ctx context.Context, j *job) error {
		m, _ := sqspool.MessageFrom(ctx)
		if err := pipe(ctx, j); err != nil {
			if *inProgressNow && errors.Is(err, sink.ErrInProgress) {
				err = errors.New(err.Error())
			}
			log.event("E %s %s", m.ID, strings.ReplaceAll(err.Error(), "\n", " "))
			return err
		}
		log.event("OK %s", m.ID)
		return nil
	}

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := []sqspool.Option{sqspool.WithHeartbeat(*heartbeat)}
	if *pollers > 0 {
		opts = append(opts, sqspool.WithPollers(*pollers))
	}
	pool, err := sqspool.StartPool(ctx, &sqspool.Consumer{Client: loggingSQS{Client: sqs.NewFromConfig(cfg), log: log}, Queue: *queue}, handler,
		append(opts,
			sqspool.WithWorkers(*workers),
			sqspool.WithMaxMessages(*maxMsgs),
			sqspool.WithWaitTime(*wait),
			sqspool.WithShutdownTimeout(*shutdown),
			sqspool.WithRetryBackoff(sqspool.ExponentialBackoff(*backoff, 4**backoff)),
			sqspool.WithLogger(quiet),
		)...,
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		return 2
	}
	log.event("READY")
	<-ctx.Done()
	stopAt := time.Now()
	log.event("STOP")
	// The pool began its stop when ctx ended; Shutdown waits for that stop
	// (bounded by -shutdown) and returns its error.
	stopErr := pool.Shutdown(context.Background())
	if store != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		stopErr = errors.Join(stopErr, store.Close(cctx))
		cancel()
	}
	stats, _ := json.Marshal(pool.Stats())
	msg := "nil"
	if stopErr != nil {
		msg = strings.ReplaceAll(stopErr.Error(), " ", "_")
	}
	log.event("EXIT %d %s %s", time.Since(stopAt).Milliseconds(), msg, stats)
	if stopErr != nil {
		return 3
	}
	return 0
}
