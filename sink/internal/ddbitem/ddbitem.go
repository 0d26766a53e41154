// Package ddbitem measures and canonically encodes DynamoDB items. The sink
// uses it to enforce DynamoDB's limits before sending, to recognise items by
// primary key, and to hash payloads; the fake client uses the same code so
// that both agree on what an item's size and key are.
package ddbitem

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Item is a DynamoDB item as the SDK models it.
type Item = map[string]types.AttributeValue

// Size returns the size DynamoDB charges an item against its 400 KB limit,
// following the rules in the DynamoDB developer guide ("Item sizes and
// formats"): attribute names count their UTF-8 bytes, strings and binaries
// their bytes, numbers about one byte per two significant digits plus one,
// booleans and nulls one byte, lists and maps three bytes plus one byte per
// element on top of their contents.
func Size(item Item) int {
	n := 0
	for name, v := range item {
		n += len(name) + valueSize(v)
	}
	return n
}

func valueSize(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return numberSize(v.Value)
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberSS:
		return sum(v.Value, func(s string) int { return len(s) })
	case *types.AttributeValueMemberNS:
		return sum(v.Value, numberSize)
	case *types.AttributeValueMemberBS:
		return sum(v.Value, func(b []byte) int { return len(b) })
	case *types.AttributeValueMemberL:
		n := 3
		for _, e := range v.Value {
			n += 1 + valueSize(e)
		}
		return n
	case *types.AttributeValueMemberM:
		n := 3
		for k, e := range v.Value {
			n += 1 + len(k) + valueSize(e)
		}
		return n
	}
	return 0
}

func sum[E any](set []E, size func(E) int) int {
	n := 0
	for _, e := range set {
		n += size(e)
	}
	return n
}

// numberSize is one byte per two significant digits, plus one. Leading and
// trailing zeros are not significant: DynamoDB stores numbers normalised.
func numberSize(s string) int {
	mant := strings.TrimLeft(s, "+-")
	if i := strings.IndexAny(mant, "eE"); i >= 0 {
		mant = mant[:i]
	}
	digits := strings.Trim(strings.Replace(mant, ".", "", 1), "0")
	return (len(digits)+1)/2 + 1
}

// WireSize is an upper bound of the bytes an item adds to a request body in
// the DynamoDB JSON protocol: every string counted as if each special
// character needed a six-byte escape, binaries base64-encoded. The sink sums
// it to keep a BatchWriteItem request under DynamoDB's 16 MB limit.
func WireSize(item Item) int {
	n := 2 // {}
	for name, v := range item {
		n += jsonStringSize(name) + 2 + wireValueSize(v) // "name":value,
	}
	return n
}

func wireValueSize(v types.AttributeValue) int {
	const wrap = 7 // {"X":} plus a comma
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return wrap + jsonStringSize(v.Value)
	case *types.AttributeValueMemberN:
		return wrap + len(v.Value) + 2
	case *types.AttributeValueMemberB:
		return wrap + base64Size(len(v.Value))
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return wrap + 7
	case *types.AttributeValueMemberSS:
		n := wrap + 3
		for _, s := range v.Value {
			n += jsonStringSize(s) + 1
		}
		return n
	case *types.AttributeValueMemberNS:
		n := wrap + 3
		for _, s := range v.Value {
			n += len(s) + 3
		}
		return n
	case *types.AttributeValueMemberBS:
		n := wrap + 3
		for _, b := range v.Value {
			n += base64Size(len(b)) + 1
		}
		return n
	case *types.AttributeValueMemberL:
		n := wrap + 3
		for _, e := range v.Value {
			n += wireValueSize(e)
		}
		return n
	case *types.AttributeValueMemberM:
		n := wrap + 1
		for k, e := range v.Value {
			n += jsonStringSize(k) + 2 + wireValueSize(e)
		}
		return n
	}
	return wrap
}

func base64Size(n int) int { return (n+2)/3*4 + 2 }

func jsonStringSize(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c < utf8.RuneSelf && (c < 0x20 || c == '<' || c == '>' || c == '&'):
			n += 6
		case c == '"' || c == '\\':
			n += 2
		case c >= utf8.RuneSelf:
			r, w := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && w == 1 || r == '\u2028' || r == '\u2029' {
				n += 6
			} else {
				n += w
			}
			i += w
			continue
		default:
			n++
		}
		i++
	}
	return n
}

// Key returns a canonical encoding of the item's primary key: the values of
// hash and, if rangeAttr is not empty, rangeAttr. ok is false when an
// attribute is missing, so the caller cannot tell the item's key.
func Key(item Item, hashAttr, rangeAttr string) (key string, ok bool) {
	h, ok := item[hashAttr]
	if !ok {
		return "", false
	}
	buf := AppendCanonical(nil, h)
	if rangeAttr != "" {
		r, ok := item[rangeAttr]
		if !ok {
			return "", false
		}
		buf = AppendCanonical(buf, r)
	}
	return string(buf), true
}

// Canonical returns an encoding of item that is equal for equal items,
// whatever the order of map keys and set members. skip names a top-level
// attribute left out (none when empty).
func Canonical(item Item, skip string) []byte {
	return appendMap(nil, item, skip)
}

// AppendCanonical appends the canonical encoding of one value.
func AppendCanonical(buf []byte, v types.AttributeValue) []byte {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return appendBytes(append(buf, 'S'), []byte(v.Value))
	case *types.AttributeValueMemberN:
		return appendBytes(append(buf, 'N'), []byte(v.Value))
	case *types.AttributeValueMemberB:
		return appendBytes(append(buf, 'B'), v.Value)
	case *types.AttributeValueMemberBOOL:
		if v.Value {
			return append(buf, 'T')
		}
		return append(buf, 'F')
	case *types.AttributeValueMemberNULL:
		return append(buf, '0')
	case *types.AttributeValueMemberSS:
		return appendSet(append(buf, 's'), v.Value, func(s string) []byte { return []byte(s) })
	case *types.AttributeValueMemberNS:
		return appendSet(append(buf, 'n'), v.Value, func(s string) []byte { return []byte(s) })
	case *types.AttributeValueMemberBS:
		return appendSet(append(buf, 'b'), v.Value, func(b []byte) []byte { return b })
	case *types.AttributeValueMemberL:
		buf = binary.AppendUvarint(append(buf, 'L'), uint64(len(v.Value)))
		for _, e := range v.Value {
			buf = AppendCanonical(buf, e)
		}
		return buf
	case *types.AttributeValueMemberM:
		return appendMap(append(buf, 'M'), v.Value, "")
	}
	panic(fmt.Sprintf("ddbitem: unsupported attribute value %T", v))
}

func appendMap(buf []byte, m Item, skip string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		if skip == "" || k != skip {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	buf = binary.AppendUvarint(buf, uint64(len(keys)))
	for _, k := range keys {
		buf = appendBytes(buf, []byte(k))
		buf = AppendCanonical(buf, m[k])
	}
	return buf
}

func appendSet[E any](buf []byte, set []E, enc func(E) []byte) []byte {
	members := make([]string, len(set))
	for i, e := range set {
		members[i] = string(enc(e))
	}
	slices.Sort(members)
	buf = binary.AppendUvarint(buf, uint64(len(members)))
	for _, m := range members {
		buf = appendBytes(buf, []byte(m))
	}
	return buf
}

func appendBytes(buf, b []byte) []byte {
	if uint64(len(b)) > math.MaxUint32 {
		panic("ddbitem: value too large")
	}
	return append(binary.AppendUvarint(buf, uint64(len(b))), b...)
}
