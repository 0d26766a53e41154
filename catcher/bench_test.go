package catcher

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sqspool/sqspool/sqsfake"
)

// BenchmarkCatcher sends parallel requests straight into ServeHTTP, backed
// by sqsfake, with the default linger and call bound. The parallelism is
// requests in flight per CPU; the latency is added to every
// SendMessageBatch, as the network to SQS would. It reports the request
// rate and the SendMessageBatch calls per 1000 requests (100 is the floor
// of 10 entries per call; 1000 would be no batching).
//
//	go test -run '^$' -bench BenchmarkCatcher ./catcher/
func BenchmarkCatcher(b *testing.B) {
	body := []byte(`{"job":"resize","image":"s3://bucket/key.jpg","width":640}`)
	for _, latency := range []time.Duration{0, 10 * time.Millisecond} {
		for _, parallelism := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("latency=%v/parallel=%d", latency, parallelism), func(b *testing.B) {
				fake, url := newFake(b, "bench")
				if latency > 0 {
					fake.SetFaults(sqsfake.Faults{sqsfake.OpSendMessageBatch: {Latency: latency}})
				}
				h := mustNew(b, fake, url)
				b.SetParallelism(parallelism)
				b.ReportAllocs()
				b.ResetTimer()
				began := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						rec := httptest.NewRecorder()
						h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
						if rec.Code != http.StatusAccepted {
							b.Errorf("status %d: %s", rec.Code, rec.Body)
							return
						}
					}
				})
				elapsed := time.Since(began)
				b.StopTimer()
				if err := h.Close(context.Background()); err != nil {
					b.Fatal(err)
				}
				st := h.Stats()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
				b.ReportMetric(st.CallsPer1000(), "calls/1000req")
			})
		}
	}
}
