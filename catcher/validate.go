package catcher

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadRequest marks a validation error as the client's malformed input: a
// ValidateFunc or FIFOFunc error that wraps it gives 400 instead of 422.
var ErrBadRequest = errors.New("bad request")

// checkAttributeName applies the SQS rules for message attribute names.
func checkAttributeName(name string) error {
	switch {
	case name == "" || len(name) > 256:
		return fmt.Errorf("attribute name %q: want 1..256 characters", name)
	case strings.HasPrefix(strings.ToLower(name), "aws.") || strings.HasPrefix(strings.ToLower(name), "amazon."):
		return fmt.Errorf("attribute name %q: prefixes AWS. and Amazon. are reserved", name)
	case name[0] == '.' || name[len(name)-1] == '.' || strings.Contains(name, ".."):
		return fmt.Errorf("attribute name %q: no leading, trailing or doubled period", name)
	}
	for _, c := range []byte(name) {
		if !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return fmt.Errorf("attribute name %q: only letters, digits, '_', '-' and '.'", name)
		}
	}
	return nil
}

// checkFIFOID applies the SQS rules for MessageGroupId and
// MessageDeduplicationId: 1 to 128 characters, letters, digits and ASCII
// punctuation. Empty means unset and is checked by the caller.
func checkFIFOID(what, id string) error {
	if len(id) > 128 {
		return fmt.Errorf("%w: %s longer than 128 characters", ErrBadRequest, what)
	}
	for _, c := range []byte(id) {
		if c <= ' ' || c > '~' { // printable ASCII without space
			return fmt.Errorf("%w: %s may hold only letters, digits and punctuation", ErrBadRequest, what)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

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
