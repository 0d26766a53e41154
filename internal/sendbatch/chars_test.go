package sendbatch

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFirstInvalidChar(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", -1},
		{"plain text\twith\nwhite\rspace", -1},
		{`{"json": "é, 日本, 🎉"}`, -1},
		{"\uE000\uFFFD\U00010000\U0010FFFF\uD7FF", -1},
		{"a\x00b", 1},
		{"ab\x1f", 2},
		{"a\xffb", 1},        // invalid UTF-8
		{"a\xed\xa0\x80", 1}, // UTF-8 encoded surrogate U+D800
		{"xx\uFFFE", 2},      // non-character outside the XML set
		{"x\uFFFF", 1},       // likewise
		{"\x7f", -1},         // DEL is inside #x20-#xD7FF
	} {
		assert.Equal(t, tc.want, FirstInvalidChar(tc.in), "%q", tc.in)
	}
}

// firstInvalidCharByRune is FirstInvalidChar without its eight-byte skip:
// the reference the fast path must agree with.
func firstInvalidCharByRune(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return i
			}
		}
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			return i
		}
	}
	return -1
}

// The eight-byte skip sees every offending byte wherever it falls in a
// word: each byte value, at each offset of a 24-byte printable string.
func TestFirstInvalidCharAtEveryOffset(t *testing.T) {
	base := []byte("abcdefghijklmnopqrstuvwx")
	for off := range base {
		for c := range 256 {
			s := append([]byte(nil), base...)
			s[off] = byte(c)
			require.Equal(t, firstInvalidCharByRune(string(s)), FirstInvalidChar(string(s)), "byte %#x at %d", c, off)
		}
	}
}

func FuzzFirstInvalidChar(f *testing.F) {
	for _, s := range []string{"", "plain ascii text, long enough for words", "tab\there", "日本語のテキスト and ascii", "a\x00b", "\xed\xa0\x80xxxxxxxxx", "xxxxxxxx\uFFFE"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := FirstInvalidChar(s), firstInvalidCharByRune(s); got != want {
			t.Fatalf("FirstInvalidChar(%q) = %d, want %d", s, got, want)
		}
	})
}
