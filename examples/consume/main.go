// Command consume is the smallest complete sqspool consumer: a pool decodes
// each message into a Job, the handler prints it, and the pool deletes it.
// It depends on nothing but sqspool: copy it as a start.
//
//	go run ./examples/consume              # in memory: seeds three jobs, handles them, exits
//	go run ./examples/consume -queue jobs  # SQS: consumes until SIGINT or SIGTERM
//
// With -queue (the name or URL of an existing queue) it uses the default AWS
// configuration: credentials, region and endpoint from the environment and
// ~/.aws, so AWS_ENDPOINT_URL_SQS points it at a local SQS such as
// cmd/sqsfake. Without -queue it runs against an in-memory sqsfake.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

// Job is the JSON body of a message.
type Job struct {
	ID   int    `json:"id"`
	Task string `json:"task"`
}

func main() {
	queue := flag.String("queue", "", "queue name or URL on SQS (default: an in-memory queue with three jobs)")
	wait := flag.Duration("wait", 20*time.Second, "long-poll wait; 1s suits emulators that hold a poll open until it is full")
	flag.Parse()

	// SIGINT or SIGTERM cancels ctx; the pool then stops gracefully: it stops
	// receiving, lets running handlers finish and flushes their deletes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *queue, *wait); err != nil {
		fmt.Fprintln(os.Stderr, "consume:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, queue string, wait time.Duration) error {
	// A nil Client makes the pool build an *sqs.Client from the default AWS
	// configuration, endpoint overrides included.
	consumer := &sqspool.Consumer{Queue: queue}
	var seeded int64
	if queue == "" {
		fake := sqsfake.New()
		consumer = &sqspool.Consumer{Client: fake, Queue: fake.MustCreateQueue("jobs", nil)}
		for i, task := range []string{"resize image", "send email", "charge card"} {
			fake.MustSendJSON(consumer.Queue, Job{ID: i + 1, Task: task})
			seeded++
		}
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
	}, sqspool.WithWaitTime(wait))
	if err != nil {
		return err
	}
	err = pool.Wait() // until ctx ends and the pool has stopped
	st := pool.Stats()
	fmt.Printf("processed %d, deleted %d, SQS requests %d\n", st.Processed, st.Deleted, st.Requests())
	return err
}
