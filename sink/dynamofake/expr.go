package dynamofake

import (
	"bytes"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sqspool/sqspool/sink/internal/ddbitem"
)

// The expression subset the fake evaluates. Anything else is answered with
// a ValidationException naming the fake, so that a test never passes on an
// expression the fake silently misread.
//
//	condition  := or
//	or         := and { OR and }
//	and        := not { AND not }
//	not        := NOT not | "(" or ")" | function | operand comparator operand
//	function   := attribute_exists "(" path ")" | attribute_not_exists "(" path ")"
//	comparator := = | <> | < | <= | > | >=
//	operand    := path | :value
//	path       := #name | a top-level attribute name that is not reserved
//
//	update     := { SET action { "," action } | REMOVE path { "," path } }
//	action     := path = operand

// env resolves placeholders and records which were used, because DynamoDB
// rejects a request with undefined or unused ones.
type env struct {
	names      map[string]string
	values     map[string]types.AttributeValue
	usedNames  map[string]bool
	usedValues map[string]bool
}

func newEnv(names map[string]string, values map[string]types.AttributeValue) *env {
	return &env{names: names, values: values, usedNames: map[string]bool{}, usedValues: map[string]bool{}}
}

// checkUsed reports placeholders that no expression used.
func (e *env) checkUsed() error {
	for _, k := range sortedKeys(e.names) {
		if !e.usedNames[k] {
			return validationf("Value provided in ExpressionAttributeNames unused in expressions: keys: {%s}", k)
		}
	}
	for _, k := range sortedKeys(e.values) {
		if !e.usedValues[k] {
			return validationf("Value provided in ExpressionAttributeValues unused in expressions: keys: {%s}", k)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// reserved holds the DynamoDB reserved words that most often appear as
// attribute names; DynamoDB rejects them unquoted. (The full list is longer;
// the fake errs on the side of accepting.)
var reserved = map[string]bool{
	"comment": true, "count": true, "data": true, "date": true, "day": true, "group": true,
	"hash": true, "key": true, "month": true, "name": true, "order": true, "range": true,
	"region": true, "size": true, "source": true, "state": true, "status": true, "time": true,
	"timestamp": true, "ttl": true, "type": true, "user": true, "value": true, "year": true, "zone": true,
}

type tokenKind int

const (
	tokWord  tokenKind = iota // keyword, function or attribute name
	tokName                   // #name
	tokValue                  // :value
	tokPunct                  // ( ) , and comparators
)

type token struct {
	kind tokenKind
	text string
}

func tokenize(src string) ([]token, error) {
	var toks []token
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')' || c == ',' || c == '=':
			toks = append(toks, token{tokPunct, string(c)})
			i++
		case c == '<' || c == '>':
			j := i + 1
			if j < len(src) && (src[j] == '=' || (c == '<' && src[j] == '>')) {
				j++
			}
			toks = append(toks, token{tokPunct, src[i:j]})
			i = j
		case c == '#' || c == ':' || isWordByte(c):
			j := i + 1
			for j < len(src) && isWordByte(src[j]) {
				j++
			}
			kind := tokWord
			if c == '#' {
				kind = tokName
			} else if c == ':' {
				kind = tokValue
			}
			if j == i+1 && kind != tokWord {
				return nil, unsupported(src, "empty placeholder")
			}
			toks = append(toks, token{kind, src[i:j]})
			i = j
		default:
			return nil, unsupported(src, fmt.Sprintf("character %q", c))
		}
	}
	return toks, nil
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func unsupported(src, what string) error {
	return validationf("dynamofake does not support %s in expression %q", what, src)
}

type parser struct {
	src  string
	toks []token
	pos  int
	env  *env
}

func (p *parser) peek() (token, bool) {
	if p.pos >= len(p.toks) {
		return token{}, false
	}
	return p.toks[p.pos], true
}

func (p *parser) next() (token, error) {
	t, ok := p.peek()
	if !ok {
		return token{}, validationf("Invalid expression: unexpected end of expression %q", p.src)
	}
	p.pos++
	return t, nil
}

func (p *parser) keyword(word string) bool {
	t, ok := p.peek()
	if ok && t.kind == tokWord && strings.EqualFold(t.text, word) {
		p.pos++
		return true
	}
	return false
}

func (p *parser) punct(s string) bool {
	t, ok := p.peek()
	if ok && t.kind == tokPunct && t.text == s {
		p.pos++
		return true
	}
	return false
}

func (p *parser) expect(s string) error {
	if !p.punct(s) {
		return validationf("Invalid expression: expected %q in %q", s, p.src)
	}
	return nil
}

// cond evaluates against an item, nil when it does not exist.
type cond func(item map[string]types.AttributeValue) bool

// operand evaluates to a value, nil when it names a missing attribute.
type operand func(item map[string]types.AttributeValue) types.AttributeValue

func parseCondition(src string, e *env) (cond, error) {
	toks, err := tokenize(src)
	if err != nil {
		return nil, err
	}
	p := &parser{src: src, toks: toks, env: e}
	c, err := p.or()
	if err != nil {
		return nil, err
	}
	if t, ok := p.peek(); ok {
		return nil, validationf("Invalid ConditionExpression: syntax error; token: %q in %q", t.text, src)
	}
	return c, nil
}

func (p *parser) or() (cond, error) {
	return p.chain("OR", p.and, func(a, b bool) bool { return a || b })
}

func (p *parser) and() (cond, error) {
	return p.chain("AND", p.not, func(a, b bool) bool { return a && b })
}

// chain parses operand { word operand }, combining left to right. (DynamoDB
// evaluates AND and OR lazily; without side effects that is the same.)
func (p *parser) chain(word string, operand func() (cond, error), combine func(a, b bool) bool) (cond, error) {
	left, err := operand()
	for err == nil && p.keyword(word) {
		var right cond
		if right, err = operand(); err == nil {
			l := left
			left = func(it map[string]types.AttributeValue) bool { return combine(l(it), right(it)) }
		}
	}
	return left, err
}

func (p *parser) not() (cond, error) {
	if p.keyword("NOT") {
		c, err := p.not()
		if err != nil {
			return nil, err
		}
		return func(it map[string]types.AttributeValue) bool { return !c(it) }, nil
	}
	if p.punct("(") {
		c, err := p.or()
		if err != nil {
			return nil, err
		}
		return c, p.expect(")")
	}
	if t, ok := p.peek(); ok && t.kind == tokWord && p.pos+1 < len(p.toks) && p.toks[p.pos+1].text == "(" {
		return p.function()
	}
	left, err := p.operand()
	if err != nil {
		return nil, err
	}
	op, err := p.next()
	if err != nil {
		return nil, err
	}
	if op.kind != tokPunct || !slices.Contains([]string{"=", "<>", "<", "<=", ">", ">="}, op.text) {
		return nil, unsupported(p.src, fmt.Sprintf("operator %q", op.text))
	}
	right, err := p.operand()
	if err != nil {
		return nil, err
	}
	return func(it map[string]types.AttributeValue) bool { return compare(op.text, left(it), right(it)) }, nil
}

func (p *parser) function() (cond, error) {
	name, _ := p.next()
	p.pos++ // "("
	fn := strings.ToLower(name.text)
	if fn != "attribute_exists" && fn != "attribute_not_exists" {
		return nil, unsupported(p.src, "function "+name.text)
	}
	attr, err := p.path()
	if err != nil {
		return nil, err
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	want := fn == "attribute_exists"
	return func(it map[string]types.AttributeValue) bool {
		_, ok := it[attr]
		return ok == want
	}, nil
}

func (p *parser) operand() (operand, error) {
	t, ok := p.peek()
	if ok && t.kind == tokValue {
		p.pos++
		v, ok := p.env.values[t.text]
		if !ok {
			return nil, validationf("An expression attribute value used in expression is not defined; attribute value: %s", t.text)
		}
		p.env.usedValues[t.text] = true
		return func(map[string]types.AttributeValue) types.AttributeValue { return v }, nil
	}
	attr, err := p.path()
	if err != nil {
		return nil, err
	}
	return func(it map[string]types.AttributeValue) types.AttributeValue { return it[attr] }, nil
}

// path returns the attribute name a path token stands for.
func (p *parser) path() (string, error) {
	t, err := p.next()
	if err != nil {
		return "", err
	}
	switch t.kind {
	case tokName:
		name, ok := p.env.names[t.text]
		if !ok {
			return "", validationf("An expression attribute name used in the document path is not defined; attribute name: %s", t.text)
		}
		p.env.usedNames[t.text] = true
		return name, nil
	case tokWord:
		if reserved[strings.ToLower(t.text)] {
			return "", validationf("Attribute name is a reserved keyword; reserved keyword: %s", t.text)
		}
		if t.text[0] >= '0' && t.text[0] <= '9' {
			return "", validationf("Invalid expression: syntax error; token: %q", t.text)
		}
		return t.text, nil
	}
	return "", validationf("Invalid expression: syntax error; token: %q in %q", t.text, p.src)
}

// compare follows DynamoDB: operands of different types (or a missing
// attribute) are never equal and never ordered.
func compare(op string, a, b types.AttributeValue) bool {
	if op == "<>" {
		return !compare("=", a, b)
	}
	if a == nil || b == nil || typeOf(a) != typeOf(b) {
		return false
	}
	var c int
	switch a := a.(type) {
	case *types.AttributeValueMemberN:
		x, okx := new(big.Rat).SetString(a.Value)
		y, oky := new(big.Rat).SetString(b.(*types.AttributeValueMemberN).Value)
		if !okx || !oky {
			return false
		}
		c = x.Cmp(y)
	case *types.AttributeValueMemberS:
		c = strings.Compare(a.Value, b.(*types.AttributeValueMemberS).Value)
	case *types.AttributeValueMemberB:
		c = bytes.Compare(a.Value, b.(*types.AttributeValueMemberB).Value)
	default:
		// Only scalars are ordered; other types are only equal or not.
		return op == "=" && bytes.Equal(ddbitem.AppendCanonical(nil, a), ddbitem.AppendCanonical(nil, b))
	}
	switch op {
	case "=":
		return c == 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	default: // ">="
		return c >= 0
	}
}

func typeOf(v types.AttributeValue) string { return fmt.Sprintf("%T", v) }

// update is a parsed update expression.
type update struct {
	set    []setAction
	remove []string
}

type setAction struct {
	attr  string
	value operand
}

func parseUpdate(src string, e *env) (*update, error) {
	toks, err := tokenize(src)
	if err != nil {
		return nil, err
	}
	p := &parser{src: src, toks: toks, env: e}
	u := &update{}
	seen := map[string]bool{}
	for {
		t, ok := p.peek()
		if !ok {
			break
		}
		section := strings.ToUpper(t.text)
		if t.kind != tokWord || (section != "SET" && section != "REMOVE") {
			return nil, unsupported(src, fmt.Sprintf("update clause %q", t.text))
		}
		if seen[section] {
			return nil, validationf("Invalid UpdateExpression: The %q section can only be used once in an update expression", section)
		}
		seen[section] = true
		p.pos++
		for {
			attr, err := p.path()
			if err != nil {
				return nil, err
			}
			if section == "SET" {
				if err := p.expect("="); err != nil {
					return nil, err
				}
				v, err := p.operand()
				if err != nil {
					return nil, err
				}
				u.set = append(u.set, setAction{attr, v})
			} else {
				u.remove = append(u.remove, attr)
			}
			if !p.punct(",") {
				break
			}
		}
	}
	if len(u.set)+len(u.remove) == 0 {
		return nil, validationf("Invalid UpdateExpression: The expression can not be empty")
	}
	return u, nil
}

// attrs returns every attribute the update writes.
func (u *update) attrs() []string {
	out := slices.Clone(u.remove)
	for _, s := range u.set {
		out = append(out, s.attr)
	}
	return out
}

// apply returns the updated copy of old; operands read old, as in DynamoDB.
func (u *update) apply(old map[string]types.AttributeValue) (map[string]types.AttributeValue, error) {
	item := copyItem(old)
	for _, s := range u.set {
		v := s.value(old)
		if v == nil {
			return nil, validationf("The provided expression refers to an attribute that does not exist in the item")
		}
		item[s.attr] = v
	}
	for _, a := range u.remove {
		delete(item, a)
	}
	return item, nil
}
