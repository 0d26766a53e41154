package sqspool_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

// Reading is a message with a body format of its own, "sensor:value".
type Reading struct {
	Sensor string
	Value  int
}

// DecodeBody makes *Reading a BodyDecoder: a pool of Reading decodes each
// body with it instead of as JSON. An error (or a panic) rejects the body as
// malformed; it never reaches the handler.
func (r *Reading) DecodeBody(body string) error {
	sensor, value, ok := strings.Cut(body, ":")
	if !ok {
		return fmt.Errorf("reading %q: no colon", body)
	}
	r.Sensor = sensor
	var err error
	r.Value, err = strconv.Atoi(value)
	return err
}

// The decoder belongs to the message type, so the compiler ties it to the
// pool's handler: there is no decoder of another type to pass by mistake.
func ExampleBodyDecoder() {
	fake := sqsfake.New()
	queue := fake.MustCreateQueue("readings", nil)
	fake.MustSend(queue, "t1:21")

	done := make(chan struct{})
	pool, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: fake, Queue: "readings"},
		func(_ context.Context, r *Reading) error {
			fmt.Printf("%s = %d\n", r.Sensor, r.Value)
			close(done)
			return nil
		})
	if err != nil {
		panic(err)
	}
	<-done
	if err := pool.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	// Output: t1 = 21
}
