// Package sdkhttp gives AWS SDK clients in tests and tools an HTTP client
// that does not lose responses from a fast server.
//
// The SDK (smithy-go) closes a request's body as soon as the response
// headers arrive. net/http streams a body it does not know to be in memory
// straight to the socket and then reads it once more to check its length;
// when the server has answered before that read, the read fails on the
// closed body, the transport closes the connection under the response, and
// the SDK retries (aws/aws-sdk-go-v2#2737, whose fix made the error
// retryable). For ReceiveMessage the first attempt's messages then stay in
// flight until their visibility timeout, and their receive count grows; for
// SendMessageBatch the retry sends the messages twice. Against real SQS
// the server is rarely that quick; against an in-process fake or a local
// emulator it happens within hundreds of calls. Handing the transport a
// bytes.Reader closes the window: net/http then copies the whole body,
// length check included, before anything reaches the server.
package sdkhttp

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// Client returns an HTTP client that sends through base (when nil, a
// transport with the SDK's own defaults, among them 10 idle connections per
// host where net/http keeps 2) with every request body read into memory
// first. Use it where an SDK client's options take a client of the test's
// own; for the client the SDK's configuration resolved, use Wrap.
func Client(base http.RoundTripper) *http.Client {
	if base == nil {
		base = awshttp.NewBuildableClient().GetTransport()
	}
	return &http.Client{Transport: inMemory{send: base.RoundTrip, base: base}}
}

// Wrap returns c (the SDK's default client when nil) with every request
// body read into memory before c sends it. It keeps what the configuration
// put into c, such as a custom CA bundle (AWS_CA_BUNDLE), which
// config.LoadDefaultConfig cannot add to a client that is not the SDK's own.
func Wrap(c aws.HTTPClient) aws.HTTPClient {
	if c == nil {
		c = awshttp.NewBuildableClient()
	}
	return inMemory{send: c.Do, base: c}
}

// inMemory reads each request's body into memory, then sends the request
// with send: base's RoundTrip behind Client, its Do behind Wrap.
type inMemory struct {
	send func(*http.Request) (*http.Response, error)
	base any
}

// Do is what Wrap's client is.
func (t inMemory) Do(req *http.Request) (*http.Response, error) {
	out, err := fromMemory(req)
	if err != nil {
		return nil, err
	}
	return t.send(out)
}

// RoundTrip is what Client's transport is.
func (t inMemory) RoundTrip(req *http.Request) (*http.Response, error) { return t.Do(req) }

// CloseIdleConnections lets http.Client.CloseIdleConnections reach base.
func (t inMemory) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// fromMemory returns req with its body read into memory (and req's body
// closed), or req itself when it has none.
func fromMemory(req *http.Request) (*http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, nil
	}
	body, err := io.ReadAll(req.Body)
	if cerr := req.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("sdkhttp: reading the request body: %w", err)
	}
	out := req.Clone(req.Context())
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	out.ContentLength = int64(len(body))
	return out, nil
}
