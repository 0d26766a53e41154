package sdkhttp

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// smithyBody behaves as the SDK's request body: once closed, a read fails
// instead of reporting the end.
type smithyBody struct {
	mu     sync.Mutex
	r      *bytes.Reader
	closed bool
}

var errReadAfterClose = errors.New("read after close")

func (b *smithyBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errReadAfterClose
	}
	return b.r.Read(p)
}

func (b *smithyBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

// roundTrips sends n requests as the SDK does (the body closed the moment
// the response headers are in) to a server that answers as soon as it has
// the body, and returns the first error reading a response.
func roundTrips(t *testing.T, client *http.Client, n int) error {
	t.Helper()
	reply := strings.Repeat("r", 256<<10) // longer than the transport buffers
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, reply)
	}))
	defer srv.Close()
	defer client.CloseIdleConnections()
	payload := bytes.Repeat([]byte("p"), 300)
	for range n {
		body := &smithyBody{r: bytes.NewReader(payload)}
		req, err := http.NewRequest(http.MethodPost, srv.URL, body)
		require.NoError(t, err)
		req.ContentLength = int64(len(payload))
		resp, err := client.Do(req)
		_ = body.Close()
		if err != nil {
			return err
		}
		got, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
		if len(got) != len(reply) {
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}

// TestClientKeepsResponsesWhenTheBodyClosesEarly: through Client, no
// response is cut when the caller closes the request body as the headers
// arrive. Through a bare transport the same loop loses responses ("use of
// closed network connection") within a few hundred requests on a loaded
// machine; that is aws/aws-sdk-go-v2#2737.
func TestClientKeepsResponsesWhenTheBodyClosesEarly(t *testing.T) {
	assert.NoError(t, roundTrips(t, Client(nil), 500))
}

// TestClientReadsTheBodyBeforeSending: the transport gets a body it knows
// is in memory, with its length and GetBody for a replay, and the caller's
// body is closed.
func TestClientReadsTheBodyBeforeSending(t *testing.T) {
	got, body := sendHello(t, func(next sendFunc) sendFunc { return Client(roundTripFunc(next)).Do })
	assert.True(t, body.closed, "the caller's body is closed")
	assert.Equal(t, int64(5), got.ContentLength)
	b, err := io.ReadAll(got.Body)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	replay, err := got.GetBody()
	require.NoError(t, err)
	b, _ = io.ReadAll(replay)
	assert.Equal(t, "hello", string(b))
}

// TestClientReportsABodyThatCannotBeRead: a failing body is the caller's
// error, and nothing is sent.
func TestClientReportsABodyThatCannotBeRead(t *testing.T) {
	sent := false
	base := roundTripFunc(func(*http.Request) (*http.Response, error) {
		sent = true
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
	})
	body := &smithyBody{r: bytes.NewReader(nil), closed: true}
	req, err := http.NewRequest(http.MethodPost, "http://example.invalid/", body)
	require.NoError(t, err)
	req.ContentLength = 1
	_, err = Client(base).Do(req)
	require.ErrorIs(t, err, errReadAfterClose)
	assert.False(t, sent)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestClientKeepsTheSDKsConnectionDefaults: without a base transport the
// client pools connections as the SDK's own does (net/http alone keeps 2
// idle connections per host, which makes a busy pool dial anew).
func TestClientKeepsTheSDKsConnectionDefaults(t *testing.T) {
	tr, ok := Client(nil).Transport.(inMemory).base.(*http.Transport)
	require.True(t, ok)
	assert.GreaterOrEqual(t, tr.MaxIdleConnsPerHost, 10)
}

// TestWrapSendsThroughTheGivenClient: the configuration's client (with what
// it carries, such as a CA bundle) sends, and gets the body from memory.
func TestWrapSendsThroughTheGivenClient(t *testing.T) {
	got, body := sendHello(t, func(next sendFunc) sendFunc { return Wrap(doFunc(next)).Do })
	assert.True(t, body.closed)
	b, err := io.ReadAll(got.Body)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	assert.NotNil(t, Wrap(nil), "the SDK's default client when none is given")
}

type doFunc func(*http.Request) (*http.Response, error)

func (f doFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

type sendFunc = func(*http.Request) (*http.Response, error)

// sendHello sends a POST with the body "hello", as the SDK makes it, through
// what wrap builds around a sender that records the request, and returns
// the request that sender got and the caller's body.
func sendHello(t *testing.T, wrap func(next sendFunc) sendFunc) (*http.Request, *smithyBody) {
	t.Helper()
	var got *http.Request
	send := wrap(func(r *http.Request) (*http.Response, error) {
		got = r
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
	})
	body := &smithyBody{r: bytes.NewReader([]byte("hello"))}
	req, err := http.NewRequest(http.MethodPost, "http://example.invalid/", body)
	require.NoError(t, err)
	resp, err := send(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.NotNil(t, got)
	return got, body
}
