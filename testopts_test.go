package sqspool

import "time"

// Options of the pool that are not part of its API, for the package's tests.

// withDecoder sets a decoder function for tests whose decoder needs the
// test's state (the simulator's oracle); users implement BodyDecoder on
// their type, which the compiler ties to the pool's T.
func withDecoder[T any](d func(body string, v *T) error) Option {
	return func(c *config) { c.decoder = decoder[T](d) }
}

// withReceiveFill sets how long a poller with some free workers, but fewer
// than a full receive's worth, waits for more (default 10ms); tests set it
// to pin down receive sizes. The receive controller owns it: not an option.
func withReceiveFill(d time.Duration) Option { return func(c *config) { c.receiveFill = d } }
