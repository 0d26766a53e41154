package sqsfake

import (
	"context"
	"fmt"
	"time"
)

// Names of the APIs the fake serves, as used by Faults, FailNext, SetHook and
// Calls. They are the SQS operation names.
const (
	OpReceiveMessage               = "ReceiveMessage"
	OpDeleteMessage                = "DeleteMessage"
	OpDeleteMessageBatch           = "DeleteMessageBatch"
	OpChangeMessageVisibility      = "ChangeMessageVisibility"
	OpChangeMessageVisibilityBatch = "ChangeMessageVisibilityBatch"
	OpSendMessage                  = "SendMessage"
	OpSendMessageBatch             = "SendMessageBatch"
	OpGetQueueUrl                  = "GetQueueUrl"
	OpGetQueueAttributes           = "GetQueueAttributes"
	OpSetQueueAttributes           = "SetQueueAttributes"
	OpCreateQueue                  = "CreateQueue"
	OpDeleteQueue                  = "DeleteQueue"
	OpPurgeQueue                   = "PurgeQueue"
	OpListQueues                   = "ListQueues"

	// AllOps, as a key of Faults, applies to every API without an entry
	// of its own.
	AllOps = "*"
)

type op int

const (
	opReceiveMessage op = iota
	opDeleteMessage
	opDeleteMessageBatch
	opChangeMessageVisibility
	opChangeMessageVisibilityBatch
	opSendMessage
	opSendMessageBatch
	opGetQueueUrl
	opGetQueueAttributes
	opSetQueueAttributes
	opCreateQueue
	opDeleteQueue
	opPurgeQueue
	opListQueues
	numOps
)

var opNames = [numOps]string{
	OpReceiveMessage, OpDeleteMessage, OpDeleteMessageBatch, OpChangeMessageVisibility,
	OpChangeMessageVisibilityBatch, OpSendMessage, OpSendMessageBatch, OpGetQueueUrl,
	OpGetQueueAttributes, OpSetQueueAttributes, OpCreateQueue, OpDeleteQueue, OpPurgeQueue, OpListQueues,
}

func (o op) String() string { return opNames[o] }

func (o op) isBatch() bool {
	return o == opDeleteMessageBatch || o == opChangeMessageVisibilityBatch || o == opSendMessageBatch
}

func opByName(name string) (op, bool) {
	for i, n := range opNames {
		if n == name {
			return op(i), true
		}
	}
	return 0, false
}

func mustOp(name string) op {
	o, ok := opByName(name)
	if !ok {
		panic(fmt.Sprintf("sqsfake: unknown API %q", name))
	}
	return o
}

// Faults maps an API name (OpReceiveMessage, ...) or AllOps to the failures
// injected into it. An API's own entry replaces the AllOps entry; they are
// not merged.
type Faults map[string]Fault

// Fault is the set of failures injected into one API. Rates are
// probabilities in [0, 1], drawn from the fake's seeded random source.
type Fault struct {
	// Latency delays every call by this much plus a uniform random extra
	// in [0, Jitter). It models the network, so it runs on the wall clock,
	// not on the fake's clock, and ends early with the context's error
	// when ctx is done.
	Latency time.Duration
	Jitter  time.Duration

	// ErrorRate fails a call, before it takes effect, with an
	// InternalError (HTTP 500, retryable).
	ErrorRate float64
	// ThrottleRate fails a call, before it takes effect, with
	// *types.RequestThrottled (code "RequestThrottled", which the SDK's
	// retryer treats as throttling).
	ThrottleRate float64
	// LostReplyRate lets a call take effect and then fails it with an
	// InternalError, as when a response is lost on the way back: a
	// delete that did delete, a receive whose messages went in flight
	// and counted a receive without reaching the consumer.
	LostReplyRate float64

	// PartialFailureRate fails single entries of a batch call (Code
	// "InternalError", SenderFault false) while the call succeeds; failed
	// entries do not take effect. Batch APIs only.
	PartialFailureRate float64
	// DuplicateRate makes ReceiveMessage deliver a message and also leave
	// it visible, so that a later receive returns it again, with a new
	// receipt handle, while the first delivery is still being handled:
	// the at-least-once duplicate of standard queues. As always, only the
	// newest handle deletes; the first one has gone stale. Standard queues
	// only; FIFO queues ignore it.
	DuplicateRate float64
}

type faultTable [numOps]Fault

// SetFaults replaces the injected faults. nil or an empty Faults turns
// injection off. It panics on an unknown API name, a rate outside [0, 1],
// or a knob that the named API does not have.
func (f *Fake) SetFaults(faults Faults) {
	var t faultTable
	if def, ok := faults[AllOps]; ok {
		checkFault(AllOps, def)
		for i := range t {
			t[i] = def
		}
	}
	for name, flt := range faults {
		if name == AllOps {
			continue
		}
		o := mustOp(name)
		checkFault(name, flt)
		if flt.PartialFailureRate > 0 && !o.isBatch() {
			panic(fmt.Sprintf("sqsfake: PartialFailureRate set for %s, which is not a batch API", name))
		}
		if flt.DuplicateRate > 0 && o != opReceiveMessage {
			panic(fmt.Sprintf("sqsfake: DuplicateRate set for %s; it applies to ReceiveMessage only", name))
		}
		t[o] = flt
	}
	f.faults.Store(&t)
}

func checkFault(name string, flt Fault) {
	for _, r := range []float64{flt.ErrorRate, flt.ThrottleRate, flt.LostReplyRate, flt.PartialFailureRate, flt.DuplicateRate} {
		if r < 0 || r > 1 {
			panic(fmt.Sprintf("sqsfake: fault rate %v for %s is outside [0, 1]", r, name))
		}
	}
	if flt.Latency < 0 || flt.Jitter < 0 {
		panic(fmt.Sprintf("sqsfake: negative latency for %s", name))
	}
}

var noFault Fault

func (f *Fake) faultFor(o op) *Fault {
	if t := f.faults.Load(); t != nil {
		return &t[o]
	}
	return &noFault
}

// Hook is called before every API call with the API name and the input (a
// pointer to the SDK input struct, e.g. *sqs.ReceiveMessageInput). A non-nil
// error fails the call with that error, before the call takes effect. A hook
// may block, for example to hold a call until a test lets it go; it is
// called on the caller's goroutine.
type Hook func(api string, in any) error

// SetHook installs h, replacing any earlier hook; nil removes it.
func (f *Fake) SetHook(h Hook) {
	if h == nil {
		f.hook.Store(nil)
		return
	}
	f.hook.Store(&h)
}

type failure struct {
	left int
	err  error
}

// FailNext makes the next n calls of api fail with err, before they take
// effect; a nil err means an InternalError. Calls to FailNext queue up: after
// the first n failures come the next FailNext's. Errors that are not
// already a *smithy.OperationError are wrapped in one, as the SDK does.
func (f *Fake) FailNext(api string, n int, err error) {
	o := mustOp(api)
	if n <= 0 {
		return
	}
	f.failMu.Lock()
	f.failNext[o] = append(f.failNext[o], failure{left: n, err: err})
	f.failMu.Unlock()
	f.failPending.Add(1)
}

// takeFailure returns the error of a pending FailNext for o, if any.
func (f *Fake) takeFailure(o op) error {
	if f.failPending.Load() == 0 {
		return nil
	}
	f.failMu.Lock()
	defer f.failMu.Unlock()
	queue := f.failNext[o]
	if len(queue) == 0 {
		return nil
	}
	head := &queue[0]
	err := head.err
	if err == nil {
		err = errInternal("injected by FailNext")
	}
	if head.left--; head.left == 0 {
		f.failNext[o] = queue[1:]
		f.failPending.Add(-1)
	}
	return err
}

// ClearFaults turns off every kind of injection: Faults, FailNext queues
// and the hook.
func (f *Fake) ClearFaults() {
	f.SetFaults(nil)
	f.SetHook(nil)
	f.failMu.Lock()
	clear(f.failNext)
	f.failPending.Store(0)
	f.failMu.Unlock()
}

// before applies what happens ahead of a call taking effect: counting,
// latency, the hook, FailNext and the error and throttle rates.
func (f *Fake) before(ctx context.Context, o op, in any) (*Fault, error) {
	f.calls[o].Add(1)
	flt := f.faultFor(o)
	if err := f.sleep(ctx, flt); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if h := f.hook.Load(); h != nil {
		if err := (*h)(o.String(), in); err != nil {
			return nil, err
		}
	}
	if err := f.takeFailure(o); err != nil {
		return nil, err
	}
	if f.roll(flt.ErrorRate) {
		return nil, errInternal("injected by ErrorRate")
	}
	if f.roll(flt.ThrottleRate) {
		return nil, errThrottled()
	}
	return flt, nil
}

func (f *Fake) sleep(ctx context.Context, flt *Fault) error {
	d := flt.Latency
	if flt.Jitter > 0 {
		f.rngMu.Lock()
		d += time.Duration(f.rng.Int64N(int64(flt.Jitter)))
		f.rngMu.Unlock()
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// roll reports true with probability p.
func (f *Fake) roll(p float64) bool {
	if p <= 0 {
		return false
	}
	if p >= 1 {
		return true
	}
	f.rngMu.Lock()
	defer f.rngMu.Unlock()
	return f.rng.Float64() < p
}

// Calls returns how many times api has been called, failed calls included.
// It panics on an unknown API name.
func (f *Fake) Calls(api string) int { return int(f.calls[mustOp(api)].Load()) }

// CallCounts returns the call count of every API that has been called.
func (f *Fake) CallCounts() map[string]int {
	m := map[string]int{}
	for i := range f.calls {
		if n := f.calls[i].Load(); n > 0 {
			m[opNames[i]] = int(n)
		}
	}
	return m
}

// ResetCalls sets every call count to zero.
func (f *Fake) ResetCalls() {
	for i := range f.calls {
		f.calls[i].Store(0)
	}
}
