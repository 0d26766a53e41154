package sqspool

import (
	"encoding/json"
	"errors"
	"fmt"
	"unsafe"
)

// Decoder turns a message body into the handler's type. It must not keep body
// or v beyond the call.
type Decoder[T any] func(body string, v *T) error

// DecodeJSON is the default decoder: the body is JSON for *T.
func DecodeJSON[T any](body string, v *T) error { return decodeJSON(body, v) }

func decodeJSON(body string, v any) error {
	// json.Unmarshal neither keeps nor writes its input (decoded strings are
	// copies), so it may read the body's bytes in place: no copy per message.
	return json.Unmarshal(unsafe.Slice(unsafe.StringData(body), len(body)), v)
}

// decoderFor returns the decoder a pool of T uses when none is set.
func decoderFor[T any]() Decoder[T] {
	return func(body string, v *T) error { return decodeDefault(body, v) }
}

// decodeDefault is the default decoding into v, a *T: the raw body for
// string and []byte, JSON for everything else. It is not generic so that
// lambdasqspool shares it (internal/share).
func decodeDefault(body string, v any) error {
	switch v := v.(type) {
	case *string:
		*v = body
		return nil
	case *[]byte:
		*v = []byte(body)
		return nil
	}
	return decodeJSON(body, v)
}

// snsEnvelope is the JSON that SNS wraps around a message it delivers to SQS
// without raw message delivery.
type snsEnvelope struct {
	Type      string
	MessageID string `json:"MessageId"`
	TopicArn  string
	Message   *string
}

// ErrNotSNSEnvelope is wrapped by the DecodeError of a body that is not an SNS
// notification while WithSNSEnvelope is set.
var ErrNotSNSEnvelope = errors.New("body is not an SNS notification envelope")

// unwrapSNS returns the Message field of an SNS notification envelope.
func unwrapSNS(body string) (string, error) {
	var env snsEnvelope
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotSNSEnvelope, err)
	}
	if env.Type != "Notification" || env.Message == nil {
		return "", ErrNotSNSEnvelope
	}
	return *env.Message, nil
}
