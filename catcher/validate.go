package catcher

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sqspool/sqspool/internal/sendbatch"
)

// ErrBadRequest marks a validation error as the client's malformed input: a
// ValidateFunc or FIFOFunc error that wraps it gives 400 instead of 422.
var ErrBadRequest = errors.New("bad request")

// checkAttributeName applies the SQS rules for message attribute names.
func checkAttributeName(name string) error { return sendbatch.CheckAttributeName(name) }

// checkFIFOID applies the SQS rules for MessageGroupId and
// MessageDeduplicationId; its error wraps ErrBadRequest.
func checkFIFOID(what, id string) error {
	if err := sendbatch.CheckFIFOID(what, id); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return nil
}

func isAlnum(c byte) bool { return sendbatch.IsAlnum(c) }

// validTraceparent reports whether v is a W3C traceparent
// (https://www.w3.org/TR/trace-context/#traceparent-header): version,
// trace-id, parent-id and flags in lowercase hex, ids not all zero, version
// ff invalid; a later version may append fields after a '-'.
func validTraceparent(v string) bool {
	const size = 55 // 2+1+32+1+16+1+2
	if len(v) < size || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return false
	}
	version, trace, parent, flags := v[0:2], v[3:35], v[36:52], v[53:55]
	if !lowerHex(version) || version == "ff" || !lowerHex(trace) || !lowerHex(parent) || !lowerHex(flags) {
		return false
	}
	if strings.Trim(trace, "0") == "" || strings.Trim(parent, "0") == "" {
		return false
	}
	if version == "00" {
		return len(v) == size
	}
	return len(v) == size || v[size] == '-'
}

func lowerHex(s string) bool {
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
