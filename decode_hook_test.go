package sqspool

// withDecoder sets a decoder function for tests whose decoder needs the
// test's state (the simulator's oracle); users implement BodyDecoder on
// their type, which the compiler ties to the pool's T.
func withDecoder[T any](d func(body string, v *T) error) Option {
	return func(c *config) { c.decoder = decoder[T](d) }
}
