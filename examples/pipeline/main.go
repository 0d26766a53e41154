// Command pipeline runs the whole sqspool picture in one process:
//
//	HTTP POST -> catcher -> SQS -> pool -> process -> DynamoDB sink -> delete
//
// A built-in load generator sends -n requests through the catcher's HTTP
// server; the pool processes each message and stores its result through the
// DynamoDB sink, in idempotent mode, before the message is deleted. Once
// every accepted request is stored, everything stops in order and the
// program prints what flowed through: requests accepted, messages processed
// and deleted, items stored, and the SQS and DynamoDB calls it all took.
//
// With no AWS in the environment it runs in memory (sqsfake and dynamofake):
//
//	go run ./examples/pipeline
//	go run ./examples/pipeline -n 20000
//
// With AWS in the environment (AWS_PROFILE, AWS_ACCESS_KEY_ID,
// AWS_ENDPOINT_URL_SQS and AWS_ENDPOINT_URL_DYNAMODB, ...) it runs against
// SQS and DynamoDB. It creates a queue and two tables, and deletes them at
// the end, unless -queue, -table and -idempotency-table name existing ones.
// Against the local emulators:
//
//	./scripts/emulators.sh go run ./examples/pipeline -n 300
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sqspool/sqspool/examples/internal/exampleenv"
)

func main() {
	var cfg Config
	flag.IntVar(&cfg.Requests, "n", 1000, "requests to send through the catcher")
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:0", "catcher listen address")
	flag.IntVar(&cfg.Workers, "workers", 32, "pool workers")
	flag.StringVar(&cfg.Metrics, "metrics", "", "serve Prometheus /metrics and /readyz at this address (e.g. 127.0.0.1:9090)")
	flag.DurationVar(&cfg.Timeout, "timeout", 2*time.Minute, "bound on the whole run")
	flag.StringVar(&cfg.Queue, "queue", "", "AWS: queue name or URL (default: create one)")
	flag.StringVar(&cfg.Table, "table", "", `AWS: results table, partition key "pk" (default: create one)`)
	flag.StringVar(&cfg.IdempotencyTable, "idempotency-table", "", `AWS: idempotency table, partition key "id" (default: create one)`)
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	cfg.Out = os.Stdout

	// SIGINT or SIGTERM ends the run early, gracefully: everything stops in
	// order, the summary says what got through, and the exit status is 0.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := start(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
}

// start runs the pipeline in memory or on AWS, and prints its summary.
func start(ctx context.Context, cfg Config) error {
	where := "in memory"
	switch {
	case exampleenv.UseAWS():
		cleanup, err := onAWS(ctx, &cfg)
		if err != nil {
			return err
		}
		defer cleanup()
		where = "on AWS"
		if exampleenv.EmulatedSQS() {
			where = "on the AWS endpoints the environment sets"
		}
	case cfg.Queue != "" || cfg.Table != "" || cfg.IdempotencyTable != "":
		return errors.New("-queue, -table and -idempotency-table need AWS in the environment")
	default:
		inMemory(&cfg)
	}
	s, err := run(ctx, cfg)
	fmt.Printf("pipeline %s: ", where)
	s.Print(os.Stdout)
	return err
}
