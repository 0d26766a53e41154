// Package dynamofake is an in-memory stand-in for the DynamoDB client, for
// unit tests of code that writes through sink.DynamoDBAPI: the sqspool sink
// itself, and users' handlers.
//
// It models what a writer depends on and no more: tables keyed by their
// partition (and optional sort) key, PutItem, UpdateItem, DeleteItem and
// GetItem with condition and update expressions, and BatchWriteItem with
// DynamoDB's limits (25 requests, 400 KB items, 16 MB requests, no key
// twice). Requests outside that model (an expression form it does not
// evaluate, a legacy parameter) fail with a ValidationException that says
// so, instead of being misread.
//
// Faults are injected per Fake: latency, throttling, UnprocessedItems for a
// fraction of batch writes, ValidationExceptions for chosen items, and any
// error from a hook. Errors have the SDK's types (for example
// *types.ProvisionedThroughputExceededException), so code sees the same
// errors as with the real client.
package dynamofake

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sink/internal/ddbitem"
)

// Operation names, as used by Calls, Throttle and SetFault.
const (
	OpBatchWriteItem = "BatchWriteItem"
	OpPutItem        = "PutItem"
	OpUpdateItem     = "UpdateItem"
	OpDeleteItem     = "DeleteItem"
	OpGetItem        = "GetItem"
)

// DynamoDB's limits, as the fake enforces them.
const (
	MaxBatchWriteItems = 25
	MaxItemSize        = 400 << 10
	MaxRequestBytes    = 16 << 20
)

// Item is a DynamoDB item.
type Item = map[string]types.AttributeValue

// Fake is an in-memory DynamoDB. It is safe for concurrent use.
type Fake struct {
	clock         clock.Clock
	omitCheckItem bool

	mu             sync.Mutex
	tables         map[string]*table
	calls          map[string]int
	latency        time.Duration
	unprocessed    float64
	unprocessedAcc float64
	throttle       map[string]int // op ("" for any) -> calls left to throttle
	fault          func(ctx context.Context, op string) error
	reject         func(table string, item Item) bool
}

type table struct {
	hash, rng string
	items     map[string]Item // by canonical key
}

// Option configures New.
type Option func(*Fake)

func init() { clock.Register(withClock) }

// withClock sets the clock that injected latency waits on (default
// clock.Real).
// Not part of the API (the repo's tests reach it with clock.Option; a
// user's tests get fake time from testing/synctest).
func withClock(c clock.Clock) Option { return func(f *Fake) { f.clock = c } }

// WithoutConditionCheckItem makes a failed condition never return the old
// item, whatever ReturnValuesOnConditionCheckFailure asks, as dynalite and
// older DynamoDB Local do; code must then read the item itself.
func WithoutConditionCheckItem() Option { return func(f *Fake) { f.omitCheckItem = true } }

// New returns an empty Fake.
func New(opts ...Option) *Fake {
	f := &Fake{clock: clock.Real, tables: map[string]*table{}, calls: map[string]int{}, throttle: map[string]int{}}
	for _, o := range opts {
		o(f)
	}
	return f
}

// CreateTable creates (or empties) a table with the given partition key and,
// if rangeKey is not empty, sort key.
func (f *Fake) CreateTable(name, hashKey, rangeKey string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tables[name] = &table{hash: hashKey, rng: rangeKey, items: map[string]Item{}}
}

// SetLatency makes every call wait d on the Fake's clock before it is
// served (or its context ends).
func (f *Fake) SetLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = d
}

// SetUnprocessedFraction makes BatchWriteItem leave that fraction (0 to 1)
// of its put and delete requests unprocessed and return them in
// UnprocessedItems. The choice is deterministic: an accumulator adds the
// fraction per request and leaves a request unprocessed each time it
// reaches one, so 0.5 leaves every second request, 1 every request.
func (f *Fake) SetUnprocessedFraction(fraction float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unprocessed = min(max(fraction, 0), 1)
	f.unprocessedAcc = 0
}

// Throttle fails the next n calls of op ("" for any operation) with
// *types.ProvisionedThroughputExceededException.
func (f *Fake) Throttle(op string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.throttle[op] = n
}

// SetFault sets a hook called at the start of every call, after the
// latency; a non-nil error is returned instead of serving the call. It runs
// without the Fake's lock held, so it may block (for example on a channel
// the test controls) and call the Fake.
func (f *Fake) SetFault(hook func(ctx context.Context, op string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault = hook
}

// RejectItems makes PutItem of an item for which reject returns true fail
// with a ValidationException, and BatchWriteItem of a batch containing one
// fail whole with it, as DynamoDB does for an invalid item.
func (f *Fake) RejectItems(reject func(table string, item Item) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reject = reject
}

// Calls returns how many calls of op were made, served or not.
func (f *Fake) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// TotalCalls returns the calls of every operation.
func (f *Fake) TotalCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

// Items returns copies of a table's items in key order.
func (f *Fake) Items(tableName string) []Item {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.tables[tableName]
	if t == nil {
		return nil
	}
	keys := sortedKeys(t.items)
	out := make([]Item, len(keys))
	for i, k := range keys {
		out[i] = copyItem(t.items[k])
	}
	return out
}

// Len returns how many items a table holds.
func (f *Fake) Len(tableName string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t := f.tables[tableName]; t != nil {
		return len(t.items)
	}
	return 0
}

// Get returns a copy of the item with the given key.
func (f *Fake) Get(tableName string, key Item) (Item, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.tables[tableName]
	if t == nil {
		return nil, false
	}
	k, err := t.keyOf(key, true)
	if err != nil {
		return nil, false
	}
	it, ok := t.items[k]
	return copyItem(it), ok
}

// Set stores an item directly, bypassing faults and counters, to set up a
// test. It panics if the table does not exist or the item lacks its key.
func (f *Fake) Set(tableName string, item Item) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.tables[tableName]
	if t == nil {
		panic("dynamofake: no table " + tableName)
	}
	k, err := t.keyOf(item, false)
	if err != nil {
		panic(err)
	}
	t.items[k] = copyItem(item)
}

// begin counts a call and applies latency and injected faults.
func (f *Fake) begin(ctx context.Context, op string) error {
	f.mu.Lock()
	f.calls[op]++
	latency, fault := f.latency, f.fault
	f.mu.Unlock()
	if latency > 0 {
		t := f.clock.NewTimer(latency)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if fault != nil {
		if err := fault(ctx, op); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, key := range []string{op, ""} {
		if f.throttle[key] > 0 {
			f.throttle[key]--
			return &types.ProvisionedThroughputExceededException{
				Message: aws("The level of configured provisioned throughput for the table was exceeded. (dynamofake)"),
			}
		}
	}
	return nil
}

// BatchWriteItem applies put and delete requests. The whole call fails
// with a ValidationException when it has more than 25 requests, an item
// over 400 KB or without its key, a key twice, or a rejected item.
func (f *Fake) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	if err := f.begin(ctx, OpBatchWriteItem); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(in.RequestItems) == 0 {
		return nil, validationf("1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: Member must not be null")
	}
	total, size := 0, 0
	keys := map[string][]string{}
	for name, reqs := range in.RequestItems {
		t := f.tables[name]
		if t == nil {
			return nil, notFound()
		}
		if len(reqs) == 0 {
			return nil, validationf("1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1")
		}
		total += len(reqs)
		seen := map[string]bool{}
		for _, r := range reqs {
			k, err := f.checkWrite(name, t, r)
			if err != nil {
				return nil, err
			}
			if seen[k] {
				return nil, validationf("Provided list of item keys contains duplicates")
			}
			seen[k] = true
			keys[name] = append(keys[name], k)
			if r.PutRequest != nil {
				size += ddbitem.WireSize(r.PutRequest.Item)
			} else {
				size += ddbitem.WireSize(r.DeleteRequest.Key)
			}
		}
	}
	if total > MaxBatchWriteItems {
		return nil, validationf("Too many items requested for the BatchWriteItem call")
	}
	if size > MaxRequestBytes {
		return nil, validationf("Request size exceeds %d bytes", MaxRequestBytes)
	}
	out := &dynamodb.BatchWriteItemOutput{UnprocessedItems: map[string][]types.WriteRequest{}}
	for _, name := range sortedKeys(in.RequestItems) {
		t := f.tables[name]
		for i, r := range in.RequestItems[name] {
			if f.leaveUnprocessed() {
				out.UnprocessedItems[name] = append(out.UnprocessedItems[name], r)
				continue
			}
			if r.PutRequest != nil {
				t.items[keys[name][i]] = copyItem(r.PutRequest.Item)
			} else {
				delete(t.items, keys[name][i])
			}
		}
	}
	return out, nil
}

// checkWrite validates one batch write request and returns its key.
func (f *Fake) checkWrite(name string, t *table, r types.WriteRequest) (string, error) {
	switch {
	case (r.PutRequest == nil) == (r.DeleteRequest == nil):
		return "", validationf("Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes")
	case r.DeleteRequest != nil:
		return t.keyOf(r.DeleteRequest.Key, true)
	}
	return f.checkItem(name, t, r.PutRequest.Item)
}

// checkItem validates an item to put and returns its key.
func (f *Fake) checkItem(name string, t *table, item Item) (string, error) {
	k, err := t.keyOf(item, false)
	if err != nil {
		return "", err
	}
	if ddbitem.Size(item) > MaxItemSize {
		return "", validationf("Item size has exceeded the maximum allowed size")
	}
	if f.reject != nil && f.reject(name, item) {
		return "", validationf("One or more parameter values were invalid: item rejected by dynamofake.RejectItems")
	}
	return k, nil
}

func (f *Fake) leaveUnprocessed() bool {
	if f.unprocessed <= 0 {
		return false
	}
	f.unprocessedAcc += f.unprocessed
	if f.unprocessedAcc >= 1-1e-9 {
		f.unprocessedAcc--
		return true
	}
	return false
}

// write is what PutItem, UpdateItem and DeleteItem share: a single-item
// write, checked against the item it replaces.
type write struct {
	op     string
	table  *string
	key    func(t *table) (string, error) // the item's key
	cond   *string
	names  map[string]string
	values map[string]types.AttributeValue
	onFail types.ReturnValuesOnConditionCheckFailure
	// parse, if set, parses another expression sharing the placeholders.
	parse func(*env) error
	// apply returns the new item, nil to delete it.
	apply        func(t *table, old Item) (Item, error)
	returnValues types.ReturnValue
	allowAllNew  bool
}

// do runs the write and returns the attributes ReturnValues asked for.
func (f *Fake) do(ctx context.Context, w write) (Item, error) {
	if err := f.begin(ctx, w.op); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, err := f.table(w.table)
	if err != nil {
		return nil, err
	}
	k, err := w.key(t)
	if err != nil {
		return nil, err
	}
	old := t.items[k]
	if err := f.checkCondition(old, w.cond, w.parse, w.names, w.values, w.onFail); err != nil {
		return nil, err
	}
	item, err := w.apply(t, old)
	if err != nil {
		return nil, err
	}
	var attrs Item
	switch w.returnValues {
	case "", types.ReturnValueNone:
	case types.ReturnValueAllOld:
		attrs = copyItem(old)
	case types.ReturnValueAllNew:
		if !w.allowAllNew {
			return nil, validationf("ReturnValues can only be ALL_OLD or NONE")
		}
		attrs = copyItem(item)
	default:
		return nil, unsupported("", "ReturnValues "+string(w.returnValues))
	}
	if item == nil {
		delete(t.items, k)
	} else {
		t.items[k] = item
	}
	return attrs, nil
}

func legacy(used bool) error {
	if used {
		return unsupported("", "legacy Expected/ConditionalOperator/AttributeUpdates parameters")
	}
	return nil
}

// PutItem stores an item, if its condition holds.
func (f *Fake) PutItem(ctx context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if err := legacy(in.Expected != nil || in.ConditionalOperator != ""); err != nil {
		return nil, err
	}
	attrs, err := f.do(ctx, write{
		op: OpPutItem, table: in.TableName,
		key:  func(t *table) (string, error) { return f.checkItem(*in.TableName, t, in.Item) },
		cond: in.ConditionExpression, names: in.ExpressionAttributeNames, values: in.ExpressionAttributeValues,
		onFail:       in.ReturnValuesOnConditionCheckFailure,
		apply:        func(*table, Item) (Item, error) { return copyItem(in.Item), nil },
		returnValues: in.ReturnValues,
	})
	if err != nil {
		return nil, err
	}
	return &dynamodb.PutItemOutput{Attributes: attrs}, nil
}

// UpdateItem applies an update expression (SET path = operand, REMOVE
// path), creating the item if it does not exist, if its condition holds.
func (f *Fake) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if err := legacy(in.Expected != nil || in.ConditionalOperator != "" || in.AttributeUpdates != nil); err != nil {
		return nil, err
	}
	if in.UpdateExpression == nil {
		return nil, unsupported("", "an UpdateItem without UpdateExpression")
	}
	var u *update
	attrs, err := f.do(ctx, write{
		op: OpUpdateItem, table: in.TableName,
		key:  func(t *table) (string, error) { return t.keyOf(in.Key, true) },
		cond: in.ConditionExpression, names: in.ExpressionAttributeNames, values: in.ExpressionAttributeValues,
		onFail: in.ReturnValuesOnConditionCheckFailure,
		parse: func(e *env) (err error) {
			u, err = parseUpdate(*in.UpdateExpression, e)
			return err
		},
		apply: func(t *table, old Item) (Item, error) {
			for _, a := range u.attrs() {
				if a == t.hash || a == t.rng {
					return nil, validationf("One or more parameter values were invalid: Cannot update attribute %s. This attribute is part of the key", a)
				}
			}
			if old == nil {
				old = copyItem(in.Key)
			}
			item, err := u.apply(old)
			if err == nil && ddbitem.Size(item) > MaxItemSize {
				err = validationf("Item size to update has exceeded the maximum allowed size")
			}
			return item, err
		},
		returnValues: in.ReturnValues,
		allowAllNew:  true,
	})
	if err != nil {
		return nil, err
	}
	return &dynamodb.UpdateItemOutput{Attributes: attrs}, nil
}

// DeleteItem deletes an item, if its condition holds.
func (f *Fake) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	if err := legacy(in.Expected != nil || in.ConditionalOperator != ""); err != nil {
		return nil, err
	}
	attrs, err := f.do(ctx, write{
		op: OpDeleteItem, table: in.TableName,
		key:  func(t *table) (string, error) { return t.keyOf(in.Key, true) },
		cond: in.ConditionExpression, names: in.ExpressionAttributeNames, values: in.ExpressionAttributeValues,
		onFail:       in.ReturnValuesOnConditionCheckFailure,
		apply:        func(*table, Item) (Item, error) { return nil, nil },
		returnValues: in.ReturnValues,
	})
	if err != nil {
		return nil, err
	}
	return &dynamodb.DeleteItemOutput{Attributes: attrs}, nil
}

// GetItem reads an item. Reads are always consistent.
func (f *Fake) GetItem(ctx context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if err := f.begin(ctx, OpGetItem); err != nil {
		return nil, err
	}
	if in.ProjectionExpression != nil || in.AttributesToGet != nil {
		return nil, unsupported("", "projections")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, err := f.table(in.TableName)
	if err != nil {
		return nil, err
	}
	k, err := t.keyOf(in.Key, true)
	if err != nil {
		return nil, err
	}
	return &dynamodb.GetItemOutput{Item: copyItem(t.items[k])}, nil
}

func (f *Fake) table(name *string) (*table, error) {
	if name == nil {
		return nil, validationf("1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null")
	}
	t := f.tables[*name]
	if t == nil {
		return nil, notFound()
	}
	return t, nil
}

// checkCondition parses the condition (and, through more, the update
// expression, which shares its placeholders), checks every placeholder is
// used, and evaluates the condition against old (nil: no item).
func (f *Fake) checkCondition(old Item, expr *string, more func(*env) error, names map[string]string,
	values map[string]types.AttributeValue, onFail types.ReturnValuesOnConditionCheckFailure) error {
	e := newEnv(names, values)
	var c cond
	if expr != nil {
		var err error
		if c, err = parseCondition(*expr, e); err != nil {
			return err
		}
	}
	if more != nil {
		if err := more(e); err != nil {
			return err
		}
	}
	if err := e.checkUsed(); err != nil {
		return err
	}
	if c == nil || c(old) {
		return nil
	}
	failed := &types.ConditionalCheckFailedException{Message: aws("The conditional request failed")}
	if onFail == types.ReturnValuesOnConditionCheckFailureAllOld && !f.omitCheckItem && old != nil {
		failed.Item = copyItem(old)
	}
	return failed
}

// keyOf returns the canonical key of item. With exact, item must be a key:
// no other attributes.
func (t *table) keyOf(item Item, exact bool) (string, error) {
	want := 1
	for _, a := range []string{t.hash, t.rng} {
		if a == "" {
			continue
		}
		switch item[a].(type) {
		case *types.AttributeValueMemberS, *types.AttributeValueMemberN, *types.AttributeValueMemberB:
		case nil:
			if exact {
				return "", validationf("The provided key element does not match the schema")
			}
			return "", validationf("One or more parameter values were invalid: Missing the key %s in the item", a)
		default:
			return "", validationf("One or more parameter values were invalid: Type mismatch for key %s", a)
		}
	}
	if t.rng != "" {
		want = 2
	}
	if exact && len(item) != want {
		return "", validationf("The provided key element does not match the schema")
	}
	k, _ := ddbitem.Key(item, t.hash, t.rng)
	return k, nil
}

// copyItem deep-copies an item, so stored items share nothing with callers.
func copyItem(item Item) Item {
	if item == nil {
		return nil
	}
	out := make(Item, len(item))
	for k, v := range item {
		out[k] = copyValue(v)
	}
	return out
}

func copyValue(v types.AttributeValue) types.AttributeValue {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return &types.AttributeValueMemberS{Value: v.Value}
	case *types.AttributeValueMemberN:
		return &types.AttributeValueMemberN{Value: v.Value}
	case *types.AttributeValueMemberB:
		return &types.AttributeValueMemberB{Value: slices.Clone(v.Value)}
	case *types.AttributeValueMemberBOOL:
		return &types.AttributeValueMemberBOOL{Value: v.Value}
	case *types.AttributeValueMemberNULL:
		return &types.AttributeValueMemberNULL{Value: v.Value}
	case *types.AttributeValueMemberSS:
		return &types.AttributeValueMemberSS{Value: slices.Clone(v.Value)}
	case *types.AttributeValueMemberNS:
		return &types.AttributeValueMemberNS{Value: slices.Clone(v.Value)}
	case *types.AttributeValueMemberBS:
		bs := make([][]byte, len(v.Value))
		for i, b := range v.Value {
			bs[i] = slices.Clone(b)
		}
		return &types.AttributeValueMemberBS{Value: bs}
	case *types.AttributeValueMemberL:
		l := make([]types.AttributeValue, len(v.Value))
		for i, e := range v.Value {
			l[i] = copyValue(e)
		}
		return &types.AttributeValueMemberL{Value: l}
	case *types.AttributeValueMemberM:
		return &types.AttributeValueMemberM{Value: copyItem(v.Value)}
	}
	return v
}

func validationf(format string, args ...any) error {
	return &smithy.GenericAPIError{Code: "ValidationException", Message: fmt.Sprintf(format, args...), Fault: smithy.FaultClient}
}

func notFound() error {
	return &types.ResourceNotFoundException{Message: aws("Requested resource not found")}
}

func aws(s string) *string { return &s }
