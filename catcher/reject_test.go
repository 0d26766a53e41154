package catcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMethodNotAllowed(t *testing.T) {
	stub := &stubClient{}
	h, _ := newManual(t, stub, testQueueURL)
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodHead, http.MethodDelete, http.MethodOptions} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(m, "/", strings.NewReader("x")))
		assert.Equal(t, http.StatusMethodNotAllowed, rec.Code, m)
		assert.Equal(t, http.MethodPost, rec.Header().Get("Allow"), m)
	}
	assert.Empty(t, stub.callSizes())
	assert.Equal(t, uint64(5), h.Stats().Rejected[ReasonMethod])
}

// countingReader is an endless body that counts what was taken from it.
type countingReader struct{ n atomic.Int64 }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	c.n.Add(int64(len(p)))
	return len(p), nil
}

func TestBodyTooLarge(t *testing.T) {
	const limit = 1000
	stub := &stubClient{}
	h, _ := newManual(t, stub, testQueueURL, WithMaxBodyBytes(limit), WithLinger(0))

	t.Run("stops reading at the limit", func(t *testing.T) {
		body := &countingReader{}
		r := httptest.NewRequest(http.MethodPost, "/", body)
		r.ContentLength = -1 // chunked: the size is only known by reading
		rep := serve(t, h, r)
		assert.Equal(t, http.StatusRequestEntityTooLarge, rep.Status)
		assert.Contains(t, rep.Error, "exceeds 1000 bytes")
		assert.LessOrEqual(t, body.n.Load(), int64(limit+1), "read past the limit")
	})
	t.Run("declared too large is not read", func(t *testing.T) {
		body := &countingReader{}
		r := httptest.NewRequest(http.MethodPost, "/", body)
		r.ContentLength = 1 << 30
		assert.Equal(t, http.StatusRequestEntityTooLarge, serve(t, h, r).Status)
		assert.Zero(t, body.n.Load())
	})
	t.Run("exactly the limit passes", func(t *testing.T) {
		rep := serve(t, h, post(strings.Repeat("b", limit)))
		assert.Equal(t, http.StatusAccepted, rep.Status, rep.Error)
	})
	assert.Equal(t, []int{1}, stub.callSizes(), "only the request within the limit reached SQS")
	assert.Equal(t, uint64(2), h.Stats().Rejected[ReasonTooLarge])
}

func TestAttributesPastMessageLimit(t *testing.T) {
	stub := &stubClient{}
	h, _ := newManual(t, stub, testQueueURL, WithMaxBodyBytes(MaxMessageBytes))
	rep := serve(t, h, post(strings.Repeat("b", MaxMessageBytes-10), "Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
	assert.Equal(t, http.StatusRequestEntityTooLarge, rep.Status)
	assert.Contains(t, rep.Error, "attributes")
	assert.Empty(t, stub.callSizes())
}

// errReader fails the body read as a broken connection would.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type timeoutError struct{}

func (timeoutError) Error() string { return "i/o timeout" }
func (timeoutError) Timeout() bool { return true }

func TestBadRequests(t *testing.T) {
	errNoID := fmt.Errorf("%w: field id is required", ErrBadRequest)
	validate := func(body []byte, _ *http.Request) error {
		switch {
		case strings.Contains(string(body), `"id"`) && strings.Contains(string(body), `"amount":-`):
			return errors.New("amount must not be negative")
		case !strings.Contains(string(body), `"id"`):
			return errNoID
		}
		return nil
	}
	readErr := func(err error) *http.Request {
		return httptest.NewRequest(http.MethodPost, "/", io.MultiReader(strings.NewReader("{"), errReader{err}))
	}
	for _, tc := range []struct {
		name    string
		opts    []Option
		url     string
		req     *http.Request
		status  int
		reason  Reason
		message string
	}{
		{"empty", nil, "", post(""), 400, ReasonEmpty, "empty body"},
		{"NUL byte", nil, "", post("a\x00b"), 400, ReasonBadRequest, "at byte 1"},
		{"invalid UTF-8", nil, "", post("\xff"), 400, ReasonBadRequest, "does not accept"},
		{"malformed JSON", []Option{WithJSON()}, "", post(`{"a":`), 400, ReasonBadRequest, "not valid JSON"},
		{"validator: bad request", []Option{WithJSON(), WithValidate(validate)}, "", post(`{"x":1}`), 400, ReasonBadRequest, "field id is required"},
		{"validator: unprocessable", []Option{WithJSON(), WithValidate(validate)}, "", post(`{"id":1,"amount":-5}`), 422, ReasonInvalid, "amount must not be negative"},
		{"FIFO without group", nil, testQueueURL + ".fifo", post("x"), 400, ReasonBadRequest, "message group id"},
		{"FIFO group with space", nil, testQueueURL + ".fifo", post("x", HeaderMessageGroupID, "a b"), 400, ReasonBadRequest, "message group id may hold only"},
		{"FIFO dedup too long", nil, testQueueURL + ".fifo", post("x", HeaderMessageGroupID, "g", HeaderDeduplicationID, strings.Repeat("d", 129)), 400, ReasonBadRequest, "longer than 128"},
		{"FIFO func error", []Option{WithFIFOFunc(func(*http.Request, []byte) (string, string, error) { return "", "", errors.New("no tenant") })}, "", post("x"), 422, ReasonInvalid, "no tenant"},
		{"attribute header not UTF-8", nil, "", post("x", HeaderRequestID, "\xff"), 400, ReasonBadRequest, "header X-Request-Id"},
		{"broken body", nil, "", readErr(io.ErrUnexpectedEOF), 400, ReasonReadError, "could not read"},
		{"slow body", nil, "", readErr(timeoutError{}), 408, ReasonReadError, "timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stub := &stubClient{}
			url := tc.url
			if url == "" {
				url = testQueueURL
			}
			h, _ := newManual(t, stub, url, tc.opts...)
			rep := serve(t, h, tc.req)
			assert.Equal(t, tc.status, rep.Status)
			assert.Contains(t, rep.Error, tc.message)
			assert.Equal(t, uint64(1), h.Stats().Rejected[tc.reason])
			require.NoError(t, h.Close(context.Background()))
			assert.Empty(t, stub.callSizes(), "a rejected request must not reach SQS")
		})
	}
}

func TestValidatorSeesBodyAndRequest(t *testing.T) {
	stub := &stubClient{}
	var gotBody, gotTenant string
	h, _ := newManual(t, stub, testQueueURL, WithLinger(0), WithValidate(func(body []byte, r *http.Request) error {
		gotBody, gotTenant = string(body), r.Header.Get("X-Tenant")
		return nil
	}))
	rep := serve(t, h, post("payload", "X-Tenant", "acme"))
	assert.Equal(t, http.StatusAccepted, rep.Status)
	assert.Equal(t, "payload", gotBody)
	assert.Equal(t, "acme", gotTenant)
}

func TestBadOptions(t *testing.T) {
	many := map[string]string{}
	for i := range 11 {
		many[fmt.Sprint("X-", i)] = fmt.Sprint("a", i)
	}
	for _, tc := range []struct {
		name string
		opt  Option
		want string
	}{
		{"body 0", WithMaxBodyBytes(0), "WithMaxBodyBytes(0)"},
		{"body over 1 MiB", WithMaxBodyBytes(MaxMessageBytes + 1), "WithMaxBodyBytes(1048577)"},
		{"linger", WithLinger(-1), "WithLinger"},
		{"in flight", WithMaxInFlight(0), "WithMaxInFlight"},
		{"send timeout", WithSendTimeout(0), "WithSendTimeout"},
		{"retry after", WithRetryAfter(0), "WithRetryAfter"},
		{"clock", withClock(nil), "nil clock"},
		{"validate", WithValidate(nil), "WithValidate"},
		{"fifo", WithFIFOFunc(nil), "WithFIFOFunc"},
		{"waiting", WithMaxWaiting(0), "WithMaxWaiting"},
		{"memory", WithMaxBodyMemory(0), "WithMaxBodyMemory"},
		{"memory below two bodies", WithMaxBodyMemory(DefaultMaxBodyBytes), "must hold two bodies"},
		{"attribute bytes", WithMaxAttributeBytes(0), "WithMaxAttributeBytes"},
		{"namespace", WithDedupNamespace(nil), "WithDedupNamespace(nil)"},
		{"namespace on a standard queue", WithDedupNamespace(func(*http.Request) (string, error) { return "", nil }), "not a FIFO queue"},
		{"attr name", WithHeaderAttributes(map[string]string{"X-A": "AWS.trace"}), "reserved"},
		{"attr twice", WithHeaderAttributes(map[string]string{"X-A": "a", "X-B": "a"}), "mapped twice"},
		{"attr header", WithHeaderAttributes(map[string]string{"": "a"}), "empty header"},
		{"attr count", WithHeaderAttributes(many), "SQS allows 10"},
	} {
		h, err := New(context.Background(), &stubClient{}, testQueueURL, tc.opt)
		assert.Nil(t, h, tc.name)
		require.Error(t, err, tc.name)
		assert.Contains(t, err.Error(), tc.want, tc.name)
		assert.True(t, strings.HasPrefix(err.Error(), "catcher: "), tc.name)
	}
	_, err := New(context.Background(), nil, testQueueURL)
	assert.ErrorContains(t, err, "nil client")
	_, err = New(context.Background(), &stubClient{}, "")
	assert.ErrorContains(t, err, "empty queue URL")
	// Every bad option is reported, not only the first.
	_, err = New(context.Background(), &stubClient{}, testQueueURL, WithLinger(-1), WithMaxInFlight(0))
	assert.ErrorContains(t, err, "WithLinger")
	assert.ErrorContains(t, err, "WithMaxInFlight")
}
