package catcher

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sqspool/sqspool/sqsfake"
)

// documented are the statuses the package doc lists.
var documented = map[int]bool{202: true, 400: true, 405: true, 408: true, 413: true, 422: true, 502: true, 503: true}

// Fuzz flags.
const (
	fuzzFIFO         = 1 << iota // the queue is FIFO
	fuzzContentDedup             // with content-based deduplication
	fuzzJSON                     // WithJSON
	fuzzChunked                  // no Content-Length
	fuzzFaults                   // SQS fails calls and entries at random
)

// FuzzCatcher drives the handler with arbitrary methods, bodies, headers
// and queue kinds. Whatever comes in: no panic, a documented status with a
// JSON answer, and a 2xx exactly when the message is in the queue.
func FuzzCatcher(f *testing.F) {
	f.Add("POST", []byte(`{"job":1}`), "", "", traceparent, uint8(fuzzJSON))
	f.Add("POST", []byte(`{"job":`), "", "", "", uint8(fuzzJSON))
	f.Add("POST", []byte(""), "", "", "", uint8(0))
	f.Add("GET", []byte("x"), "", "", "", uint8(0))
	f.Add("POST", []byte("a\x00b"), "", "", "", uint8(fuzzChunked))
	f.Add("POST", []byte("\xff\xfe"), "", "", "", uint8(0))
	f.Add("POST", bytes.Repeat([]byte("x"), 5000), "", "", "", uint8(fuzzChunked))
	f.Add("POST", []byte("order"), "g1", "d1", "", uint8(fuzzFIFO))
	f.Add("POST", []byte("order"), "", "", "", uint8(fuzzFIFO))
	f.Add("POST", []byte("order"), "g 1", "", "", uint8(fuzzFIFO|fuzzContentDedup))
	f.Add("POST", []byte("order"), "g1", "", "", uint8(fuzzFIFO))
	f.Add("POST", []byte("hello"), "", "", "\xff", uint8(0))
	f.Add("POST", []byte("flaky"), "", "", "", uint8(fuzzFaults))
	f.Add("PATCH", []byte("x"), "", "", "", uint8(fuzzFIFO))

	f.Fuzz(func(t *testing.T, method string, body []byte, group, dedup, trace string, flags uint8) {
		req, err := http.NewRequest(method, "http://catcher.test/", bytes.NewReader(body))
		if err != nil {
			t.Skip("not a request net/http would build")
		}
		if flags&fuzzChunked != 0 {
			req.ContentLength = -1
		}
		req.Header.Set(HeaderMessageGroupID, group)
		req.Header.Set(HeaderDeduplicationID, dedup)
		req.Header.Set(HeaderTraceparent, trace)

		fake := sqsfake.New()
		name, attrs := "work", map[string]string(nil)
		if flags&fuzzFIFO != 0 {
			name, attrs = "work.fifo", map[string]string{"FifoQueue": "true"}
			if flags&fuzzContentDedup != 0 {
				attrs["ContentBasedDeduplication"] = "true"
			}
		}
		url := fake.MustCreateQueue(name, attrs)
		if flags&fuzzFaults != 0 {
			fake.SetFaults(sqsfake.Faults{sqsfake.OpSendMessageBatch: {ErrorRate: 0.3, ThrottleRate: 0.2, PartialFailureRate: 0.3}})
		}
		opts := []Option{WithLinger(0), WithMaxBodyBytes(4096)}
		if flags&fuzzJSON != 0 {
			opts = append(opts, WithJSON())
		}
		h := mustNew(t, fake, url, opts...)
		defer func() {
			if err := h.Close(context.Background()); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()

		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		t.Logf("%s %q (%d bytes) -> %d %s", method, body[:min(len(body), 40)], len(body), rec.Code, rec.Body)

		if !documented[rec.Code] {
			t.Fatalf("undocumented status %d: %s", rec.Code, rec.Body)
		}
		var answer struct {
			MessageID string `json:"messageId"`
			Error     string `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Fatalf("answer is not JSON: %q", rec.Body)
		}
		stored := fake.Messages(url)
		if rec.Code/100 == 2 {
			if len(stored) != 1 || stored[0].MessageID != answer.MessageID || stored[0].Body != string(body) {
				t.Fatalf("202 %q but the queue holds %+v", answer.MessageID, stored)
			}
			return
		}
		if answer.Error == "" {
			t.Fatalf("status %d without an error message", rec.Code)
		}
		if len(stored) != 0 {
			t.Fatalf("status %d but the queue holds %+v", rec.Code, stored)
		}
		if rec.Code == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
		if rec.Code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != http.MethodPost {
			t.Fatal("405 without Allow: POST")
		}
	})
}
