package sendbatch

import (
	"testing"

	"github.com/stretchr/testify/assert"
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
