package bench_test

// Benchmarks of the HTTP and side scenarios (2, 4, 6, 7 of the sqsbench
// table), one op per message (request, item), for benchstat:
//
//	cd bench && go test -run '^$' -bench . -benchtime 5000x -count 6 | tee new.txt
//	benchstat old.txt new.txt
//
// The scenarios on the interface-level fake (1, 3, 5) are benchmarks of the
// root package: go test -run '^$' -bench . (from the repo root).
//
// ns/op is the wall time per message over the whole run, set-up (preload,
// server start) and drain included: compare msgs/s and req/1000msgs, which
// come from the steady window between 10% and 90% of the messages.
// cpu-µs/msg is process CPU time per message (load generator and fakes
// included), the figure least disturbed by other load on the machine.

import (
	"context"
	"testing"
	"time"

	"github.com/sqspool/sqspool/bench/internal/scen"
)

func report(b *testing.B, r scen.Result, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(r.Rate, "msgs/s")
	b.ReportMetric(r.ReqPer1000, "req/1000msgs")
	b.ReportMetric(r.CPUPerMsg, "cpu-µs/msg")
}

// BenchmarkLatencyHTTP is scenario 2 (sqspool) and 4 (gocloud.dev): the
// real SDK client against sqsfake.Handler on loopback, 10 ms per SQS call,
// a 5 ms handler, 64 workers (handler goroutines).
func BenchmarkLatencyHTTP(b *testing.B) {
	for _, c := range []struct {
		name    string
		gocloud bool
	}{{"sqspool", false}, {"gocloud", true}} {
		b.Run(c.name, func(b *testing.B) {
			n := max(b.N, 500)
			b.ReportAllocs()
			r, err := scen.LatencyRun(context.Background(), n, c.gocloud)
			report(b, r, err)
		})
	}
}

// BenchmarkCatcherLoopback is scenario 6: requests from 64 keep-alive
// clients through a catcher on 127.0.0.1 into the fake; one op is one
// request. req/1000msgs is SendMessageBatch calls per 1000 requests.
func BenchmarkCatcherLoopback(b *testing.B) {
	for _, latency := range []time.Duration{0, 10 * time.Millisecond} {
		b.Run("sqs-latency="+latency.String(), func(b *testing.B) {
			b.ReportAllocs()
			r, err := scen.CatcherRun(context.Background(), 64, latency, int64(max(b.N, 1000)))
			report(b, r, err)
		})
	}
}

// BenchmarkSinkDynamoDB is scenario 7: 64 callers writing one item each
// per Put, 5 ms per DynamoDB call, batched (BatchWriteItem) or with one
// PutItem per item; one op is one item. req/1000msgs is DynamoDB calls per
// 1000 items.
func BenchmarkSinkDynamoDB(b *testing.B) {
	for _, c := range []struct {
		name    string
		batched bool
	}{{"batched", true}, {"putitem", false}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			r, err := scen.SinkRun(context.Background(), max(b.N, 500), c.batched)
			report(b, r, err)
		})
	}
}
