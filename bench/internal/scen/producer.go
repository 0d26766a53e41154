package scen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

// producerJob is the value the producer scenario sends.
type producerJob struct {
	ID      int    `json:"id"`
	Payload string `json:"payload"`
}

// producerRun sends from conc goroutines through one Producer for window
// (after warm), against the fake with latency per SendMessageBatch, and
// checks that the fake stored every message Send reported.
func producerRun(ctx context.Context, conc int, latency, warm, window time.Duration) (Result, error) {
	f := sqsfake.New(sqsfake.WithSeed(1))
	url := f.MustCreateQueue("producer", nil)
	f.SetFaults(sqsfake.Faults{sqsfake.OpSendMessageBatch: {Latency: latency}})
	p, err := sqspool.NewProducer[producerJob](f, url)
	if err != nil {
		return Result{}, err
	}
	body := MakeBody(1)
	drive := func(d time.Duration) (int64, error) {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		var sent atomic.Int64
		var failOnce sync.Once
		var fail error
		var wg sync.WaitGroup
		for w := range conc {
			wg.Go(func() {
				for i := w; ctx.Err() == nil; i += conc {
					if _, err := p.Send(context.WithoutCancel(ctx), producerJob{ID: i, Payload: body}); err != nil {
						failOnce.Do(func() { fail = err })
						return
					}
					sent.Add(1)
				}
			})
		}
		wg.Wait()
		return sent.Load(), fail
	}
	t := &tally{scenario: "13 producer", variant: fmt.Sprintf("%d concurrent callers, fake %v/SendMessageBatch", conc, latency)}
	warmed, err := drive(warm)
	if err == nil {
		st0 := p.Stats()
		err = t.measure(func() (int64, error) { return drive(window) })
		st1 := p.Stats()
		t.calls, t.entries = st1.Calls-st0.Calls, st1.Entries-st0.Entries
	}
	err = errors.Join(err, p.Close(ctx))
	if stored := f.Stats(url).Sent; err == nil && stored != warmed+t.msgs {
		err = fmt.Errorf("producer: %d Sends returned a MessageId, %d messages stored", warmed+t.msgs, stored)
	}
	r := t.result()
	r.Note = fmt.Sprintf("Producer defaults (5 ms linger, 16 calls in flight); %d goroutines calling Send in a loop for %v; SendMessageBatch calls per 1,000 messages %.1f", conc, window, r.ReqPer1000)
	return r, err
}

// unbatchedRun is the baseline: conc goroutines each calling SendMessage.
func unbatchedRun(ctx context.Context, conc int, latency, window time.Duration) (Result, error) {
	f := sqsfake.New(sqsfake.WithSeed(1))
	url := f.MustCreateQueue("unbatched", nil)
	f.SetFaults(sqsfake.Faults{sqsfake.OpSendMessage: {Latency: latency}})
	body := MakeBody(1)
	t := &tally{scenario: "13 producer", variant: fmt.Sprintf("diagnostic: %d goroutines calling SendMessage, no batching", conc)}
	err := t.measure(func() (int64, error) {
		ctx, cancel := context.WithTimeout(ctx, window)
		defer cancel()
		var sent atomic.Int64
		var wg sync.WaitGroup
		for range conc {
			wg.Go(func() {
				for ctx.Err() == nil {
					if _, err := f.SendMessage(context.WithoutCancel(ctx), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}); err == nil {
						sent.Add(1)
					}
				}
			})
		}
		wg.Wait()
		return sent.Load(), nil
	})
	t.calls, t.entries = uint64(t.msgs), uint64(t.msgs)
	r := t.result()
	r.Note = "the same load without a producer: one call per message"
	return r, err
}

// Producer is scenario 13: sqspool.Producer's sends per second and
// SendMessageBatch calls per 1,000 messages at 1, 8 and 64 concurrent
// callers, against the in-process fake with 10 ms per call.
func Producer(ctx context.Context, o Opts) ([]Result, error) {
	warm := time.Duration(o.size(500, 100)) * time.Millisecond
	window := time.Duration(o.size(3000, 500)) * time.Millisecond
	var out []Result
	for _, conc := range []int{1, 8, 64} {
		r, err := producerRun(ctx, conc, httpLatency, warm, window)
		if err != nil {
			return out, err
		}
		o.logf("producer: %d callers: %.0f sends/s, %.1f calls/1000", conc, r.Rate, r.ReqPer1000)
		out = append(out, r)
	}
	r, err := unbatchedRun(ctx, 64, httpLatency, window)
	if err != nil {
		return out, err
	}
	o.logf("unbatched SendMessage, 64 callers: %.0f sends/s", r.Rate)
	return append(out, r), nil
}
