// Package share hands package sqspool's per-message steps (decode, SNS
// unwrap, decode policy, MessageFrom, the handler's panic recovery, NoRetry
// and RetryAfter, the error hook and the Observer) to the repo's other
// modules, lambdasqspool first, without exporting them from sqspool: sqspool
// sets Configure in its init, so every program that imports sqspool finds it
// set. Being internal, nothing outside this repo can import it.
package share

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Configure applies sqspool options (a []sqspool.Option) and checks them as
// StartPool does, or StartBatchPool if batch. Set by package sqspool.
var Configure func(opts any, batch bool) (Settings, error)

// Settings is what the options say about handling one message.
type Settings struct {
	// DefaultDecode is the pool's decoding into v: T's DecodeBody when v is
	// a sqspool.BodyDecoder, the raw body for *string and *[]byte, JSON for
	// any other v.
	DefaultDecode func(body string, v any) error
	// Workers is how many handlers may run at once (WithWorkers).
	Workers int
	// BatchSize is the most messages a batch handler gets at once
	// (WithBatchSize); batch settings only.
	BatchSize int
	// Process runs the pool's steps on one delivery.
	Process func(ctx context.Context, d Delivery) Outcome
	// ProcessBatch runs the pool's steps on a batch: it prepares each
	// delivery (Handle is not used), calls handle once with the indices in
	// ds of those that decode, and returns each delivery's outcome. With
	// fifo, no message runs after a malformed one kept by the decode
	// policy, and none after the first failure is settled (their Err is
	// then a sentinel of sqspool's, and Done false).
	ProcessBatch func(ctx context.Context, ds []Delivery, fifo bool, handle func(ctx context.Context, ran []int) error) []Outcome
}

// Delivery is one message to process, with the type-specific steps bound by
// the caller to the handler's value.
type Delivery struct {
	Message  types.Message
	QueueURL string
	// Decode decodes the body (already SNS-unwrapped under WithSNSEnvelope)
	// into the handler's value.
	Decode func(body string) error
	// Handle runs the handler on that value, under a context that carries
	// the message (sqspool.MessageFrom).
	Handle func(ctx context.Context) error
	// SetVisibility, if not nil, makes the message visible again after d:
	// the delay a handler asked for with sqspool.RetryAfter.
	SetVisibility func(ctx context.Context, d time.Duration) error
}

// Outcome is what became of a delivery.
type Outcome struct {
	// Done is true when the message is done with and may be deleted: the
	// handler succeeded, its error was final (sqspool.NoRetry), or the body
	// did not decode under sqspool.DeleteMalformed.
	Done bool
	// Err is the failure, nil on success: the handler's error, a
	// *sqspool.PanicError, a *sqspool.DecodeError, or, in a FIFO batch,
	// that an earlier message failed.
	Err error
}
