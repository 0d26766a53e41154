package sqspool

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUnwrapSNS(t *testing.T) {
	body, err := unwrapSNS(`{"Type":"Notification","Message":"hello"}`)
	require.NoError(t, err)
	assert.Equal(t, "hello", body)

	for _, bad := range []string{``, `[]`, `{"Type":"SubscriptionConfirmation","Message":"x"}`, `{"Type":"Notification"}`} {
		_, err := unwrapSNS(bad)
		assert.ErrorIs(t, err, ErrNotSNSEnvelope, bad)
	}
}

func TestDefaultDecoders(t *testing.T) {
	var s string
	require.NoError(t, decoderFor[string]()("raw", &s))
	assert.Equal(t, "raw", s)
	var b []byte
	require.NoError(t, decoderFor[[]byte]()("raw", &b))
	assert.Equal(t, []byte("raw"), b)
	var o order
	require.NoError(t, decoderFor[order]()(`{"id":3}`, &o))
	assert.Equal(t, 3, o.ID)
	var syn *json.SyntaxError
	assert.ErrorAs(t, decoderFor[order]()(`{`, &o), &syn)
}

// FuzzDecodePath feeds arbitrary bodies through the decode path a pool runs:
// optional SNS unwrapping, then JSON. It must never panic, and a body is
// either decoded or rejected with an error, never both.
func FuzzDecodePath(f *testing.F) {
	for _, seed := range []string{
		`{"id":1}`, `{"id":"x"}`, `{`, ``, `null`, `[]`, "\xff\xfe",
		`{"Type":"Notification","Message":"{\"id\":2}"}`,
		`{"Type":"Notification","Message":"{"}`,
		`{"id":1e999}`, `{"id":1,"id":2}`,
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, body string, sns bool) {
		var err error
		if sns {
			body, err = unwrapSNS(body)
			if err != nil {
				if !errors.Is(err, ErrNotSNSEnvelope) {
					t.Fatalf("SNS unwrap error %v does not wrap ErrNotSNSEnvelope", err)
				}
				return
			}
		}
		var o order
		if err := decodeJSON(body, &o); err == nil && !json.Valid([]byte(body)) {
			t.Fatalf("decoded invalid JSON %q", body)
		}
	})
}
