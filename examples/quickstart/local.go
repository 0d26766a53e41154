package main

// This file is not part of the quickstart (README.md shows main.go alone):
// it lets `go run ./examples/quickstart` work on a machine without AWS.

import (
	"log"
	"net"
	"net/http"
	"os"

	"github.com/sqspool/sqspool/examples/internal/exampleenv"
	"github.com/sqspool/sqspool/sqsfake"
)

// When the environment names no AWS endpoint or credentials, init serves an
// in-memory SQS (package sqsfake, as cmd/sqsfake does) on 127.0.0.1 with
// three orders in the queue "orders", and points the default AWS
// configuration that main uses at it through AWS_ENDPOINT_URL_SQS. main
// then runs unchanged, through the real SDK.
func init() {
	if exampleenv.UseAWS() {
		return
	}
	fake := sqsfake.New()
	queue := fake.MustCreateQueue("orders", nil)
	for _, id := range []string{"A-1", "A-2", "A-3"} {
		fake.MustSendJSON(queue, Order{ID: id})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(http.Serve(ln, fake.Handler())) }() // serves until the program exits
	endpoint := "http://" + ln.Addr().String()
	env := map[string]string{
		"AWS_ENDPOINT_URL_SQS": endpoint, "AWS_REGION": "us-east-1",
		"AWS_ACCESS_KEY_ID": "sqsfake", "AWS_SECRET_ACCESS_KEY": "sqsfake",
	}
	for k, v := range env {
		if err := os.Setenv(k, v); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("no AWS in the environment: queue \"orders\" with 3 orders on an in-memory SQS at %s; Ctrl-C stops", endpoint)
}
