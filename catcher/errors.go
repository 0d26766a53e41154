package catcher

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/smithy-go"

	"github.com/sqspool/sqspool/internal/sendbatch"
)

// rejection is the answer to a request that was not accepted. msg is what
// the client sees; err is the cause, for the log only, because SQS errors
// can name the account and queue.
type rejection struct {
	status int
	reason Reason
	msg    string
	err    error
}

func reject(status int, reason Reason, msg string, err error) *rejection {
	return &rejection{status: status, reason: reason, msg: msg, err: err}
}

var (
	// errClosed: the handler is closing and takes no new work.
	errClosed = reject(http.StatusServiceUnavailable, ReasonClosed, "shutting down", nil)
	// errCancelled: the request's context ended before its batch was sent,
	// so it was left out of the batch.
	errCancelled = reject(http.StatusServiceUnavailable, ReasonCancelled, "request cancelled before the message was sent", nil)
	// errFull: the waiting room (WithMaxWaiting) is full.
	errFull = reject(http.StatusServiceUnavailable, ReasonOverloaded, "too many requests waiting for the queue, retry later", nil)
	// errBusy: the bodies held (WithMaxBodyMemory) are at their bound.
	errBusy = reject(http.StatusServiceUnavailable, ReasonOverloaded, "too many request bodies in progress, retry later", nil)
	// errLate: the message could no longer be sent and answered before the
	// server's write deadline, so it was not sent.
	errLate = reject(http.StatusServiceUnavailable, ReasonOverloaded, "the queue could not take the message in time, retry later", nil)
	// errConflict: a FIFO deduplication id reused for another message.
	errConflict = reject(http.StatusConflict, ReasonConflict, "the deduplication id was used for a different message (another body or group) within the last 5 minutes", nil)
)

// contentCodes are the entry failures caused by what the request carried
// (body, header-derived attributes or FIFO ids): the client must change the
// request, so they give 400.
var contentCodes = map[string]bool{
	"InvalidMessageContents": true,
	"MessageTooLong":         true,
	"InvalidParameterValue":  true,
	"MissingParameter":       true,
	"InvalidAttributeName":   true,
	"InvalidAttributeValue":  true,
}

// callRejection maps the error of a whole SendMessageBatch call to the
// answer of every request in it. Unknown errors count as unavailability:
// a retry is the safer advice when we cannot tell.
func callRejection(err error) *rejection {
	var apiErr smithy.APIError
	isAPI := errors.As(err, &apiErr)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return reject(http.StatusServiceUnavailable, ReasonUnavailable, "timed out waiting for the queue", err)
	case errors.Is(err, context.Canceled):
		// Only Close giving up cancels the batcher's context.
		return reject(http.StatusServiceUnavailable, ReasonClosed, "shutting down", err)
	case isAPI && sendbatch.Throttled(apiErr.ErrorCode()):
		return reject(http.StatusServiceUnavailable, ReasonThrottled, "the queue is throttling, retry later", err)
	case isAPI && apiErr.ErrorFault() == smithy.FaultClient:
		// Permissions, a missing queue, KMS: a retry will not help until
		// an operator acts.
		return reject(http.StatusBadGateway, ReasonRejected, "the queue refused the request", err)
	default:
		return reject(http.StatusServiceUnavailable, ReasonUnavailable, "the queue is unavailable, retry later", err)
	}
}

// entryRejection maps a failed entry of a SendMessageBatch answer to the
// answer of its request.
func entryRejection(err *sendbatch.EntryError) *rejection {
	switch {
	case sendbatch.Throttled(err.Code):
		return reject(http.StatusServiceUnavailable, ReasonThrottled, "the queue is throttling, retry later", err)
	case !err.SenderFault:
		return reject(http.StatusServiceUnavailable, ReasonUnavailable, "the queue failed to store the message, retry later", err)
	case contentCodes[err.Code]:
		// The code is safe to show and tells the client what to fix.
		return reject(http.StatusBadRequest, ReasonRejected, "the queue refused the message: "+err.Code, err)
	default:
		return reject(http.StatusBadGateway, ReasonRejected, "the queue refused the message", err)
	}
}

// rejectionOf maps what the sender said about a message to its answer.
func rejectionOf(err error) *rejection {
	var entryErr *sendbatch.EntryError
	var callErr *sendbatch.CallError
	switch {
	case errors.Is(err, sendbatch.ErrClosed):
		return errClosed
	case errors.Is(err, sendbatch.ErrCancelled):
		return errCancelled
	case errors.Is(err, sendbatch.ErrLate):
		return errLate
	case errors.Is(err, sendbatch.ErrFull):
		return errFull
	case errors.Is(err, sendbatch.ErrUnreported):
		// It may or may not be stored: 503, the at-least-once answer.
		return reject(http.StatusServiceUnavailable, ReasonUnavailable, "the queue did not confirm the message, retry later", fmt.Errorf("catcher: %w", err))
	case errors.As(err, &entryErr):
		return entryRejection(entryErr)
	case errors.As(err, &callErr):
		return callRejection(fmt.Errorf("catcher: %w", callErr))
	default:
		return callRejection(err)
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
