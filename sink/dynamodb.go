package sink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sqspool/sqspool/internal/batch"
	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sink/internal/ddbitem"
)

// DynamoDB's limits and the sink's defaults.
const (
	// MaxBatchItems is the most write requests DynamoDB accepts in one
	// BatchWriteItem call.
	MaxBatchItems = 25
	// MaxRequestBytes is DynamoDB's limit on a BatchWriteItem request.
	MaxRequestBytes = 16 << 20
	// MaxItemSize is DynamoDB's item size limit (400 KB, counted as 400 KiB).
	MaxItemSize = 400 << 10

	// DefaultHashKey is the partition key attribute the sink assumes when
	// WithKeyAttributes is not given. The sink uses the key attributes only
	// to keep two writes of one key out of the same BatchWriteItem call; if
	// the table's real key differs, writes still succeed, but such
	// duplicates cost a ValidationException and a fallback to PutItem.
	DefaultHashKey = "pk"
	// DefaultLinger is how long a partial batch waits for more items.
	DefaultLinger = 5 * time.Millisecond
	// DefaultMaxInFlight is how many BatchWriteItem calls may run at once.
	DefaultMaxInFlight = 8
	// DefaultBackoffBase and DefaultBackoffMax bound the retry backoff: the
	// n-th retry waits a uniformly random time in (0, min(max, base*2^n)]
	// ("full jitter"), which spreads retries of throttled writers apart.
	DefaultBackoffBase = 50 * time.Millisecond
	DefaultBackoffMax  = 5 * time.Second
	// DefaultCleanupTimeout bounds the idempotency record's final update or
	// delete after the caller's context ended (see WithCleanupTimeout).
	DefaultCleanupTimeout = 10 * time.Second

	// requestOverhead is what one write request adds to a BatchWriteItem
	// body besides its item: {"PutRequest":{"Item":...}},
	requestOverhead = 32
	// requestEnvelope is room for the rest of the request body.
	requestEnvelope = 4 << 10
)

// DynamoDBAPI is the part of *dynamodb.Client the sink uses, so tests can
// pass a fake (see package sink/dynamofake).
type DynamoDBAPI interface {
	BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
}

var _ DynamoDBAPI = (*dynamodb.Client)(nil)

// DynamoDBOption configures NewDynamoDB.
type DynamoDBOption func(*dynamoOptions)

type dynamoOptions struct {
	linger         time.Duration
	maxInFlight    int
	maxBatchItems  int
	maxBatchBytes  int
	hashKey        string
	rangeKey       string
	ttlAttr        string
	ttl            time.Duration
	clock          clock.Clock
	backoffBase    time.Duration
	backoffMax     time.Duration
	cleanupTimeout time.Duration
	idempotency    *IdempotencyConfig
}

// WithLinger sets how long a partial batch waits for more items before it is
// sent (default DefaultLinger). Zero sends a partial batch as soon as a call
// slot is free; items arriving meanwhile still pile up into the next batch.
//
// A partial batch also leaves before its linger ends when every caller seen
// lately is already waiting on the sink (so no item is coming that waiting
// could add), as long as the batches stay 90 % full on average: under load
// full batches pay for these early ones, and the linger is not waited out
// for nothing.
func WithLinger(d time.Duration) DynamoDBOption {
	return func(o *dynamoOptions) { o.linger = d }
}

// WithMaxInFlight bounds the BatchWriteItem calls running at once (default
// DefaultMaxInFlight). While all are busy, batches grow instead.
func WithMaxInFlight(n int) DynamoDBOption {
	return func(o *dynamoOptions) { o.maxInFlight = n }
}

// WithMaxBatchItems caps the items per BatchWriteItem call, 1 to
// MaxBatchItems (the default).
func WithMaxBatchItems(n int) DynamoDBOption {
	return func(o *dynamoOptions) { o.maxBatchItems = n }
}

// WithMaxBatchBytes caps the estimated request size of one BatchWriteItem
// call, at most (and by default) a little under MaxRequestBytes.
func WithMaxBatchBytes(n int) DynamoDBOption {
	return func(o *dynamoOptions) { o.maxBatchBytes = n }
}

// WithKeyAttributes names the table's partition key and, if not empty, sort
// key (default: DefaultHashKey, no sort key). The sink uses them to keep two
// writes of the same item out of one BatchWriteItem call, which DynamoDB
// rejects whole: the later write goes in a following call, so the last
// writer wins as it would with sequential PutItem calls.
func WithKeyAttributes(hash, rangeKey string) DynamoDBOption {
	return func(o *dynamoOptions) { o.hashKey, o.rangeKey = hash, rangeKey }
}

// WithTTL sets attribute attr of every item to the epoch second ttl after
// the write, for the table's DynamoDB TTL to expire it. (DynamoDB deletes
// expired items within about 48 hours, not at once.)
func WithTTL(attr string, ttl time.Duration) DynamoDBOption {
	return func(o *dynamoOptions) { o.ttlAttr, o.ttl = attr, ttl }
}

func init() { clock.Register(withClock) }

// withClock sets the clock for lingers, backoffs, TTLs and idempotency
// expiries (default clock.Real). Tests pass a *clock.Manual.
// Not part of the API (the repo's tests reach it with clock.Option; a
// user's tests get fake time from testing/synctest).
func withClock(c clock.Clock) DynamoDBOption {
	return func(o *dynamoOptions) { o.clock = c }
}

// WithBackoff sets the retry backoff's base and cap (defaults
// DefaultBackoffBase, DefaultBackoffMax).
func WithBackoff(base, maxDelay time.Duration) DynamoDBOption {
	return func(o *dynamoOptions) { o.backoffBase, o.backoffMax = base, maxDelay }
}

// WithCleanupTimeout bounds how long, in idempotent mode, the sink keeps
// trying to mark a record COMPLETE or delete it after the caller's context
// ended (default DefaultCleanupTimeout). These steps outlive the caller's
// context because skipping them leaves the key blocked until its lease
// lapses.
func WithCleanupTimeout(d time.Duration) DynamoDBOption {
	return func(o *dynamoOptions) { o.cleanupTimeout = d }
}

// DynamoDB is a Sink that writes items to a DynamoDB table, batching the
// Puts of concurrent callers into BatchWriteItem calls. Create it with
// NewDynamoDB and Close it when done.
type DynamoDB[T any] struct {
	client  DynamoDBAPI
	table   string
	o       dynamoOptions
	idem    *idempotency[T]
	batcher *batch.Batcher[*entry]
	callers callers
	st      counters

	// In idempotent mode, the leases of running Puts and their renewer.
	leases    *leases
	stopRenew context.CancelFunc
	renewDone chan struct{}

	mu     sync.Mutex
	closed bool
	active int           // Puts running
	idle   chan struct{} // closed when closed and no Put runs

	// handedOver, if set (by tests only), is called once a round of a Put's
	// items is entirely with the batcher; closing once Close has refused
	// new Puts.
	handedOver func(ctx context.Context, n int)
	closing    func()
}

var _ Sink[struct{}] = (*DynamoDB[struct{}])(nil)

// NewDynamoDB returns a sink writing to table through client, or an error
// for invalid options, such as a batch limit beyond DynamoDB's. Items become
// DynamoDB items with attributevalue.MarshalMap, which calls the item type's
// own MarshalDynamoDBAttributeValue when it implements
// attributevalue.Marshaler: what depends on the item type is a method of it,
// so the compiler checks it against T.
//
// A *dynamodb.Client retries throttled and failed calls itself (3 attempts
// by default) before the sink sees an error; the sink's own retries, which
// last until the caller's context ends, come on top.
func NewDynamoDB[T any](client DynamoDBAPI, table string, opts ...DynamoDBOption) (*DynamoDB[T], error) {
	o := dynamoOptions{
		linger:         DefaultLinger,
		maxInFlight:    DefaultMaxInFlight,
		maxBatchItems:  MaxBatchItems,
		maxBatchBytes:  MaxRequestBytes - requestEnvelope,
		hashKey:        DefaultHashKey,
		clock:          clock.Real,
		backoffBase:    DefaultBackoffBase,
		backoffMax:     DefaultBackoffMax,
		cleanupTimeout: DefaultCleanupTimeout,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(client, table); err != nil {
		return nil, err
	}
	s := &DynamoDB[T]{
		client: client,
		table:  table,
		o:      o,
		idle:   make(chan struct{}),
	}
	if o.idempotency != nil {
		var err error
		if s.idem, err = newIdempotency[T](*o.idempotency, table); err != nil {
			return nil, err
		}
	}
	s.batcher = batch.New(context.Background(), batch.Options{
		MaxItems:    o.maxBatchItems,
		MaxBytes:    o.maxBatchBytes,
		Linger:      o.linger,
		MaxInFlight: o.maxInFlight,
		Clock:       o.clock,
		TargetItems: earlyCutFill * float64(o.maxBatchItems),
	}, func(e *entry) int { return e.wire }, s.flush)
	if s.idem != nil {
		s.leases = newLeases()
		s.renewDone = make(chan struct{})
		var ctx context.Context
		ctx, s.stopRenew = context.WithCancel(context.Background())
		go s.renewLoop(ctx)
	}
	return s, nil
}

func (o *dynamoOptions) validate(client DynamoDBAPI, table string) error {
	switch {
	case client == nil:
		return errors.New("sink: NewDynamoDB: nil client")
	case table == "":
		return errors.New("sink: NewDynamoDB: empty table name")
	case o.maxBatchItems < 1 || o.maxBatchItems > MaxBatchItems:
		return fmt.Errorf("sink: WithMaxBatchItems(%d) outside 1..%d", o.maxBatchItems, MaxBatchItems)
	case o.maxBatchBytes < 1 || o.maxBatchBytes > MaxRequestBytes-requestEnvelope:
		return fmt.Errorf("sink: WithMaxBatchBytes(%d) outside 1..%d", o.maxBatchBytes, MaxRequestBytes-requestEnvelope)
	case o.maxInFlight < 1:
		return fmt.Errorf("sink: WithMaxInFlight(%d) must be positive", o.maxInFlight)
	case o.hashKey == "":
		return errors.New("sink: WithKeyAttributes: empty hash key")
	case o.backoffBase <= 0 || o.backoffMax < o.backoffBase:
		return fmt.Errorf("sink: WithBackoff(%v, %v): need 0 < base <= max", o.backoffBase, o.backoffMax)
	case o.ttlAttr != "" && o.ttl <= 0:
		return fmt.Errorf("sink: WithTTL(%q, %v): ttl must be positive", o.ttlAttr, o.ttl)
	case o.clock == nil:
		return errors.New("sink: nil clock")
	case o.cleanupTimeout <= 0:
		return fmt.Errorf("sink: WithCleanupTimeout(%v) must be positive", o.cleanupTimeout)
	}
	return nil
}

// Put writes the items and returns once each is durable or has failed; see
// the Sink contract. Items of one Put go in as few BatchWriteItem calls as
// their number and size allow, shared with the items of concurrent Puts.
// Throttling, 5xx errors and unprocessed items are retried with backoff
// until ctx ends; a ValidationException fails only the items it concerns
// (found by retrying them one by one with PutItem), reported in a
// *WriteError. If ctx ends first, Put returns at once with the items not yet
// known to be written reported failed (they may still land).
//
// In idempotent mode (WithIdempotency) Put first takes the call's
// idempotency key; see the package documentation.
func (s *DynamoDB[T]) Put(ctx context.Context, items ...T) error {
	if len(items) == 0 {
		return nil
	}
	if !s.enter() {
		return fmt.Errorf("sink: put: %w", ErrClosed)
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sink: put: %w", context.Cause(ctx))
	}
	entries, err := s.prepare(ctx, items)
	if err != nil {
		return err
	}
	if s.idem != nil {
		return s.putIdempotent(ctx, items, entries)
	}
	return s.submit(ctx, entries)
}

// Close refuses new Puts, waits for the running ones to finish (in
// idempotent mode a Put completes its record after its items are written,
// through the batcher), then sends what is pending, waits for every call
// and releases the sink's goroutines. If ctx ends first, the BatchWriteItem
// calls still running are cancelled (their items fail) and Close returns
// ctx's error once they have returned. Later Puts fail with ErrClosed.
//
// Close after the pool has stopped (after Pool.Wait), with a context of its
// own: the one the pool ran under is usually done by then.
func (s *DynamoDB[T]) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		if s.active == 0 {
			close(s.idle)
		}
	}
	s.mu.Unlock()
	// What the running Puts hand over from now on goes without a linger.
	s.batcher.Drain()
	if s.closing != nil {
		s.closing()
	}
	var errs []error
	select {
	case <-s.idle:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("sink: close: waiting for running Puts: %w", context.Cause(ctx)))
	}
	if err := s.batcher.Close(ctx); err != nil && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("sink: close: %w", err))
	}
	if s.stopRenew != nil {
		s.stopRenew()
		<-s.renewDone
	}
	return errors.Join(errs...)
}

// enter registers a running Put; it reports false once the sink is closed.
func (s *DynamoDB[T]) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.active++
	return true
}

func (s *DynamoDB[T]) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	if s.closed && s.active == 0 {
		close(s.idle)
	}
}

// Stats returns a snapshot of the sink's counters.
func (s *DynamoDB[T]) Stats() DynamoDBStats { return s.st.snapshot() }

// prepare marshals the items. If any item cannot be sent, none is: the
// failures are returned as a *WriteError.
func (s *DynamoDB[T]) prepare(ctx context.Context, items []T) ([]*entry, error) {
	var ttl types.AttributeValue
	if s.o.ttlAttr != "" {
		ttl = &types.AttributeValueMemberN{Value: strconv.FormatInt(s.o.clock.Now().Add(s.o.ttl).Unix(), 10)}
	}
	entries := make([]*entry, len(items))
	var failed []ItemError
	for i, it := range items {
		// An item type that implements attributevalue.Marshaler marshals
		// itself: MarshalMap calls it.
		av, err := attributevalue.MarshalMap(it)
		if err == nil && av == nil {
			av = map[string]types.AttributeValue{}
		}
		if err != nil {
			failed = append(failed, ItemError{Index: i, Err: fmt.Errorf("sink: marshal: %w", err)})
			continue
		}
		if ttl != nil {
			av[s.o.ttlAttr] = ttl
		}
		if size := ddbitem.Size(av); size > MaxItemSize {
			failed = append(failed, ItemError{Index: i, Err: fmt.Errorf("%w: %d bytes, limit %d", ErrItemTooLarge, size, MaxItemSize)})
			continue
		}
		entries[i] = &entry{index: i, table: s.table, item: av, key: entryKey(s.table, av, s.o.hashKey, s.o.rangeKey), wire: ddbitem.WireSize(av) + requestOverhead}
	}
	if len(failed) == 0 {
		return entries, nil
	}
	for i, e := range entries {
		if e != nil {
			failed = append(failed, ItemError{Index: i, Err: ErrNotSent})
		}
	}
	return nil, newWriteError(len(items), failed)
}

// DynamoDBStats counts a DynamoDB sink's work since it was created.
type DynamoDBStats struct {
	// Calls by API, failed and retried calls included.
	BatchWriteItemCalls int64
	PutItemCalls        int64
	UpdateItemCalls     int64
	DeleteItemCalls     int64
	GetItemCalls        int64
	// ItemsWritten counts items confirmed durable; ItemsFailed items that
	// failed after they were handed to the batcher (whether or not their
	// caller was still waiting).
	ItemsWritten int64
	ItemsFailed  int64
	// Retries counts calls repeated after throttling, a 5xx error or
	// unprocessed items; UnprocessedItems the items DynamoDB handed back.
	Retries          int64
	UnprocessedItems int64
	// DuplicateKeysDeferred counts items moved to a later BatchWriteItem call
	// because an earlier item of the batch had the same key.
	DuplicateKeysDeferred int64
	// ValidationFallbacks counts batches rejected with a ValidationException
	// and retried item by item.
	ValidationFallbacks int64
	// DuplicatesSkipped counts idempotent Puts that wrote nothing because
	// their key was already COMPLETE; InProgressRejected those that returned
	// ErrInProgress; InProgressWaited those that found their key held and
	// waited for it (see IdempotencyConfig.MaxWait), however that ended.
	DuplicatesSkipped  int64
	InProgressRejected int64
	InProgressWaited   int64
	// LeaseRenewals counts leases extended (see IdempotencyConfig.Lease);
	// LeasesLost the renewals that found the key no longer held.
	LeaseRenewals int64
	LeasesLost    int64
	// CompletesFailed counts idempotent Puts whose items were written but
	// whose record could not be marked COMPLETE. Put returned nil (the items
	// are durable); the key stays INPROGRESS until its lease lapses, after
	// which a duplicate delivery would write again.
	CompletesFailed int64
	// TakeoverWritesSkipped counts idempotent Puts that took over the key of
	// a writer whose lease lapsed, found its items already in the table,
	// exactly as they would write them, and so wrote nothing (see
	// IdempotencyConfig.Lease).
	TakeoverWritesSkipped int64
}

// Calls returns the DynamoDB API calls made, all APIs together.
func (s DynamoDBStats) Calls() int64 {
	return s.BatchWriteItemCalls + s.PutItemCalls + s.UpdateItemCalls + s.DeleteItemCalls + s.GetItemCalls
}

// CallsPer1000Items returns Calls per 1000 items written (0 before any).
func (s DynamoDBStats) CallsPer1000Items() float64 {
	if s.ItemsWritten == 0 {
		return 0
	}
	return float64(s.Calls()) * 1000 / float64(s.ItemsWritten)
}

type counters struct {
	batchWriteItem, putItem, updateItem, deleteItem, getItem atomic.Int64
	written, failed, retries, unprocessed, deferred          atomic.Int64
	fallbacks, skipped, inProgress, inProgressWaited         atomic.Int64
	renewals, leasesLost, completesFailed                    atomic.Int64
	takeoverWritesSkipped                                    atomic.Int64
}

func (c *counters) snapshot() DynamoDBStats {
	return DynamoDBStats{
		BatchWriteItemCalls:   c.batchWriteItem.Load(),
		PutItemCalls:          c.putItem.Load(),
		UpdateItemCalls:       c.updateItem.Load(),
		DeleteItemCalls:       c.deleteItem.Load(),
		GetItemCalls:          c.getItem.Load(),
		ItemsWritten:          c.written.Load(),
		ItemsFailed:           c.failed.Load(),
		Retries:               c.retries.Load(),
		UnprocessedItems:      c.unprocessed.Load(),
		DuplicateKeysDeferred: c.deferred.Load(),
		ValidationFallbacks:   c.fallbacks.Load(),
		DuplicatesSkipped:     c.skipped.Load(),
		InProgressRejected:    c.inProgress.Load(),
		InProgressWaited:      c.inProgressWaited.Load(),
		LeaseRenewals:         c.renewals.Load(),
		LeasesLost:            c.leasesLost.Load(),
		CompletesFailed:       c.completesFailed.Load(),
		TakeoverWritesSkipped: c.takeoverWritesSkipped.Load(),
	}
}
