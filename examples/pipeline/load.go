package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// loadResult is what the load generator saw.
type loadResult struct {
	sent     int      // requests sent, not counting retries
	accepted []string // ids of the requests answered 202
	cutShort int      // requests whose answer ctx's end cut off
	retries  int      // requests sent again after a 503
}

// maxAttempts bounds how often one request is sent. The catcher answers 503
// with Retry-After when SQS throttled or failed; a client retries with the
// same id, which the idempotent sink turns into one write even if the
// first attempt did reach the queue.
const maxAttempts = 5

// sendRequests POSTs n requests to url, concurrency at a time, as clients
// of the catcher would.
func sendRequests(ctx context.Context, url string, n, concurrency int) loadResult {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = concurrency
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()

	var (
		mu  sync.Mutex
		res loadResult
		wg  sync.WaitGroup
	)
	next := make(chan int)
	for range min(concurrency, n) {
		wg.Go(func() {
			for i := range next {
				id := fmt.Sprintf("req-%06d", i)
				body, _ := json.Marshal(Request{ID: id, Text: fmt.Sprintf("request %d of %d, sent by the load generator", i+1, n)})
				ok, retries := post(ctx, client, url, body)
				mu.Lock()
				res.sent++
				res.retries += retries
				switch {
				case ok:
					res.accepted = append(res.accepted, id)
				case ctx.Err() != nil:
					res.cutShort++
				}
				mu.Unlock()
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return res
}

// post sends one request until it is accepted, retrying after a 503 as
// Retry-After says (at most a second here).
func post(ctx context.Context, client *http.Client, url string, body []byte) (accepted bool, retries int) {
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return false, retries
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return false, retries
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			return true, retries
		}
		if resp.StatusCode != http.StatusServiceUnavailable || attempt == maxAttempts {
			return false, retries
		}
		wait := time.Second
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			wait = min(time.Duration(s)*time.Second, wait)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return false, retries
		}
		retries++
	}
}
