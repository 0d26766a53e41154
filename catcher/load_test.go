package catcher_test

// Load tests: bounded in count, loopback only, asserting on counts and heap
// bounds, never on timings, so that two busy cores do not make them flaky.

import (
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/catcher"
)

// idleConns is how many connections declare a 1 MiB body and send none.
const idleConns = 1000

// TestIdleBodiesTakeNoMemory: connections that send the headers of a POST
// with Content-Length 1 MiB and then nothing must not make the catcher
// hold memory for the bodies they announce (on cd31227 each took 1 MiB).
func TestIdleBodiesTakeNoMemory(t *testing.T) {
	f, url := newQueue(t, "work", nil)
	watch, wrap := watchBodies(0, idleConns)
	s := serveLoopback(t, f, url, []catcher.Option{catcher.WithMaxBodyBytes(catcher.MaxMessageBytes)}, wrap)

	conns := make([]net.Conn, 0, idleConns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	head := fmt.Sprintf("POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", s.addr, catcher.MaxMessageBytes)
	for range idleConns {
		c, err := net.Dial("tcp", s.addr)
		require.NoError(t, err)
		conns = append(conns, c)
		_, err = c.Write([]byte(head))
		require.NoError(t, err)
	}
	// Every handler is now inside its first Read of the body, after
	// whatever it allocated for it.
	watch.wait(t, idleConns)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d idle 1 MiB requests: live heap %.1f MiB", idleConns, float64(ms.HeapAlloc)/(1<<20))
	assert.Less(t, ms.HeapAlloc, uint64(64<<20), "heap with %d requests waiting for their bodies", idleConns)
	assert.Empty(t, f.Messages(url))
}

// TestOverloadShedsAtOnce sends ten times what SQS takes while it answers
// nothing: the requests beyond the calls in flight and the waiting room
// must get 503 with Retry-After before SQS answers at all, and in the end
// the queue must hold exactly one message per 202.
func TestOverloadShedsAtOnce(t *testing.T) {
	const (
		inFlight = 2  // calls
		waiting  = 18 // messages
		capacity = inFlight*10 + waiting
		requests = 10 * capacity
	)
	f, url := newQueue(t, "work", nil)
	s := serveLoopback(t, f, url, []catcher.Option{
		catcher.WithMaxInFlight(inFlight), catcher.WithMaxWaiting(waiting), catcher.WithLinger(0),
	})
	g := holdSends(t, f) // released before Serve stops, even on failure
	s.client.Transport.(*http.Transport).MaxIdleConnsPerHost = requests

	var wg sync.WaitGroup
	answers := make(chan answer, requests)
	for i := range requests {
		wg.Go(func() { answers <- s.try(fmt.Sprintf("job-%d", i)) })
	}
	// While SQS holds every call, at least requests-capacity answers
	// arrive, and all of them are 503 with Retry-After.
	got := make([]answer, 0, requests)
	bound := time.After(30 * time.Second) // reached only when shedding is broken
	for range requests - capacity {
		var a answer
		select {
		case a = <-answers:
		case <-bound:
			t.Fatalf("%d of %d requests answered while SQS answered nothing", len(got), requests-capacity)
		}
		got = append(got, a)
		require.NoError(t, a.Err)
		require.Equal(t, http.StatusServiceUnavailable, a.Status, a.Error)
		require.Equal(t, "1", a.RetryAfter)
		require.Contains(t, a.Error, "retry later")
	}
	g.release()
	wg.Wait()
	close(answers)
	for a := range answers {
		got = append(got, a)
	}

	msgs := stored(f, url)
	accepted := 0
	for _, a := range got {
		require.NoError(t, a.Err)
		switch a.Status {
		case http.StatusAccepted:
			accepted++
			m, ok := msgs[a.MessageID]
			require.True(t, ok, "a 202 names a stored message")
			assert.True(t, strings.HasPrefix(m.Body, "job-"))
		case http.StatusServiceUnavailable:
			assert.NotEmpty(t, a.RetryAfter)
		default:
			t.Errorf("status %d: %s", a.Status, a.Error)
		}
	}
	assert.Equal(t, len(msgs), accepted, "one stored message per 202, and no other")
	assert.Positive(t, accepted)
	assert.LessOrEqual(t, accepted, capacity)
	st := s.h.Stats()
	assert.EqualValues(t, accepted, st.Accepted)
	assert.EqualValues(t, requests-accepted, st.Rejected[catcher.ReasonOverloaded])
}
