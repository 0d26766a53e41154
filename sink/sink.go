package sink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sqspool/sqspool"
)

// Sink stores the results of message handlers.
//
// The contract every implementation keeps:
//
//   - Put returns nil only once every item it was given is durable, so that
//     the caller may then delete the message the items came from.
//   - When Put returns an error, it never claims an item was written that was
//     not: an item is either durable or reported failed (a *WriteError names
//     the failed items; any other error means none of the items is known to
//     be durable). Reported failed does not mean "certainly absent": a write
//     whose answer was lost may still have landed, which is why redelivered
//     messages must be safe to write again (see the package documentation).
//   - Put is safe for concurrent use by many goroutines.
type Sink[T any] interface {
	Put(ctx context.Context, items ...T) error
}

// Func adapts a function to the Sink interface. The function must keep the
// Sink contract itself.
type Func[T any] func(ctx context.Context, items ...T) error

// Put calls f(ctx, items...).
func (f Func[T]) Put(ctx context.Context, items ...T) error { return f(ctx, items...) }

// keyContextKey is the private type of the context key under which WithKey
// stores the idempotency key, so no other package can collide with it.
type keyContextKey struct{}

// WithKey returns a copy of ctx that carries key as the idempotency key of the
// work done under it. Inside a sqspool handler the key defaults to the SQS
// MessageId of the message being handled, so a sink recognises a redelivery
// of the same message with no call at all. A handler that knows a better key
// (an id the producer assigned, stable across re-sends of the same logical
// event) calls WithKey to use it instead.
func WithKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyContextKey{}, key)
}

// KeyFrom returns the idempotency key of ctx: the one set by WithKey, else
// the MessageId of the sqspool message whose handler ctx belongs to. ok is
// false when there is none or it is empty.
func KeyFrom(ctx context.Context) (key string, ok bool) {
	if key, _ = ctx.Value(keyContextKey{}).(string); key != "" {
		return key, true
	}
	if m, found := sqspool.MessageFrom(ctx); found {
		return m.ID, m.ID != ""
	}
	return "", false
}

// Pipe makes a sqspool handler of the classic consumer: process the message
// into a result, write the result to s, and only then let the pool delete
// the message. Any error, from process or from s, leaves the message to be
// delivered again.
func Pipe[T, R any](process func(ctx context.Context, msg *T) (R, error), s Sink[R]) sqspool.Handler[T] {
	return func(ctx context.Context, msg *T) error {
		r, err := process(ctx, msg)
		if err != nil {
			return err
		}
		return s.Put(ctx, r)
	}
}

var (
	// ErrClosed is returned by Put after the sink was closed.
	ErrClosed = errors.New("sink: closed")
	// ErrItemTooLarge reports an item over DynamoDB's 400 KB item limit. It
	// is found before anything is sent, and fails the whole Put.
	ErrItemTooLarge = errors.New("sink: item exceeds the DynamoDB item size limit")
	// ErrNotSent marks the items of a Put that were not sent because another
	// item of the same call was rejected first (for example as too large, or
	// because an earlier write of the same key failed).
	ErrNotSent = errors.New("sink: not sent because another item of the call failed")
)

// ItemError is the failure of one item of a Put call.
type ItemError struct {
	// Index is the item's position in the Put call's arguments.
	Index int
	// Err is why it is not known to be written; it wraps the DynamoDB API
	// error (usable with errors.As and smithy.APIError) or a context error.
	Err error
}

func (e *ItemError) Error() string { return fmt.Sprintf("item %d: %v", e.Index, e.Err) }

// Unwrap returns the cause.
func (e *ItemError) Unwrap() error { return e.Err }

// WriteError is returned by Put when some of its items were not written.
// Every item of the call that is not listed in Items is durable; the listed
// ones are not known to be (see the Sink contract).
type WriteError struct {
	// Items are the failed items, in index order.
	Items []ItemError
	// Total is how many items the Put call had.
	Total int
}

func (e *WriteError) Error() string {
	const show = 3
	var b strings.Builder
	fmt.Fprintf(&b, "sink: %d of %d items not written", len(e.Items), e.Total)
	for i := range min(show, len(e.Items)) {
		b.WriteString("; ")
		b.WriteString(e.Items[i].Error())
	}
	if len(e.Items) > show {
		fmt.Fprintf(&b, "; and %d more", len(e.Items)-show)
	}
	return b.String()
}

// Unwrap returns every *ItemError, so errors.Is and errors.As see through
// to the causes (errors.Is(err, sink.ErrItemTooLarge), errors.As(err,
// &itemErr), errors.As(err, &apiErr)).
func (e *WriteError) Unwrap() []error {
	errs := make([]error, len(e.Items))
	for i := range e.Items {
		errs[i] = &e.Items[i]
	}
	return errs
}

// newWriteError returns nil when nothing failed, otherwise a *WriteError
// with the failures sorted by index.
func newWriteError(total int, failed []ItemError) error {
	if len(failed) == 0 {
		return nil
	}
	slices.SortFunc(failed, func(a, b ItemError) int { return cmp.Compare(a.Index, b.Index) })
	return &WriteError{Items: failed, Total: total}
}
