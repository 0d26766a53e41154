package ddbitem

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
)

func TestSize(t *testing.T) {
	for name, tc := range map[string]struct {
		item Item
		want int
	}{
		"string":  {Item{"ab": &types.AttributeValueMemberS{Value: "héllo"}}, 2 + 6},
		"binary":  {Item{"b": &types.AttributeValueMemberB{Value: []byte{1, 2, 3}}}, 1 + 3},
		"bool":    {Item{"b": &types.AttributeValueMemberBOOL{Value: true}}, 1 + 1},
		"null":    {Item{"b": &types.AttributeValueMemberNULL{Value: true}}, 1 + 1},
		"number":  {Item{"n": &types.AttributeValueMemberN{Value: "12345"}}, 1 + 3 + 1},
		"zeros":   {Item{"n": &types.AttributeValueMemberN{Value: "-0012.3400"}}, 1 + 2 + 1},
		"exp":     {Item{"n": &types.AttributeValueMemberN{Value: "1.5E+10"}}, 1 + 1 + 1},
		"zero":    {Item{"n": &types.AttributeValueMemberN{Value: "0"}}, 1 + 0 + 1},
		"list":    {Item{"l": &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberS{Value: "ab"}}}}, 1 + 3 + 1 + 2},
		"map":     {Item{"m": &types.AttributeValueMemberM{Value: Item{"k": &types.AttributeValueMemberS{Value: "ab"}}}}, 1 + 3 + 1 + 1 + 2},
		"sets":    {Item{"s": &types.AttributeValueMemberSS{Value: []string{"a", "bc"}}, "n": &types.AttributeValueMemberNS{Value: []string{"1", "22"}}, "b": &types.AttributeValueMemberBS{Value: [][]byte{{1}}}}, 1 + 3 + 1 + 2 + 2 + 1 + 1},
		"several": {Item{"a": &types.AttributeValueMemberS{Value: "x"}, "bb": &types.AttributeValueMemberS{Value: "yy"}}, 2 + 4},
	} {
		t.Run(name, func(t *testing.T) { assert.Equal(t, tc.want, Size(tc.item)) })
	}
}

// toJSON renders an item the way the DynamoDB JSON protocol does, with
// encoding/json, which escapes <, > and & too: the worst case.
func toJSON(v types.AttributeValue) any {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return map[string]any{"S": v.Value}
	case *types.AttributeValueMemberN:
		return map[string]any{"N": v.Value}
	case *types.AttributeValueMemberB:
		return map[string]any{"B": base64.StdEncoding.EncodeToString(v.Value)}
	case *types.AttributeValueMemberBOOL:
		return map[string]any{"BOOL": v.Value}
	case *types.AttributeValueMemberNULL:
		return map[string]any{"NULL": v.Value}
	case *types.AttributeValueMemberSS:
		return map[string]any{"SS": v.Value}
	case *types.AttributeValueMemberL:
		l := make([]any, len(v.Value))
		for i, e := range v.Value {
			l[i] = toJSON(e)
		}
		return map[string]any{"L": l}
	case *types.AttributeValueMemberM:
		return map[string]any{"M": itemJSON(v.Value)}
	}
	panic("unexpected")
}

func itemJSON(item Item) map[string]any {
	m := map[string]any{}
	for k, v := range item {
		m[k] = toJSON(v)
	}
	return m
}

func TestWireSizeBoundsJSON(t *testing.T) {
	for name, item := range map[string]Item{
		"plain":   {"pk": &types.AttributeValueMemberS{Value: "order-1"}, "n": &types.AttributeValueMemberN{Value: "42"}},
		"escapes": {"q\"<>": &types.AttributeValueMemberS{Value: "a\"b\\c\n<&>\u2028\x01" + strings.Repeat("é", 10)}},
		"binary":  {"b": &types.AttributeValueMemberB{Value: []byte("hello world!!")}},
		"nested": {"m": &types.AttributeValueMemberM{Value: Item{
			"l":  &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberBOOL{Value: true}, &types.AttributeValueMemberNULL{Value: true}}},
			"ss": &types.AttributeValueMemberSS{Value: []string{"x", "<y>"}},
		}}},
		"invalid utf8": {"s": &types.AttributeValueMemberS{Value: "\xff\xfe"}},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(itemJSON(item))
			assert.NoError(t, err)
			assert.GreaterOrEqual(t, WireSize(item), len(b), string(b))
		})
	}
}

func TestKeyAndCanonical(t *testing.T) {
	a := Item{"pk": &types.AttributeValueMemberS{Value: "1"}, "sk": &types.AttributeValueMemberN{Value: "2"}, "x": &types.AttributeValueMemberSS{Value: []string{"b", "a"}}}
	b := Item{"x": &types.AttributeValueMemberSS{Value: []string{"a", "b"}}, "sk": &types.AttributeValueMemberN{Value: "2"}, "pk": &types.AttributeValueMemberS{Value: "1"}}
	assert.Equal(t, Canonical(a, ""), Canonical(b, ""), "map and set order do not matter")
	ka, ok := Key(a, "pk", "sk")
	assert.True(t, ok)
	kb, _ := Key(b, "pk", "sk")
	assert.Equal(t, ka, kb)
	k1, _ := Key(a, "pk", "")
	assert.NotEqual(t, ka, k1)
	_, ok = Key(a, "pk", "missing")
	assert.False(t, ok)

	// S "1" and N "1" differ; so do "ab"+"c" and "a"+"bc".
	n1 := Item{"pk": &types.AttributeValueMemberN{Value: "1"}}
	assert.NotEqual(t, Canonical(a, "x"), Canonical(n1, ""))
	x := Item{"pk": &types.AttributeValueMemberS{Value: "ab"}, "sk": &types.AttributeValueMemberS{Value: "c"}}
	y := Item{"pk": &types.AttributeValueMemberS{Value: "a"}, "sk": &types.AttributeValueMemberS{Value: "bc"}}
	kx, _ := Key(x, "pk", "sk")
	ky, _ := Key(y, "pk", "sk")
	assert.NotEqual(t, kx, ky)

	assert.Equal(t, Canonical(a, "x"), Canonical(Item{"pk": a["pk"], "sk": a["sk"]}, ""), "skip leaves out an attribute")
}

func TestCanonicalDistinguishesTypes(t *testing.T) {
	values := []types.AttributeValue{
		&types.AttributeValueMemberS{Value: "1"},
		&types.AttributeValueMemberN{Value: "1"},
		&types.AttributeValueMemberB{Value: []byte("1")},
		&types.AttributeValueMemberBOOL{Value: true},
		&types.AttributeValueMemberBOOL{Value: false},
		&types.AttributeValueMemberNULL{Value: true},
		&types.AttributeValueMemberSS{Value: []string{"1"}},
		&types.AttributeValueMemberNS{Value: []string{"1"}},
		&types.AttributeValueMemberBS{Value: [][]byte{[]byte("1")}},
		&types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberS{Value: "1"}}},
		&types.AttributeValueMemberM{Value: Item{"1": &types.AttributeValueMemberS{Value: "1"}}},
		&types.AttributeValueMemberL{},
		&types.AttributeValueMemberM{},
	}
	seen := map[string]int{}
	for i, v := range values {
		c := string(AppendCanonical(nil, v))
		if j, dup := seen[c]; dup {
			t.Errorf("values %d and %d encode alike", j, i)
		}
		seen[c] = i
		assert.Positive(t, WireSize(Item{"a": v}))
	}
}
