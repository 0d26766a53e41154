// Command consume is the smallest complete sqspool consumer: a pool decodes
// each message into a Job, the handler prints it, and the pool deletes it.
//
//	go run ./examples/consume              # in memory: seeds three jobs, handles them, exits
//	go run ./examples/consume -queue jobs  # AWS: consumes until SIGINT or SIGTERM
//
// It uses AWS when the environment names it (AWS_PROFILE, AWS_ACCESS_KEY_ID,
// AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_SQS, ...); -queue, the name or URL of
// an existing queue, is required then. That includes the local emulators
// that ./scripts/emulators.sh starts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/internal/exampleenv"
	"github.com/sqspool/sqspool/sqsfake"
)

// Job is the JSON body of a message.
type Job struct {
	ID   int    `json:"id"`
	Task string `json:"task"`
}

func main() {
	queue := flag.String("queue", "", "queue name or URL (required when using AWS)")
	flag.Parse()

	// SIGINT or SIGTERM cancels ctx; the pool then stops gracefully: it stops
	// receiving, lets running handlers finish and flushes their deletes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *queue); err != nil {
		fmt.Fprintln(os.Stderr, "consume:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, queue string) error {
	// A nil Client makes the pool build an *sqs.Client from the default AWS
	// configuration, endpoint overrides included.
	consumer := &sqspool.Consumer{Queue: queue}
	var opts []sqspool.Option
	var seeded int64
	switch {
	case !exampleenv.UseAWS():
		fake := sqsfake.New()
		consumer = &sqspool.Consumer{Client: fake, Queue: fake.MustCreateQueue("jobs", nil)}
		for i, task := range []string{"resize image", "send email", "charge card"} {
			fake.MustSendJSON(consumer.Queue, Job{ID: i + 1, Task: task})
			seeded++
		}
	case queue == "":
		return errors.New("-queue is required when using AWS")
	case exampleenv.EmulatedSQS():
		// Emulators may hold a long poll open until it is full: poll briefly.
		opts = append(opts, sqspool.WithWaitTime(time.Second))
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var handled atomic.Int64
	pool, err := sqspool.StartPool(ctx, consumer, func(ctx context.Context, job *Job) error {
		m, _ := sqspool.MessageFrom(ctx)
		fmt.Printf("job %d: %s (message %s, delivery %d)\n", job.ID, job.Task, m.ID, m.ReceiveCount)
		if handled.Add(1) == seeded {
			cancel() // in memory: stop once the seeded jobs are done
		}
		return nil // done: the pool deletes the message
	}, opts...)
	if err != nil {
		return err
	}
	err = pool.Wait() // until ctx ends and the pool has stopped
	st := pool.Stats()
	fmt.Printf("processed %d, deleted %d, SQS requests %d\n", st.Processed, st.Deleted, st.Requests())
	return err
}
