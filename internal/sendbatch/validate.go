package sendbatch

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/sqspool/sqspool/internal/ascii"
)

// FirstInvalidChar returns the byte offset of the first character SQS does
// not accept in a message body or String attribute value, or -1. SQS takes
// the XML 1.0 character set: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
// #x10000-#x10FFFF, in UTF-8. Checking before a message joins a batch keeps
// a bad body from failing as a whole-call error, which would fail the
// innocent messages batched with it.
func FirstInvalidChar(s string) int {
	for i := 0; i < len(s); {
		if i += ascii.PrintablePrefix(s[i:]); i >= len(s) {
			break
		}
		if c := s[i]; c < utf8.RuneSelf { // ASCII fast path
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				return i
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		// Invalid UTF-8 and surrogates decode as RuneError of width 1.
		if (r == utf8.RuneError && n == 1) || r == 0xFFFE || r == 0xFFFF {
			return i
		}
		i += n
	}
	return -1
}

// CheckAttributeName applies the SQS rules for message attribute names.
func CheckAttributeName(name string) error {
	switch {
	case name == "" || len(name) > 256:
		return fmt.Errorf("attribute name %q: want 1..256 characters", name)
	case strings.HasPrefix(strings.ToLower(name), "aws.") || strings.HasPrefix(strings.ToLower(name), "amazon."):
		return fmt.Errorf("attribute name %q: prefixes AWS. and Amazon. are reserved", name)
	case name[0] == '.' || name[len(name)-1] == '.' || strings.Contains(name, ".."):
		return fmt.Errorf("attribute name %q: no leading, trailing or doubled period", name)
	}
	for _, c := range []byte(name) {
		if !IsAlnum(c) && c != '_' && c != '-' && c != '.' {
			return fmt.Errorf("attribute name %q: only letters, digits, '_', '-' and '.'", name)
		}
	}
	return nil
}

// CheckFIFOID applies the SQS rules for MessageGroupId and
// MessageDeduplicationId: 1 to 128 characters, letters, digits and ASCII
// punctuation. Empty means unset and is checked by the caller.
func CheckFIFOID(what, id string) error {
	if len(id) > 128 {
		return fmt.Errorf("%s longer than 128 characters", what)
	}
	for _, c := range []byte(id) {
		if c <= ' ' || c > '~' { // printable ASCII without space
			return fmt.Errorf("%s may hold only letters, digits and punctuation", what)
		}
	}
	return nil
}

// IsAlnum reports whether c is an ASCII letter or digit.
func IsAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
