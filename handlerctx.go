package sqspool

import (
	"context"
	"slices"
	"sync"
	"time"
)

// handlerContext is the context a handler runs under: the values of the
// pool's handler context, the message (MessageFrom), a deadline, and its own
// cancellation. It lives in the message's record and arms no timer: the
// pool's watchdog (heartbeat.go) cancels it once its deadline has passed,
// and a stop cancels it when its grace runs out. That saves the allocations
// and the runtime timer that context.WithTimeout costs for every message.
type handlerContext struct {
	values   context.Context // the pool's handler context; its values only
	msg      *Message
	pool     *Pool     // whose handler runs under it: see Pool.Shutdown
	deadline time.Time // wall clock

	mu    sync.Mutex
	done  chan struct{} // made on the first Done
	err   error
	after []*func() // AfterFunc callbacks, so derived contexts need no goroutine
}

// handlerKey is the key under which a handler's context, and every context
// derived from it, names the pool running the handler.
type handlerKey struct{}

// closedChan is the Done of a context cancelled before anyone asked.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *handlerContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *handlerContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			c.done = closedChan
		} else {
			c.done = make(chan struct{})
		}
	}
	return c.done
}

func (c *handlerContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *handlerContext) Value(key any) any {
	switch key {
	case messageKey{}:
		return c.msg
	case handlerKey{}:
		return c.pool
	}
	return c.values.Value(key)
}

// AfterFunc lets contexts derived from this one (context.WithTimeout in a
// handler, say) hear of its cancellation without a goroutine each: the
// context package looks for this method.
func (c *handlerContext) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		go f() // cancelled meanwhile; the caller holds its own lock now
		return func() bool { return false }
	}
	fp := &f
	c.after = append(c.after, fp)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.after, fp)
		if i < 0 {
			return false
		}
		c.after = slices.Delete(c.after, i, i+1)
		return true
	}
}

// cancel ends the context with err, once.
func (c *handlerContext) cancel(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if c.done == nil {
		c.done = closedChan
	} else {
		close(c.done)
	}
	after := c.after
	c.after = nil
	c.mu.Unlock()
	for _, f := range after {
		(*f)()
	}
}

// reset makes the context live again for another run of the handler on the
// same delivery. The previous run has returned, and a handler must not use
// its context after that.
func (c *handlerContext) reset() {
	c.mu.Lock()
	c.done, c.err, c.after = nil, nil, nil
	c.mu.Unlock()
}

func (c *handlerContext) String() string { return "sqspool.handlerContext" }

var _ context.Context = (*handlerContext)(nil)
