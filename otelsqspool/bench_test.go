package otelsqspool_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/otelsqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

// BenchmarkObserverNoProvider is what otelsqspool costs an application that
// installed no OpenTelemetry provider: a pool on sqsfake with the observer
// on the global no-op providers ("otel-noop") against a pool without one
// ("none"). "otel-sdk" shows, for scale, the cost with SDK providers that
// sample every span and aggregate every metric (exporting nothing). One op
// is one message; the body is a small JSON object, and each message carries
// a traceparent attribute. Compare cpu-µs/msg (process CPU time per
// message, which other load on the machine disturbs least), msgs/s and
// allocs/op:
//
//	go test -run '^$' -bench BenchmarkObserverNoProvider -benchtime 50000x -count 6 ./otelsqspool/ | tee bench.txt
//	benchstat -col /observer bench.txt
func BenchmarkObserverNoProvider(b *testing.B) {
	b.Run("observer=none", func(b *testing.B) { benchPool(b, nil) })
	b.Run("observer=otel-noop", func(b *testing.B) { benchPool(b, otelsqspool.New()) })
	b.Run("observer=otel-sdk", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		defer func() {
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		}()
		benchPool(b, otelsqspool.New(otelsqspool.WithTracerProvider(tp), otelsqspool.WithMeterProvider(mp),
			otelsqspool.WithPropagator(propagation.TraceContext{})))
	})
}

var benchEntryIDs = [10]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

// benchPool loads b.N messages, then times a pool consuming all of them.
func benchPool(b *testing.B, obs sqspool.Observer) {
	n := b.N
	f := sqsfake.New(sqsfake.WithSeed(1))
	url := f.MustCreateQueue("bench", map[string]string{"VisibilityTimeout": "60"})
	attrs := map[string]types.MessageAttributeValue{
		"traceparent": {DataType: str("String"), StringValue: str(traceparent)},
	}
	for i := 0; i < n; i += 10 {
		entries := make([]types.SendMessageBatchRequestEntry, min(10, n-i))
		for j := range entries {
			entries[j] = types.SendMessageBatchRequestEntry{
				Id: &benchEntryIDs[j], MessageBody: str(`{"name":"job-` + strconv.Itoa(i+j) + `"}`), MessageAttributes: attrs,
			}
		}
		if _, err := f.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries}); err != nil {
			b.Fatal(err)
		}
	}
	opts := []sqspool.Option{sqspool.WithLogger(quiet)}
	if obs != nil {
		opts = append(opts, sqspool.WithObserver(obs))
	}
	var handled atomic.Int64
	done := make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	pool, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: f, Queue: url},
		func(context.Context, *job) error {
			if handled.Add(1) == int64(n) {
				close(done)
			}
			return nil
		}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	<-done
	if err := pool.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	if err := pool.Wait(); err != nil {
		b.Fatal(err)
	}
	if d := f.Stats(url).Deleted; d != int64(n) {
		b.Fatalf("deleted %d of %d", d, n)
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(n), "cpu-µs/msg")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
