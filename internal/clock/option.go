package clock

import (
	"fmt"
	"reflect"
	"sync"
)

// The clock options of the pool, the sink, the catcher and the two fakes are
// not part of their API: a user's tests get fake time from testing/synctest,
// which needs no clock in the API. The repo's own tests drive a Manual clock
// across packages (a pool and its sqsfake on one clock), so each package
// registers its option here, and the tests ask for it by the option's type:
//
//	clock.Option[sqsfake.Option](clk)
var (
	mu      sync.Mutex
	options = map[reflect.Type]any{}
)

// Register makes f the clock option of option type O. A package calls it
// from init, with its unexported withClock.
func Register[O any](f func(Clock) O) {
	mu.Lock()
	defer mu.Unlock()
	options[reflect.TypeFor[O]()] = f
}

// Option returns the option of type O that sets c as the clock. It panics if
// O's package registered none: a mistake in a test, found at once.
func Option[O any](c Clock) O {
	mu.Lock()
	f, ok := options[reflect.TypeFor[O]()].(func(Clock) O)
	mu.Unlock()
	if !ok {
		panic(fmt.Sprintf("clock: no clock option registered for %v", reflect.TypeFor[O]()))
	}
	return f(c)
}
