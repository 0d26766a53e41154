// Package ascii measures runs of printable ASCII eight bytes at a time. It
// is the fast part of the checks of what SQS accepts in a message (the XML
// 1.0 characters): a body is mostly printable ASCII, which needs no decoding,
// and the checks decode runes only from the first byte this package cannot
// vouch for.
package ascii

// PrintablePrefix returns the length of the run of bytes 0x20-0x7F that s
// starts with, rounded down to a multiple of eight: the byte at the returned
// offset, or one of the seven after it, is outside that range (or s ends
// within those eight bytes).
func PrintablePrefix(s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		// A byte with its top bit set is not ASCII; a byte below 0x20
		// borrows when 0x20 is taken from it, which sets its top bit. Both
		// fail the word: the caller looks at its bytes one by one.
		if (w|(w-0x2020202020202020))&0x8080808080808080 != 0 {
			break
		}
	}
	return i
}
