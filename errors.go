package sqspool

import (
	"fmt"
	"strings"
)

// DecodeError reports a body that the decoder rejected. Such a message never
// reaches the handler.
type DecodeError struct {
	MessageID string
	Err       error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("sqspool: decode message %s: %v", e.MessageID, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// PanicError is a recovered panic: a handler's, counted as a failure, or a
// Decoder's, reported inside a *DecodeError.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("sqspool: handler panicked: %v", e.Value) }

// Unwrap returns the panic value when it was an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// APIError is a failed SQS call, as reported to the error hook.
type APIError struct {
	// API is the SQS operation, e.g. "ReceiveMessage".
	API string
	// EntryCode is set for a per-entry failure inside a batch call.
	EntryCode string
	Err       error
}

func (e *APIError) Error() string {
	if e.EntryCode != "" {
		return fmt.Sprintf("sqspool: %s entry failed: %s: %v", e.API, e.EntryCode, e.Err)
	}
	return fmt.Sprintf("sqspool: %s: %v", e.API, e.Err)
}

func (e *APIError) Unwrap() error { return e.Err }

// ShutdownError says what a Shutdown had to cut short. It unwraps to the
// context error that ended the wait.
type ShutdownError struct {
	// Cancelled is how many handlers were still running at the deadline and
	// had their context cancelled (in a batch pool, how many messages their
	// batches held). Their messages were not deleted.
	Cancelled int
	// Abandoned is how many of those had not returned when Shutdown gave up
	// waiting; their goroutines end when the handlers return (see Wait).
	Abandoned int
	// Unflushed is how many deletes or visibility changes the stop could not
	// make: every finished message whose delete failed for good from the
	// moment the stop began (while handlers were still finishing, or in the
	// final flush), and every delete or visibility change not sent, or
	// refused or failed in the final flush. Those messages come back (a
	// finished one runs again). A delete that failed before the stop is not
	// counted here: the ErrorHook had it when it happened, and
	// Stats.DeleteErrors counts it. A visibility change refused because the
	// message is no longer in flight under its handle (visible or received
	// again, or deleted since) is not counted: it leaves nothing undone.
	Unflushed int
	Err       error
}

func (e *ShutdownError) Error() string {
	var parts []string
	if e.Cancelled > 0 {
		parts = append(parts, fmt.Sprintf("%d handlers cancelled", e.Cancelled))
	}
	if e.Abandoned > 0 {
		parts = append(parts, fmt.Sprintf("%d handlers still running", e.Abandoned))
	}
	if e.Unflushed > 0 {
		parts = append(parts, fmt.Sprintf("%d deletes or visibility changes not sent", e.Unflushed))
	}
	msg := "sqspool: shutdown cut short"
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, ", ")
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ShutdownError) Unwrap() error { return e.Err }
