package catcher

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCheckAttributeName(t *testing.T) {
	for _, ok := range []string{"traceparent", "x-request-id", "a.b_c-D9"} {
		assert.NoError(t, checkAttributeName(ok), ok)
	}
	for _, bad := range []string{"", "AWS.x", "amazon.y", ".a", "a.", "a..b", "a b", "ä", string(make([]byte, 257))} {
		assert.Error(t, checkAttributeName(bad), "%q", bad)
	}
}

func TestCheckFIFOID(t *testing.T) {
	assert.NoError(t, checkFIFOID("id", `abc-123_!"#$%&'()*+,./:;<=>?@[\]^`+"`{|}~"))
	for _, bad := range []string{"a b", "é", "tab\t", string(make([]byte, 129))} {
		assert.ErrorIs(t, checkFIFOID("id", bad), ErrBadRequest, "%q", bad)
	}
}

func TestValidTraceparent(t *testing.T) {
	const v = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, ok := range []string{v, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-later"} {
		assert.True(t, validTraceparent(ok), ok)
	}
	for _, bad := range []string{
		"", "not-a-trace", v[:54], v + "-x", // version 00 is exactly 55 bytes
		"ff" + v[2:], // version ff is invalid
		"00-00000000000000000000000000000000-b7ad6b7169203331-01", // zero trace id
		"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", // zero parent id
		"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", // upper case
		"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
		"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x", // later version: fields follow a '-'
	} {
		assert.False(t, validTraceparent(bad), bad)
	}
}
