package catcher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/sqspool/sqspool/internal/backoff"
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

// normalizeCode strips the prefix of the query-compatible SQS error codes
// ("AWS.SimpleQueueService.NonExistentQueue"), so one table serves both.
func normalizeCode(code string) string {
	return strings.TrimPrefix(code, "AWS.SimpleQueueService.")
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
	case isAPI && backoff.Throttle(normalizeCode(apiErr.ErrorCode())):
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
func entryRejection(f types.BatchResultErrorEntry) *rejection {
	code := normalizeCode(deref(f.Code))
	err := &entryError{Code: code, Message: deref(f.Message), SenderFault: f.SenderFault}
	switch {
	case backoff.Throttle(code):
		return reject(http.StatusServiceUnavailable, ReasonThrottled, "the queue is throttling, retry later", err)
	case !f.SenderFault:
		return reject(http.StatusServiceUnavailable, ReasonUnavailable, "the queue failed to store the message, retry later", err)
	case contentCodes[code]:
		// The code is safe to show and tells the client what to fix.
		return reject(http.StatusBadRequest, ReasonRejected, "the queue refused the message: "+code, err)
	default:
		return reject(http.StatusBadGateway, ReasonRejected, "the queue refused the message", err)
	}
}

// entryError is the failure SQS reported for one entry of a batch.
type entryError struct {
	Code        string
	Message     string
	SenderFault bool
}

func (e *entryError) Error() string {
	return fmt.Sprintf("sqs entry failed: %s (sender fault %t): %s", e.Code, e.SenderFault, e.Message)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
