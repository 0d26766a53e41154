package sqspool

import (
	"encoding/json"
	"errors"
	"fmt"
	"unsafe"
)

// BodyDecoder is implemented by a message type that decodes its own body.
// When *T implements it, a pool of T calls DecodeBody on a new T for each
// message instead of decoding JSON (or taking the raw body, for string and
// []byte). The decoder is the type's, so it cannot be one for another type:
// a mismatch does not compile. DecodeBody must not keep body. An error or a
// panic rejects the body: the pool reports a *DecodeError (wrapping the
// *PanicError of a panic) and applies WithDecodeFailure's policy.
type BodyDecoder interface {
	DecodeBody(body string) error
}

// decoder turns a message body into the handler's type. It must not keep
// body or v beyond the call.
type decoder[T any] func(body string, v *T) error

func decodeJSON(body string, v any) error {
	// json.Unmarshal neither keeps nor writes its input (decoded strings are
	// copies), so it may read the body's bytes in place: no copy per message.
	return json.Unmarshal(unsafe.Slice(unsafe.StringData(body), len(body)), v)
}

// decoderFor returns the decoder of a pool of T.
func decoderFor[T any]() decoder[T] {
	return func(body string, v *T) error { return decodeDefault(body, v) }
}

// decodeDefault decodes into v, a *T: with T's own DecodeBody if *T is a
// BodyDecoder, else the raw body for string and []byte, JSON for everything
// else. It is not generic so that lambdasqspool shares it (internal/share).
func decodeDefault(body string, v any) error {
	switch v := v.(type) {
	case BodyDecoder:
		return v.DecodeBody(body)
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
var ErrNotSNSEnvelope = errors.New("sqspool: body is not an SNS notification envelope")

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
