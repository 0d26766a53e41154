// Command sqsfake serves an in-memory Amazon SQS on a local port, for
// developing and testing code that uses SQS without an AWS account: the
// fake of package sqsfake (receipt handles, visibility timeouts, receive
// counts, redrive to dead-letter queues, FIFO group locks and
// deduplication, batch limits, SQS's error codes) over SQS's AWS JSON 1.0
// protocol, the one aws-sdk-go-v2 and the other current AWS SDKs speak.
//
//	go run github.com/sqspool/sqspool/cmd/sqsfake@latest -queue orders
//	export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:9324   # the line it prints
//
// Point an SDK at it with AWS_ENDPOINT_URL_SQS (any region and credentials
// do; the fake checks no signature). Queues come and go through the API
// (CreateQueue, DeleteQueue, ...); -queue creates some at start. Queue URLs
// have SQS's form (https://sqs.us-east-1.amazonaws.com/000000000000/NAME):
// SDKs that send requests to the endpoint, not to the queue URL, work.
// Everything is in memory and gone when the command stops, on SIGINT or
// SIGTERM: it stops accepting connections, ends the long polls in flight
// (they return no messages) and exits 0.
//
// Flags:
//
//	-addr        listen address (default 127.0.0.1:9324; port 0 picks a free one)
//	-queue NAME  create this queue at start; repeat for more; a name ending
//	             in .fifo makes a FIFO queue (content-based deduplication off)
//	-visibility  visibility timeout of the queues -queue creates (default 30s)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/sqsfake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, sqsfake.New(), os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "sqsfake:", err)
		os.Exit(1)
	}
}

// shutdownTimeout bounds the wait for requests in flight at the stop; long
// polls end at once, so only a request being answered is waited for.
const shutdownTimeout = 5 * time.Second

// queueNames collects the repeated -queue flag.
type queueNames []string

func (q *queueNames) String() string { return strings.Join(*q, ",") }

func (q *queueNames) Set(name string) error {
	*q = append(*q, name)
	return nil
}

// run parses args, creates the -queue queues in fake, serves it and prints
// the endpoint to stdout; it returns nil once ctx ends and the server has
// stopped.
func run(ctx context.Context, fake *sqsfake.Fake, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sqsfake", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9324", "listen address (port 0 picks a free one)")
	var queues queueNames
	fs.Var(&queues, "queue", "create this queue at start (repeatable; a name ending in .fifo makes a FIFO queue)")
	visibility := fs.Duration("visibility", 30*time.Second, "visibility timeout of the queues -queue creates (0s to 12h, whole seconds)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (flags: -addr, -queue, -visibility)", fs.Args())
	}
	if *visibility < 0 || *visibility > 12*time.Hour || *visibility%time.Second != 0 {
		return fmt.Errorf("-visibility %v: want whole seconds from 0s to 12h", *visibility)
	}

	urls := make([]string, len(queues))
	for i, name := range queues {
		attrs := map[string]string{string(types.QueueAttributeNameVisibilityTimeout): strconv.Itoa(int(visibility.Seconds()))}
		if strings.HasSuffix(name, ".fifo") {
			attrs[string(types.QueueAttributeNameFifoQueue)] = "true"
		}
		url, err := createQueue(ctx, fake, name, attrs)
		if err != nil {
			return err
		}
		urls[i] = url
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	// Request contexts derive from base: cancelling it at the stop ends the
	// long polls in flight, which the fake answers with no messages.
	base, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	srv := &http.Server{
		Handler:           fake.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	fmt.Fprintf(stdout, "AWS_ENDPOINT_URL_SQS=http://%s\n", ln.Addr())
	for i, name := range queues {
		fmt.Fprintf(stdout, "queue %s: %s\n", name, urls[i])
	}

	select {
	case err := <-served: // the listener failed
		return err
	case <-ctx.Done():
	}
	cancelRequests()
	stopCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(stopCtx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// createQueue creates a queue as a CreateQueue call would, with SQS's checks
// of the name and attributes.
func createQueue(ctx context.Context, fake *sqsfake.Fake, name string, attrs map[string]string) (string, error) {
	out, err := fake.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &name, Attributes: attrs})
	if err != nil {
		return "", fmt.Errorf("-queue %s: %w", name, err)
	}
	return *out.QueueUrl, nil
}
