package sqsfake

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Error codes of the errors that SQS reports without a modeled type in the
// SDK. They come back as *smithy.GenericAPIError with one of these codes.
const (
	// CodeInvalidParameterValue: a parameter is out of range or malformed.
	CodeInvalidParameterValue = "InvalidParameterValue"
	// CodeMissingParameter: a required parameter is absent or empty.
	CodeMissingParameter = "MissingParameter"
	// CodeInternalError: a server-side (HTTP 500) failure; retryable. The
	// fault injection uses it for ErrorRate, LostReplyRate and
	// PartialFailureRate.
	CodeInternalError = "InternalError"
)

// The query-protocol error codes SQS sends alongside its JSON errors. The SDK
// copies them into ErrorCodeOverride, so ErrorCode() of a real
// QueueDoesNotExist is "AWS.SimpleQueueService.NonExistentQueue"; the fake
// does the same so that code comparing codes behaves identically.
const (
	queryNonExistentQueue      = "AWS.SimpleQueueService.NonExistentQueue"
	queryMessageNotInflight    = "AWS.SimpleQueueService.MessageNotInflight"
	queryEmptyBatch            = "AWS.SimpleQueueService.EmptyBatchRequest"
	queryTooManyEntries        = "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
	queryIdsNotDistinct        = "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
	queryInvalidBatchEntryID   = "AWS.SimpleQueueService.InvalidBatchEntryId"
	queryBatchRequestTooLong   = "AWS.SimpleQueueService.BatchRequestTooLong"
	queryPurgeQueueInProgress  = "AWS.SimpleQueueService.PurgeQueueInProgress"
	queryQueueAlreadyExists    = "QueueAlreadyExists"
	queryReceiptHandleInvalid  = "ReceiptHandleIsInvalid"
	queryRequestThrottled      = "RequestThrottled"
	queryOverLimit             = "OverLimit"
	queryInvalidAttributeName  = "InvalidAttributeName"
	queryInvalidAttributeValue = "InvalidAttributeValue"
)

func errQueueDoesNotExist() error {
	return &types.QueueDoesNotExist{
		Message:           ptr("The specified queue does not exist."),
		ErrorCodeOverride: ptr(queryNonExistentQueue),
	}
}

func errMessageNotInflight() error {
	return &types.MessageNotInflight{ErrorCodeOverride: ptr(queryMessageNotInflight)}
}

func errReceiptHandleIsInvalid(handle string) error {
	return &types.ReceiptHandleIsInvalid{
		Message:           ptr(fmt.Sprintf("The input receipt handle %q is not a valid receipt handle.", handle)),
		ErrorCodeOverride: ptr(queryReceiptHandleInvalid),
	}
}

func errEmptyBatch() error {
	return &types.EmptyBatchRequest{
		Message:           ptr("There should be at least one entry in the request."),
		ErrorCodeOverride: ptr(queryEmptyBatch),
	}
}

func errTooManyEntries(n int) error {
	return &types.TooManyEntriesInBatchRequest{
		Message:           ptr(fmt.Sprintf("Maximum number of entries per request are %d. You have sent %d.", maxBatchEntries, n)),
		ErrorCodeOverride: ptr(queryTooManyEntries),
	}
}

func errIdsNotDistinct(id string) error {
	return &types.BatchEntryIdsNotDistinct{
		Message:           ptr(fmt.Sprintf("Id %s repeated.", id)),
		ErrorCodeOverride: ptr(queryIdsNotDistinct),
	}
}

func errInvalidBatchEntryID(id string) error {
	return &types.InvalidBatchEntryId{
		Message:           ptr(fmt.Sprintf("A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long. Got %q.", id)),
		ErrorCodeOverride: ptr(queryInvalidBatchEntryID),
	}
}

func errBatchRequestTooLong(size int) error {
	return &types.BatchRequestTooLong{
		Message:           ptr(fmt.Sprintf("Batch requests cannot be longer than %d bytes. You have sent %d bytes.", maxMessageSize, size)),
		ErrorCodeOverride: ptr(queryBatchRequestTooLong),
	}
}

func errInvalidMessageContents(msg string) error {
	return &types.InvalidMessageContents{Message: ptr(msg)}
}

func errInvalidAttributeName(name string) error {
	return &types.InvalidAttributeName{
		Message:           ptr(fmt.Sprintf("Unknown Attribute %s.", name)),
		ErrorCodeOverride: ptr(queryInvalidAttributeName),
	}
}

func errInvalidAttributeValue(format string, args ...any) error {
	return &types.InvalidAttributeValue{
		Message:           ptr(fmt.Sprintf(format, args...)),
		ErrorCodeOverride: ptr(queryInvalidAttributeValue),
	}
}

func errQueueNameExists(name string) error {
	return &types.QueueNameExists{
		Message:           ptr(fmt.Sprintf("A queue already exists with the same name (%s) and a different value for attribute(s).", name)),
		ErrorCodeOverride: ptr(queryQueueAlreadyExists),
	}
}

func errPurgeInProgress(arn string) error {
	return &types.PurgeQueueInProgress{
		Message:           ptr(fmt.Sprintf("Only one PurgeQueue operation on %s is allowed every 60 seconds.", arn)),
		ErrorCodeOverride: ptr(queryPurgeQueueInProgress),
	}
}

func errOverLimit(limit int) error {
	return &types.OverLimit{
		Message:           ptr(fmt.Sprintf("There are more than %d in-flight messages on the queue.", limit)),
		ErrorCodeOverride: ptr(queryOverLimit),
	}
}

func errThrottled() error {
	return &types.RequestThrottled{
		Message:           ptr("Rate exceeded (injected by sqsfake)."),
		ErrorCodeOverride: ptr(queryRequestThrottled),
	}
}

func errInternal(why string) error {
	return &smithy.GenericAPIError{
		Code:    CodeInternalError,
		Message: "We encountered an internal error. Please try again. (" + why + ")",
		Fault:   smithy.FaultServer,
	}
}

func errInvalidParameter(format string, args ...any) error {
	return &smithy.GenericAPIError{
		Code:    CodeInvalidParameterValue,
		Message: fmt.Sprintf(format, args...),
		Fault:   smithy.FaultClient,
	}
}

func errMissingParameter(name string) error {
	return &smithy.GenericAPIError{
		Code:    CodeMissingParameter,
		Message: fmt.Sprintf("The request must contain the parameter %s.", name),
		Fault:   smithy.FaultClient,
	}
}

// requireParams mimics the SDK's client-side validation, which rejects a
// request with a missing required member before anything is sent.
func requireParams(input string, fields ...requiredField) error {
	errs := smithy.InvalidParamsError{Context: input}
	for _, f := range fields {
		if f.missing {
			errs.Add(smithy.NewErrParamRequired(f.name))
		}
	}
	if errs.Len() > 0 {
		return errs
	}
	return nil
}

type requiredField struct {
	name    string
	missing bool
}

func required[T any](name string, v *T) requiredField {
	return requiredField{name: name, missing: v == nil}
}

func requiredSlice[T any](name string, v []T) requiredField {
	return requiredField{name: name, missing: v == nil}
}

func requiredMap[V any](name string, v map[string]V) requiredField {
	return requiredField{name: name, missing: v == nil}
}

// httpStatus is the status a real endpoint answers the error with.
func httpStatus(err smithy.APIError) int {
	switch err.(type) {
	case *types.OverLimit, *types.PurgeQueueInProgress, *types.InvalidSecurity:
		return http.StatusForbidden
	case *types.InvalidAddress:
		return http.StatusNotFound
	}
	if err.ErrorFault() == smithy.FaultServer {
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

// wrapError dresses err the way *sqs.Client returns errors: a
// *smithy.OperationError around an HTTP response error around the API error,
// so that errors.As to *types.QueueDoesNotExist, smithy.APIError,
// *awshttp.ResponseError or retry classification all behave as with the real
// client. Errors that already are an OperationError pass through.
func (f *Fake) wrapError(o op, err error) error {
	var opErr *smithy.OperationError
	if errors.As(err, &opErr) {
		return err
	}
	var apiErr smithy.APIError
	var params smithy.InvalidParamsError
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		err = &smithy.CanceledError{Err: err}
	case errors.As(err, &params):
		// Client-side validation: never reached the wire.
	case errors.As(err, &apiErr):
		err = &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{
					StatusCode: httpStatus(apiErr),
					Header:     http.Header{},
				}},
				Err: err,
			},
			RequestID: f.newID(),
		}
	}
	return &smithy.OperationError{ServiceID: "SQS", OperationName: o.String(), Err: err}
}

func ptr[T any](v T) *T { return &v }
