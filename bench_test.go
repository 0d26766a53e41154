package sqspool

// Benchmarks of the pool on the interface-level fake (scenarios 1, 3 and 5
// of the sqsbench table; the HTTP scenarios live in the bench module):
//
//	go test -run '^$' -bench 'Overhead|CostSteady|Memory' -benchtime 100000x -count 6 . | tee new.txt
//	go test -run '^$' -bench CostEmptyQueue -benchtime 5x .
//	benchstat old.txt new.txt
//
// One op is one message: ns/op is the cost of a message, allocs/op and
// B/op its allocations (the fake's included). Custom metrics: msgs/s,
// req/1000msgs (SQS requests per 1000 messages; 200 is the floor with
// 10-message receives and deletes), cpu-µs/msg (process CPU time per
// message, the figure least disturbed by other load on the machine),
// del-fill (entries per DeleteMessageBatch).

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sqsfake"
)

// benchBody is the benchmark message: about 200 bytes of JSON.
type benchBody struct {
	ID       int      `json:"id"`
	Kind     string   `json:"kind"`
	Customer string   `json:"customer"`
	SKU      string   `json:"sku"`
	Quantity int      `json:"quantity"`
	Amount   float64  `json:"amount"`
	Currency string   `json:"currency"`
	Tags     []string `json:"tags"`
	Note     string   `json:"note"`
}

func benchMakeBody(i int) string {
	s := `{"id":` + strconv.Itoa(i) + `,"kind":"order.created","customer":"cust-` + strconv.Itoa(100000+i%900000) +
		`","sku":"SKU-` + strconv.Itoa(10000+i%90000) + `","quantity":` + strconv.Itoa(1+i%7) +
		`,"amount":` + strconv.Itoa(10+i%90) + `.5,"currency":"EUR","tags":["bench","sqspool"],"note":"`
	return s + strings.Repeat("x", max(0, 200-len(s)-2)) + `"}`
}

var benchIDs = [10]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

var benchQuiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// benchSend sends n messages, 10 per SendMessageBatch.
func benchSend(b *testing.B, f *sqsfake.Fake, url string, from, n int) {
	b.Helper()
	for i := 0; i < n; i += 10 {
		k := min(10, n-i)
		entries := make([]types.SendMessageBatchRequestEntry, k)
		for j := range k {
			entries[j] = types.SendMessageBatchRequestEntry{Id: &benchIDs[j], MessageBody: aws.String(benchMakeBody(from + i + j))}
		}
		if _, err := f.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchQueue(b *testing.B, n int, opts ...sqsfake.Option) (*sqsfake.Fake, string) {
	f := sqsfake.New(append([]sqsfake.Option{sqsfake.WithSeed(1)}, opts...)...)
	url := f.MustCreateQueue("bench", map[string]string{"VisibilityTimeout": "60"})
	benchSend(b, f, url, 0, n)
	return f, url
}

// benchConsumerCalls counts the consumer's SQS requests the fake served.
func benchConsumerCalls(f *sqsfake.Fake) int64 {
	var n int64
	for api, c := range f.CallCounts() {
		if api != sqsfake.OpSendMessageBatch && api != sqsfake.OpSendMessage {
			n += int64(c)
		}
	}
	return n
}

func benchCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchRun times consume over n preloaded messages and reports the
// metrics. consume returns once all n are handled and deleted.
func benchRun(b *testing.B, consume func(f *sqsfake.Fake, url string, n int)) {
	n := max(b.N, 100)
	f, url := benchQueue(b, n)
	calls0 := benchConsumerCalls(f)
	runtime.GC()
	cpu0 := benchCPU()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	consume(f, url, n)
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := benchCPU() - cpu0
	st := f.Stats(url)
	if st.Deleted != int64(n) {
		b.Fatalf("deleted %d of %d", st.Deleted, n)
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(benchConsumerCalls(f)-calls0)*1000/float64(n), "req/1000msgs")
	b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(n), "cpu-µs/msg")
}

// benchHandLoop is the minimal hand-written consumer: one goroutine per
// core, each receiving 10 (asking for the attributes sqspool asks for),
// decoding each body and deleting the 10 in one batch.
func benchHandLoop(b *testing.B, f *sqsfake.Fake, url string, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handled atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := sqs.ReceiveMessageInput{
				QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
				AttributeNames:              []types.QueueAttributeName{"All"},
				MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
				MessageAttributeNames:       []string{"All"},
			}
			entries := make([]types.DeleteMessageBatchRequestEntry, 0, 10)
			for handled.Load() < int64(n) {
				out, err := f.ReceiveMessage(ctx, &in)
				if err != nil {
					if ctx.Err() == nil {
						b.Error(err)
					}
					return
				}
				entries = entries[:0]
				for i, m := range out.Messages {
					var v benchBody
					if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &v); err != nil {
						b.Error(err)
						return
					}
					entries = append(entries, types.DeleteMessageBatchRequestEntry{Id: &benchIDs[i], ReceiptHandle: m.ReceiptHandle})
				}
				if len(entries) == 0 {
					continue
				}
				if _, err := f.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: entries}); err != nil {
					b.Error(err)
					return
				}
				if handled.Add(int64(len(entries))) >= int64(n) {
					cancel() // ends the other goroutines' long polls
				}
			}
		}()
	}
	wg.Wait()
}

// benchPool consumes with sqspool until n messages are handled, then shuts
// down (which flushes the last deletes).
func benchPool(b *testing.B, f *sqsfake.Fake, url string, n int, h Handler[benchBody], opts ...Option) *Pool {
	var handled atomic.Int64
	done := make(chan struct{})
	pool, err := StartPool(context.Background(), &Consumer{Client: f, Queue: url},
		func(ctx context.Context, v *benchBody) error {
			var err error
			if h != nil {
				err = h(ctx, v)
			}
			if handled.Add(1) == int64(n) {
				close(done)
			}
			return err
		}, append([]Option{WithLogger(benchQuiet)}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	<-done
	if err := pool.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	if err := pool.Wait(); err != nil {
		b.Fatal(err)
	}
	return pool
}

// BenchmarkOverhead is scenario 1: the pool against the hand loop on the
// interface-level fake, zero latency, 200-byte JSON bodies, no-op handler.
// Compare the sub-benchmarks' ns/op (target: sqspool's msgs/s at least
// 0.85x the hand loop's).
func BenchmarkOverhead(b *testing.B) {
	b.Run("hand", func(b *testing.B) {
		benchRun(b, func(f *sqsfake.Fake, url string, n int) { benchHandLoop(b, f, url, n) })
	})
	b.Run("sqspool", func(b *testing.B) {
		benchRun(b, func(f *sqsfake.Fake, url string, n int) { benchPool(b, f, url, n, nil) })
	})
	b.Run("sqspool-64workers", func(b *testing.B) {
		benchRun(b, func(f *sqsfake.Fake, url string, n int) { benchPool(b, f, url, n, nil, WithWorkers(64)) })
	})
}

// BenchmarkCostSteady is scenario 3 under load: SQS requests per 1000
// messages (floor 200, target <= 210) and delete batch fill (10 is full),
// with the defaults and a no-op handler, and with 64 workers, a 5 ms
// handler and 10 ms per SQS call.
func BenchmarkCostSteady(b *testing.B) {
	for _, c := range []struct {
		name    string
		latency time.Duration
		handler time.Duration
		opts    []Option
	}{
		{"defaults", 0, 0, nil},
		{"64workers-5ms-handler-10ms-sqs", 10 * time.Millisecond, 5 * time.Millisecond, []Option{WithWorkers(64)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var h Handler[benchBody]
			if c.handler > 0 {
				h = func(ctx context.Context, _ *benchBody) error { time.Sleep(c.handler); return nil }
			}
			var pool *Pool
			benchRun(b, func(f *sqsfake.Fake, url string, n int) {
				if c.latency > 0 {
					f.SetFaults(sqsfake.Faults{sqsfake.AllOps: {Latency: c.latency}})
				}
				pool = benchPool(b, f, url, n, h, c.opts...)
			})
			st := pool.Stats()
			if d := st.Calls["DeleteMessageBatch"]; d > 0 {
				b.ReportMetric(float64(st.Deleted)/float64(d), "del-fill")
			}
			if r := st.Calls["ReceiveMessage"]; r > 0 {
				b.ReportMetric(float64(st.Received)/float64(r), "recv-fill")
			}
		})
	}
}

// benchCountingClient counts the ReceiveMessage calls running now.
type benchCountingClient struct {
	*sqsfake.Fake
	active atomic.Int64
}

func (c *benchCountingClient) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	c.active.Add(1)
	defer c.active.Add(-1)
	return c.Fake.ReceiveMessage(ctx, in, optFns...)
}

// BenchmarkCostEmptyQueue is scenario 3 on an empty queue: ReceiveMessage
// calls per poller per minute with long polling (target <= 3), counted
// over simulated minutes of a manual clock: min(b.N, 10) of them (the count
// does not get better with more), so -benchtime 5x is plenty.
func BenchmarkCostEmptyQueue(b *testing.B) {
	for _, workers := range []int{10, 64} {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			clk := clock.NewManual(time.Now())
			f := sqsfake.New(clock.Option[sqsfake.Option](clk), sqsfake.WithSeed(1))
			url := f.MustCreateQueue("empty", map[string]string{"VisibilityTimeout": "60"})
			c := &benchCountingClient{Fake: f}
			pool, err := StartPool(context.Background(), &Consumer{Client: c, Queue: url},
				func(context.Context, *benchBody) error { return nil },
				WithWorkers(workers), withClock(clk), WithLogger(benchQuiet))
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if err := pool.Shutdown(context.Background()); err != nil {
					b.Error(err)
				}
				if err := pool.Wait(); err != nil {
					b.Error(err)
				}
			}()
			pollers := (workers + 9) / 10 // the pool's default: one per 10 workers
			waitFor := func(cond func() bool) {
				deadline := time.Now().Add(10 * time.Second)
				for !cond() {
					if time.Now().After(deadline) {
						b.Fatalf("not settled: %d receives active, %d timers", c.active.Load(), clk.Timers())
					}
					time.Sleep(50 * time.Microsecond)
				}
			}
			// At rest every poller waits on one clock timer (its long poll,
			// or the receive fill when it found fewer than 10 free slots),
			// besides the pool's own timers: count them once every poller
			// is in a long poll, then after each step wait for as many.
			time.Sleep(100 * time.Millisecond)
			clk.Advance(100 * time.Millisecond)
			waitFor(func() bool { return c.active.Load() >= int64(pollers) })
			time.Sleep(100 * time.Millisecond)
			rest := clk.Timers()
			calls0 := f.Calls(sqsfake.OpReceiveMessage)
			minutes := min(b.N, 10)
			b.ResetTimer()
			for range minutes * 60 {
				clk.Advance(time.Second)
				waitFor(func() bool { return clk.Timers() >= rest })
			}
			b.StopTimer()
			calls := f.Calls(sqsfake.OpReceiveMessage) - calls0
			b.ReportMetric(float64(calls)/float64(minutes)/float64(pollers), "req/min/poller")
		})
	}
}

// BenchmarkMemory is scenario 5: b.N messages through 64 workers while a
// feeder keeps at most 2,000 messages queued; live heap and goroutines
// must stay flat. It reports the peak heap, the growth of the live heap
// between 10% and 100% of the messages, and goroutines at the end
// against the start.
func BenchmarkMemory(b *testing.B) {
	n := max(b.N, 1000)
	f := sqsfake.New(sqsfake.WithSeed(1))
	url := f.MustCreateQueue("memory", map[string]string{"VisibilityTimeout": "60"})
	var handled atomic.Int64
	tenth := make(chan struct{})
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	feederDone := make(chan struct{})
	go func() {
		defer close(feederDone)
		for sent := 0; sent < n && ctx.Err() == nil; {
			if int64(sent)-handled.Load() >= 2_000 {
				time.Sleep(200 * time.Microsecond)
				continue
			}
			k := min(10, n-sent)
			entries := make([]types.SendMessageBatchRequestEntry, k)
			for j := range k {
				entries[j] = types.SendMessageBatchRequestEntry{Id: &benchIDs[j], MessageBody: aws.String(benchMakeBody(sent + j))}
			}
			if _, err := f.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries}); err != nil {
				b.Error(err)
				return
			}
			sent += k
		}
	}()
	var peak atomic.Uint64
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-tick.C:
			case <-done:
				return
			}
		}
	}()
	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	b.ReportAllocs()
	b.ResetTimer()
	pool, err := StartPool(ctx, &Consumer{Client: f, Queue: url},
		func(context.Context, *benchBody) error {
			switch handled.Add(1) {
			case int64(n / 10):
				close(tenth)
			case int64(n):
				close(done)
			}
			return nil
		}, WithWorkers(64), WithLogger(benchQuiet))
	if err != nil {
		b.Fatal(err)
	}
	<-tenth
	heap0, g0 := live(), runtime.NumGoroutine()
	<-done
	heap1, g1 := live(), runtime.NumGoroutine()
	b.StopTimer()
	if err := pool.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	if err := pool.Wait(); err != nil {
		b.Fatal(err)
	}
	<-feederDone
	<-samplerDone
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
	b.ReportMetric((float64(heap1)-float64(heap0))/(1<<20), "live-heap-growth-MiB")
	b.ReportMetric(float64(g1-g0), "goroutine-growth")
}
