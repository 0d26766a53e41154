package catcher_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/sqspool/sqspool/catcher"
	"github.com/sqspool/sqspool/sqsfake"
)

// A catcher in front of a queue. In production the client is an
// *sqs.Client (sqs.NewFromConfig(cfg)); here it is the in-memory fake.
func Example() {
	fake := sqsfake.New()
	queueURL := fake.MustCreateQueue("work", nil)

	h, err := catcher.New(context.Background(), fake, queueURL, catcher.WithJSON())
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(h)

	for _, body := range []string{`{"job":42}`, `{"job":`} {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
		if err != nil {
			panic(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			answer = []byte("{messageId}") // random; print its place
		}
		fmt.Println(resp.StatusCode, strings.TrimSpace(string(answer)))
	}

	srv.Close()                   // no more requests...
	h.Close(context.Background()) // ...then flush and stop
	st := h.Stats()
	fmt.Println("queued:", len(fake.Messages(queueURL)), "accepted:", st.Accepted, "calls:", st.Calls)
	// Output:
	// 202 {messageId}
	// 400 {"error":"body is not valid JSON"}
	// queued: 1 accepted: 1 calls: 1
}

// Serve runs the catcher with production timeouts until its context ends,
// then drains: in a program, the context comes from signal.NotifyContext.
func ExampleServe() {
	fake := sqsfake.New()
	queueURL := fake.MustCreateQueue("work", nil)
	h, err := catcher.New(context.Background(), fake, queueURL)
	if err != nil {
		panic(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- catcher.Serve(ctx, ln, h) }()

	resp, err := http.Post("http://"+ln.Addr().String()+"/", "text/plain", strings.NewReader("hello"))
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)

	stop() // as on SIGTERM
	fmt.Println("stopped:", <-done)
	http.DefaultClient.CloseIdleConnections()
	// Output:
	// 202
	// stopped: <nil>
}
