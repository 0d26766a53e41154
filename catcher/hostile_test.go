package catcher_test

// The catcher facing overload and hostile clients (issue 13), through a
// real Serve on loopback with sqsfake behind it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/catcher"
	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sqsfake"
)

// TestNoSendPastTheWriteDeadline: with one call slot held by SQS, the
// requests behind it must not be sent once the send could no longer be
// answered within the server's write timeout; they get 503 in time and
// leave nothing in the queue (on cd31227 they were sent later and stored
// while their clients had already failed).
func TestNoSendPastTheWriteDeadline(t *testing.T) {
	const (
		writeTimeout = 30 * time.Second
		sendTimeout  = 20 * time.Second
	)
	f, url := newQueue(t, "work", nil)
	clk := clock.NewManual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	checked := make(chan string, 2)
	s := serveLoopback(t, f, url, []catcher.Option{
		catcher.WithMaxInFlight(1), catcher.WithLinger(0), catcher.WithSendTimeout(sendTimeout), clock.Option[catcher.Option](clk),
		catcher.WithValidate(func(body []byte, _ *http.Request) error {
			if string(body) != "first" {
				checked <- string(body)
			}
			return nil
		}),
	}, catcher.WithServerConfig(func(srv *http.Server) { srv.WriteTimeout = writeTimeout }))
	g := holdSends(t, f)

	var wg sync.WaitGroup
	first := s.postAsync(&wg, "first")
	<-g.entered // the only call slot is taken
	second := s.postAsync(&wg, "second")
	third := s.postAsync(&wg, "third")
	// Both requests are read and checked: they wait behind the held call,
	// or are about to. The catcher's one timer for send-by times fires at
	// the last moment they may be sent, or a request that comes later than
	// that is refused on arrival: either way it is answered 503 and never
	// sent. (The timer counts only once it is armed; the first request arms
	// it.)
	<-checked
	<-checked
	bound, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !clk.BlockUntil(1, bound.Done()) {
		t.Error("no timer waits for the send-by time")
		g.release() // go on, to show what happens to them
	}

	// Past writeTimeout - sendTimeout a send could outlast the answer.
	clk.Advance(writeTimeout - sendTimeout)
	for _, ch := range []<-chan answer{second, third} {
		a := <-ch
		require.NoError(t, a.Err)
		assert.Equal(t, http.StatusServiceUnavailable, a.Status, a.Error)
		assert.Equal(t, "1", a.RetryAfter)
	}
	g.release() // the first call, sent in time, goes through
	a := <-first
	require.NoError(t, a.Err)
	assert.Equal(t, http.StatusAccepted, a.Status, a.Error)
	wg.Wait()

	msgs := f.Messages(url)
	require.Len(t, msgs, 1, "only the request answered 202 is in the queue")
	assert.Equal(t, "first", msgs[0].Body)
	assert.Equal(t, 1, f.Calls(sqsfake.OpSendMessageBatch))
}

// TestServeRejectsAWriteTimeoutShorterThanASend: every request would be
// refused, so Serve says so at once.
func TestServeRejectsAWriteTimeoutShorterThanASend(t *testing.T) {
	f, url := newQueue(t, "work", nil)
	h, err := catcher.New(context.Background(), f, url, catcher.WithSendTimeout(5*time.Second))
	require.NoError(t, err)
	// A cancelled context: had Serve started serving, it would stop at once
	// and return nil.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	err = catcher.Serve(ctx, ln, h, catcher.WithServerConfig(func(s *http.Server) { s.WriteTimeout = 5 * time.Second }))
	assert.ErrorContains(t, err, "WriteTimeout")

	ln, err = net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	err = catcher.Serve(ctx, ln, h, catcher.WithShutdownTimeout(0), catcher.WithMaxConnections(0))
	assert.ErrorContains(t, err, "WithShutdownTimeout(0s)")
	assert.ErrorContains(t, err, "WithMaxConnections(0)")
}

// TestBodyMemoryIsBounded: bodies in progress share one memory budget; a
// request that would take it past the bound gets 503 while a smaller one
// still fits, and the request holding the memory completes.
func TestBodyMemoryIsBounded(t *testing.T) {
	const (
		maxBody = 64 << 10
		budget  = 192 << 10
		partial = 60 << 10 // what the slow client sends before it pauses
	)
	f, url := newQueue(t, "work", nil)
	watch, wrap := watchBodies(partial, 10)
	s := serveLoopback(t, f, url, []catcher.Option{
		catcher.WithMaxBodyBytes(maxBody), catcher.WithMaxBodyMemory(budget), catcher.WithLinger(0),
	}, wrap)

	slow, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	defer slow.Close()
	_, err = fmt.Fprintf(slow, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", s.addr, maxBody, strings.Repeat("a", partial))
	require.NoError(t, err)
	watch.wait(t, 1) // it holds chunks for 60 KiB and one more, waiting for the rest

	big := s.post(t, strings.Repeat("b", maxBody))
	assert.Equal(t, http.StatusServiceUnavailable, big.Status, big.Error)
	assert.Equal(t, "1", big.RetryAfter)
	small := s.post(t, "small")
	assert.Equal(t, http.StatusAccepted, small.Status, small.Error)

	_, err = slow.Write([]byte(strings.Repeat("a", maxBody-partial)))
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufioReader(slow), nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)

	bodies := map[int]int{}
	for _, m := range f.Messages(url) {
		bodies[len(m.Body)]++
	}
	assert.Equal(t, map[int]int{maxBody: 1, len("small"): 1}, bodies)
}

// TestConnectionsAreBounded: a connection past WithMaxConnections is closed
// before anything is read from it.
func TestConnectionsAreBounded(t *testing.T) {
	f, url := newQueue(t, "work", nil)
	s := serveLoopback(t, f, url, nil, catcher.WithMaxConnections(2))
	held := make([]net.Conn, 0, 2)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", s.addr)
		require.NoError(t, err)
		held = append(held, c)
		// A complete request on each proves the server took the connection.
		_, err = fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufioReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusAccepted, resp.StatusCode)
	}
	extra, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	defer extra.Close()
	_, _ = fmt.Fprintf(extra, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
	_, err = http.ReadResponse(bufioReader(extra), nil)
	assert.Error(t, err, "the third connection is closed unanswered")
	assert.Len(t, f.Messages(url), 2)
}

// TestFIFONeverAnswersWithAnotherRequestsMessage: a FIFO deduplication id
// reused with another body or group is answered 409 and stores nothing; an
// exact repeat gets the first message's id; tenants have their own ids;
// and even two catchers that cannot see each other's ids never answer 202
// with a message that holds another request's body (on cd31227 the second
// request got 202 with the first one's MessageId).
func TestFIFONeverAnswersWithAnotherRequestsMessage(t *testing.T) {
	f, url := newQueue(t, "orders.fifo", map[string]string{"FifoQueue": "true"})
	tenant := catcher.WithDedupNamespace(func(r *http.Request) (string, error) { return r.Header.Get("X-Tenant"), nil })
	s := serveLoopback(t, f, url, []catcher.Option{catcher.WithLinger(0), tenant})
	other := serveLoopback(t, f, url, []catcher.Option{catcher.WithLinger(0), tenant})
	const g, d = catcher.HeaderMessageGroupID, catcher.HeaderDeduplicationID

	first := s.post(t, "pay 10", g, "acct-1", d, "op-1", "X-Tenant", "acme")
	require.Equal(t, http.StatusAccepted, first.Status, first.Error)

	for name, a := range map[string]answer{
		"other body":  s.post(t, "pay 99", g, "acct-1", d, "op-1", "X-Tenant", "acme"),
		"other group": s.post(t, "pay 10", g, "acct-2", d, "op-1", "X-Tenant", "acme"),
	} {
		assert.Equal(t, http.StatusConflict, a.Status, name)
		assert.Contains(t, a.Error, "deduplication id", name)
		assert.Empty(t, a.MessageID, name)
	}
	repeat := s.post(t, "pay 10", g, "acct-1", d, "op-1", "X-Tenant", "acme")
	assert.Equal(t, http.StatusAccepted, repeat.Status, repeat.Error)
	assert.Equal(t, first.MessageID, repeat.MessageID, "a true repeat names the message it repeats")

	otherTenant := s.post(t, "pay 77", g, "acct-1", d, "op-1", "X-Tenant", "globex")
	assert.Equal(t, http.StatusAccepted, otherTenant.Status, otherTenant.Error)
	elsewhere := other.post(t, "pay 55", g, "acct-1", d, "op-1", "X-Tenant", "acme")
	assert.Equal(t, http.StatusAccepted, elsewhere.Status, elsewhere.Error)

	msgs := stored(f, url)
	for body, a := range map[string]answer{"pay 10": first, "pay 77": otherTenant, "pay 55": elsewhere} {
		assert.Equal(t, body, msgs[a.MessageID].Body, "the 202 names this request's message")
	}
	assert.Len(t, msgs, 3)
	assert.EqualValues(t, 2, s.h.Stats().Rejected[catcher.ReasonConflict])
}

// TestHeaderAttributesAreCheckedAndCapped: an invalid traceparent is
// dropped (as W3C trace context says a receiver must), a valid one kept;
// an over-long request id gets 400 and stores nothing.
func TestHeaderAttributesAreCheckedAndCapped(t *testing.T) {
	f, url := newQueue(t, "work", nil)
	s := serveLoopback(t, f, url, []catcher.Option{catcher.WithLinger(0)})
	const valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

	for _, tp := range []string{"not-a-trace", "00-00000000000000000000000000000000-b7ad6b7169203331-01", strings.ToUpper(valid), valid + "-x"} {
		a := s.post(t, "job", "Traceparent", tp, "X-Request-Id", "req-1")
		require.Equal(t, http.StatusAccepted, a.Status, a.Error)
		attrs := stored(f, url)[a.MessageID].Attributes
		assert.NotContains(t, attrs, "traceparent", tp)
		assert.Equal(t, "req-1", aws.ToString(attrs["x-request-id"].StringValue))
	}
	a := s.post(t, "job", "Traceparent", valid)
	require.Equal(t, http.StatusAccepted, a.Status, a.Error)
	assert.Equal(t, map[string]types.MessageAttributeValue{
		"traceparent": {DataType: aws.String("String"), StringValue: aws.String(valid)},
	}, stored(f, url)[a.MessageID].Attributes)
	assert.EqualValues(t, 4, s.h.Stats().DroppedTraceparents)

	before := len(f.Messages(url))
	long := s.post(t, "job", "X-Request-Id", strings.Repeat("r", 61440))
	assert.Equal(t, http.StatusBadRequest, long.Status)
	assert.Contains(t, long.Error, "X-Request-Id is longer than 256 bytes")
	assert.Len(t, f.Messages(url), before)
}

// TestQueueMaximumMessageSize: a queue whose limit is below 1 MiB holds
// body plus attributes to its own limit, answered 413 (cd31227 sent the
// message and passed on SQS's InvalidParameterValue as 400).
func TestQueueMaximumMessageSize(t *testing.T) {
	const limit = 2048
	f, url := newQueue(t, "small", map[string]string{"MaximumMessageSize": fmt.Sprint(limit)})
	s := serveLoopback(t, f, url, []catcher.Option{catcher.WithLinger(0)})

	atLimit := s.post(t, strings.Repeat("x", limit))
	assert.Equal(t, http.StatusAccepted, atLimit.Status, atLimit.Error)
	withAttr := s.post(t, strings.Repeat("x", limit-10), "X-Request-Id", "req-123456")
	assert.Equal(t, http.StatusRequestEntityTooLarge, withAttr.Status, withAttr.Error)
	assert.Contains(t, withAttr.Error, "2048")
	over := s.post(t, strings.Repeat("x", limit+1))
	assert.Equal(t, http.StatusRequestEntityTooLarge, over.Status, over.Error)
	assert.Len(t, f.Messages(url), 1)
	assert.EqualValues(t, 2, s.h.Stats().Rejected[catcher.ReasonTooLarge])
}

// TestBodiesArriveIntact: bodies of every size around the chunk bounds of
// the reader, with Content-Length and chunked, are stored byte for byte;
// one byte over the limit is 413 both ways.
func TestBodiesArriveIntact(t *testing.T) {
	f, url := newQueue(t, "work", nil)
	s := serveLoopback(t, f, url, []catcher.Option{catcher.WithMaxBodyBytes(catcher.MaxMessageBytes), catcher.WithLinger(0)})
	for _, size := range []int{1, 4095, 4096, 4097, 12288, 12289, 61440, 61441, 200_003, catcher.MaxMessageBytes, catcher.MaxMessageBytes + 1} {
		body := make([]byte, size)
		for i := range body {
			body[i] = 'a' + byte(i%23) // a misplaced chunk shows
		}
		for _, chunked := range []bool{false, true} {
			var r io.Reader = bytes.NewReader(body)
			if chunked {
				r = io.MultiReader(r) // hides the length: the client sends it chunked
			}
			resp, err := s.client.Post(s.url, "text/plain", r)
			require.NoError(t, err)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			var a answer
			require.NoError(t, json.Unmarshal(b, &a))
			if size > catcher.MaxMessageBytes {
				assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "%d bytes, chunked %t", size, chunked)
				continue
			}
			require.Equal(t, http.StatusAccepted, resp.StatusCode, "%d bytes, chunked %t: %s", size, chunked, a.Error)
			assert.True(t, stored(f, url)[a.MessageID].Body == string(body), "%d bytes, chunked %t: stored as sent", size, chunked)
		}
	}
}
