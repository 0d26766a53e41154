package catcher_test

// Helpers of the tests that drive a catcher from outside the package,
// through a real Serve on 127.0.0.1, with sqsfake behind it.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/catcher"
	"github.com/sqspool/sqspool/sqsfake"
)

// loopback is a catcher served by Serve on a loopback listener.
type loopback struct {
	h      *catcher.Handler
	addr   string // host:port
	url    string
	client *http.Client
}

// serveLoopback serves a new Handler for queueURL until the test ends, and
// checks that Serve then stops cleanly.
func serveLoopback(t *testing.T, c catcher.Client, queueURL string, opts []catcher.Option, sopts ...catcher.ServerOption) *loopback {
	t.Helper()
	h, err := catcher.New(context.Background(), c, queueURL, opts...)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- catcher.Serve(ctx, ln, h, sopts...) }()
	tr := &http.Transport{MaxIdleConnsPerHost: 100}
	s := &loopback{h: h, addr: ln.Addr().String(), url: "http://" + ln.Addr().String() + "/", client: &http.Client{Transport: tr}}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cancel()
		require.NoError(t, <-served)
	})
	return s
}

// answer is a decoded answer of the catcher.
type answer struct {
	Status     int
	MessageID  string `json:"messageId"`
	Error      string `json:"error"`
	RetryAfter string
	Err        error // the request failed; nothing else is set
}

// post sends body with the headers (name, value, ...) and decodes the
// answer; a transport or decoding failure fails the test.
func (s *loopback) post(t testing.TB, body string, header ...string) answer {
	t.Helper()
	a := s.try(body, header...)
	require.NoError(t, a.Err)
	return a
}

// try is post for goroutines other than the test's: the error is in Err.
func (s *loopback) try(body string, header ...string) answer {
	req, err := http.NewRequest(http.MethodPost, s.url, strings.NewReader(body))
	if err != nil {
		return answer{Err: err}
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return answer{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After"), Err: err}
	if err == nil {
		if err := json.Unmarshal(b, &a); err != nil {
			a.Err = fmt.Errorf("answer %q: %w", b, err)
		}
	}
	return a
}

// postAsync posts in a goroutine; the channel gets the answer.
func (s *loopback) postAsync(wg *sync.WaitGroup, body string, header ...string) <-chan answer {
	ch := make(chan answer, 1)
	wg.Go(func() { ch <- s.try(body, header...) })
	return ch
}

// newQueue returns a fake and a queue in it with the attributes.
func newQueue(t testing.TB, name string, attrs map[string]string) (*sqsfake.Fake, string) {
	t.Helper()
	f := sqsfake.New(sqsfake.WithSeed(1))
	return f, f.MustCreateQueue(name, attrs)
}

// stored returns the queue's messages by MessageId.
func stored(f *sqsfake.Fake, url string) map[string]sqsfake.StoredMessage {
	m := map[string]sqsfake.StoredMessage{}
	for _, msg := range f.Messages(url) {
		m[msg.MessageID] = msg
	}
	return m
}

// gate holds every SendMessageBatch call of a fake until the test opens
// it: what happens meanwhile happened without SQS answering anything.
type gate struct {
	entered chan struct{} // one send per call that reached the gate
	open    chan struct{}
	once    sync.Once
}

func holdSends(t *testing.T, f *sqsfake.Fake) *gate {
	g := &gate{entered: make(chan struct{}, 1000), open: make(chan struct{})}
	f.SetHook(func(api string, _ any) error {
		if api == sqsfake.OpSendMessageBatch {
			g.entered <- struct{}{}
			<-g.open
		}
		return nil
	})
	t.Cleanup(g.release) // a failing test must not leave calls hanging; call after serveLoopback, so this runs first
	return g
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

// bodyWatch wraps the server's handler so that the test learns when the
// handler reads the request bodies: reading counts Read calls that began
// after at least from bytes of their body had been returned.
type bodyWatch struct {
	from    int64
	reading chan struct{}
}

func watchBodies(from int64, capacity int) (*bodyWatch, catcher.ServerOption) {
	w := &bodyWatch{from: from, reading: make(chan struct{}, capacity)}
	return w, catcher.WithServerConfig(func(s *http.Server) {
		next := s.Handler
		s.Handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			r.Body = &watchedBody{ReadCloser: r.Body, w: w}
			next.ServeHTTP(rw, r)
		})
	})
}

type watchedBody struct {
	io.ReadCloser
	w        *bodyWatch
	n        atomic.Int64
	signaled bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if !b.signaled && b.n.Load() >= b.w.from {
		b.signaled = true
		b.w.reading <- struct{}{}
	}
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// wait waits for n signals, failing the test after a generous bound (it is
// reached only when the behaviour under test is broken).
func (w *bodyWatch) wait(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for i := range n {
		select {
		case <-w.reading:
		case <-timeout:
			t.Fatalf("only %d of %d requests reached their body", i, n)
		}
	}
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
