package catcher

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewServerDefaults(t *testing.T) {
	h := http.NotFoundHandler()
	srv := NewServer(":8080", h)
	assert.Equal(t, ":8080", srv.Addr)
	assert.Equal(t, DefaultReadHeaderTimeout, srv.ReadHeaderTimeout)
	assert.Equal(t, DefaultReadTimeout, srv.ReadTimeout)
	assert.Equal(t, DefaultWriteTimeout, srv.WriteTimeout)
	assert.Equal(t, DefaultIdleTimeout, srv.IdleTimeout)
	assert.Equal(t, DefaultMaxHeaderBytes, srv.MaxHeaderBytes)
	assert.Greater(t, srv.WriteTimeout, srv.ReadTimeout+DefaultSendTimeout+DefaultLinger,
		"the write deadline must cover reading the body, the linger and the send")

	srv = NewServer("", h, WithServerConfig(func(s *http.Server) { s.IdleTimeout = time.Minute }))
	assert.Equal(t, time.Minute, srv.IdleTimeout)
}

// localServer is Serve running on a loopback listener.
type localServer struct {
	endpoint string
	client   *http.Client
	cancel   context.CancelFunc // stops Serve
	served   chan error         // Serve's result
}

func serveLocal(t *testing.T, h *Handler, opts ...ServerOption) localServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	s := localServer{endpoint: "http://" + ln.Addr().String() + "/", cancel: cancel, served: make(chan error, 1)}
	go func() { s.served <- Serve(ctx, ln, h, opts...) }()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	s.client = &http.Client{Transport: tr}
	return s
}

// TestServeDrainsOnCancel stops Serve while a request's message is inside
// a SendMessageBatch call: the request must still get its 202, and Serve
// must return cleanly, leaving no goroutine (TestMain checks).
func TestServeDrainsOnCancel(t *testing.T) {
	f, url := newFake(t, "work")
	stub := &stubClient{next: f, entered: make(chan struct{}, 1), release: make(chan struct{})}
	h := mustNew(t, stub, url, WithLinger(0))
	s := serveLocal(t, h, WithShutdownTimeout(10*time.Second))
	client, endpoint, served := s.client, s.endpoint, s.served
	type answer struct {
		resp *http.Response
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := client.Post(endpoint, "application/json", strings.NewReader(`{"job":1}`))
		answered <- answer{resp, err}
	}()
	<-stub.entered // the message is on its way to SQS
	s.cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned with a request in flight: %v", err)
	case <-answered:
		t.Fatal("answered before SQS did")
	default:
	}
	close(stub.release)

	a := <-answered
	require.NoError(t, a.err)
	rep := decode(t, a.resp)
	assert.Equal(t, http.StatusAccepted, rep.Status, rep.Error)
	require.NoError(t, <-served)
	assert.Len(t, f.Messages(url), 1)

	_, err := client.Post(endpoint, "text/plain", strings.NewReader("late"))
	assert.Error(t, err, "the listener is closed")
	assert.Equal(t, http.StatusServiceUnavailable, serve(t, h, post("late")).Status, "the handler is closed")
}

// brokenListener fails Accept at once, as a listener closed under us.
type brokenListener struct{ net.Listener }

func (brokenListener) Accept() (net.Conn, error) { return nil, errors.New("accept: broken") }

func TestServeListenerFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h := mustNew(t, &stubClient{}, testQueueURL)
	err = Serve(context.Background(), brokenListener{ln}, h)
	require.ErrorContains(t, err, "accept: broken")
	assert.Equal(t, http.StatusServiceUnavailable, serve(t, h, post("x")).Status, "the handler was closed anyway")
	_ = ln.Close()
}

func TestServeOverTheWire(t *testing.T) {
	f, url := newFake(t, "work")
	s := serveLocal(t, mustNew(t, f, url))
	defer func() {
		s.cancel()
		require.NoError(t, <-s.served)
	}()
	client, endpoint := s.client, s.endpoint

	// A huge chunked body over the wire: 413, and the connection is closed
	// rather than drained.
	resp, err := client.Post(endpoint, "text/plain", io.LimitReader(&countingReader{}, 8<<20))
	require.NoError(t, err)
	assert.Equal(t, http.StatusRequestEntityTooLarge, decode(t, resp).Status)
	assert.True(t, resp.Close, "the server drops the connection after a body over the limit")

	resp, err = client.Get(endpoint)
	require.NoError(t, err)
	assert.Equal(t, http.StatusMethodNotAllowed, decode(t, resp).Status)

	resp, err = client.Post(endpoint, "text/plain", strings.NewReader("hello"))
	require.NoError(t, err)
	rep := decode(t, resp)
	assert.Equal(t, http.StatusAccepted, rep.Status)
	assert.Equal(t, "hello", inQueue(f, url)[rep.MessageID].Body)
}
