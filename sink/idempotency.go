package sink

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sqspool/sqspool/sink/internal/ddbitem"
)

// Idempotency record attributes, as AWS Lambda Powertools names them.
const (
	// DefaultIdempotencyKeyAttribute is the idempotency table's partition key
	// (a string) when IdempotencyConfig.KeyAttribute is empty.
	DefaultIdempotencyKeyAttribute = "id"
	// RecordStatusAttribute holds StatusInProgress or StatusComplete.
	RecordStatusAttribute = "status"
	// RecordExpiryAttribute holds the epoch second after which the record no
	// longer counts. Point the table's TTL at it to have DynamoDB delete old
	// records; the sink does not rely on that (TTL deletes lag up to 48 h).
	RecordExpiryAttribute = "expiration"
	// RecordInProgressExpiryAttribute holds the epoch millisecond after which
	// an INPROGRESS record may be taken over.
	RecordInProgressExpiryAttribute = "in_progress_expiration"
	// RecordValidationAttribute holds the hex SHA-256 payload hash when
	// IdempotencyConfig.PayloadHash is set.
	RecordValidationAttribute = "validation"

	// StatusInProgress marks a key whose write is running (or whose writer
	// died; see InProgressExpiry).
	StatusInProgress = "INPROGRESS"
	// StatusComplete marks a key whose items were written.
	StatusComplete = "COMPLETE"

	// DefaultIdempotencyExpiry is how long a COMPLETE record suppresses
	// repeats when IdempotencyConfig.Expiry is zero.
	DefaultIdempotencyExpiry = time.Hour
	// DefaultInProgressExpiry is how long an INPROGRESS record blocks the key
	// when IdempotencyConfig.InProgressExpiry is zero.
	DefaultInProgressExpiry = time.Minute
)

var (
	// ErrInProgress is returned by an idempotent Put whose key is held by
	// another write that has not finished (or whose writer died less than
	// InProgressExpiry ago). Retry later: leave the message for redelivery.
	ErrInProgress = errors.New("sink: idempotency key in progress")
	// ErrNoKey is returned by an idempotent Put that has no key: no KeyFunc
	// and no WithKey in the context.
	ErrNoKey = errors.New("sink: no idempotency key")
	// ErrPayloadMismatch is matched (errors.Is) by *PayloadMismatchError.
	ErrPayloadMismatch = errors.New("sink: idempotency key reused with a different payload")
)

// PayloadMismatchError is returned by an idempotent Put with
// IdempotencyConfig.PayloadHash when its key was used before, unexpired,
// with other items. Retrying cannot help: it is a producer bug or a key
// collision.
type PayloadMismatchError struct {
	// Key is the idempotency record's id.
	Key string
	// Stored and Got are the stored and the current payload hashes.
	Stored, Got string
}

func (e *PayloadMismatchError) Error() string {
	return fmt.Sprintf("sink: idempotency key %q reused with a different payload (stored hash %.12s, got %.12s)", e.Key, e.Stored, e.Got)
}

// Is makes errors.Is(err, ErrPayloadMismatch) true.
func (e *PayloadMismatchError) Is(target error) bool { return target == ErrPayloadMismatch }

// IdempotencyConfig turns on idempotent mode; see the package documentation.
type IdempotencyConfig[T any] struct {
	// Table is the idempotency table. Its partition key is KeyAttribute, a
	// string; it needs no sort key. Required.
	Table string
	// KeyAttribute is the table's partition key (DefaultIdempotencyKeyAttribute
	// when empty).
	KeyAttribute string
	// Prefix goes before every key, separated by "#", so that one table can
	// serve several sinks (default: the sink's table name).
	Prefix string
	// KeyFunc returns the idempotency key of a Put call. The default is
	// KeyFrom(ctx), which the pool sets to the SQS MessageId; use a KeyFunc
	// to use an id the producer assigned, which also catches the producer
	// sending one event twice.
	KeyFunc func(ctx context.Context, items []T) (string, error)
	// Expiry is how long after completion a key suppresses repeats
	// (DefaultIdempotencyExpiry when zero). Make it longer than the queue
	// keeps messages if redeliveries must never repeat a write.
	Expiry time.Duration
	// InProgressExpiry is how long a started write holds its key
	// (DefaultInProgressExpiry when zero). It must exceed the longest Put; it
	// is also how long a key stays blocked after a crash mid-write.
	InProgressExpiry time.Duration
	// PayloadHash stores a hash of the items with the record and fails a
	// later Put with the same key but other items with *PayloadMismatchError.
	// The hash covers the items as marshalled (after WithKeyHook), without
	// the WithTTL attribute.
	PayloadHash bool
}

// WithIdempotency turns on idempotent mode. T must be the sink's item type.
func WithIdempotency[T any](cfg IdempotencyConfig[T]) DynamoDBOption {
	return func(o *dynamoOptions) { o.idempotency = &cfg }
}

type idempotency[T any] struct {
	cfg IdempotencyConfig[T]
}

func newIdempotency[T any](cfg IdempotencyConfig[T], table string) *idempotency[T] {
	if cfg.Table == "" {
		panic("sink: WithIdempotency: empty Table")
	}
	if cfg.Expiry < 0 || cfg.InProgressExpiry < 0 {
		panic("sink: WithIdempotency: negative expiry")
	}
	if cfg.KeyAttribute == "" {
		cfg.KeyAttribute = DefaultIdempotencyKeyAttribute
	}
	if cfg.Prefix == "" {
		cfg.Prefix = table
	}
	if cfg.Expiry == 0 {
		cfg.Expiry = DefaultIdempotencyExpiry
	}
	if cfg.InProgressExpiry == 0 {
		cfg.InProgressExpiry = DefaultInProgressExpiry
	}
	return &idempotency[T]{cfg: cfg}
}

// recordID returns the record id of a Put: prefix#key.
func (m *idempotency[T]) recordID(ctx context.Context, items []T) (string, error) {
	var key string
	if m.cfg.KeyFunc != nil {
		k, err := m.cfg.KeyFunc(ctx, items)
		if err != nil {
			return "", fmt.Errorf("sink: idempotency KeyFunc: %w", err)
		}
		key = k
	} else {
		key, _ = KeyFrom(ctx)
	}
	if key == "" {
		return "", ErrNoKey
	}
	return m.cfg.Prefix + "#" + key, nil
}

// putIdempotent takes the key, writes, and completes the record; see the
// package documentation.
func (s *DynamoDB[T]) putIdempotent(ctx context.Context, items []T, entries []*entry) error {
	id, err := s.idem.recordID(ctx, items)
	if err != nil {
		return err
	}
	var hash string
	if s.idem.cfg.PayloadHash {
		hash = payloadHash(entries, s.o.ttlAttr)
	}
	applied, err := s.takeKey(ctx, id, hash)
	if err != nil {
		return err
	}
	if applied {
		s.st.skipped.Add(1)
		return nil
	}
	werr := s.submit(ctx, entries)
	// The record must leave INPROGRESS even when the caller's context has
	// just ended, or the key stays blocked until its in-progress expiry.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.cleanupTimeout)
	defer cancel()
	if werr != nil {
		if err := s.releaseKey(cctx, id); err != nil {
			return errors.Join(werr, fmt.Errorf("sink: idempotency key %q stays INPROGRESS until it expires: delete: %w", id, err))
		}
		return werr
	}
	if err := s.completeKey(cctx, id); err != nil {
		return fmt.Errorf("sink: items written, but idempotency key %q stays INPROGRESS until it expires (a redelivery before then gets ErrInProgress, after it writes again): %w", id, err)
	}
	return nil
}

// takeCondition lets a conditional PutItem take a key that is free: no
// record, an expired record, or an INPROGRESS record whose in-progress
// expiry passed. It compares with the sink's clock, so expiry is enforced
// whether or not DynamoDB's TTL has deleted the record yet.
const takeCondition = "attribute_not_exists(#id) OR #exp < :now OR " +
	"(#status = :inprogress AND attribute_exists(#ipexp) AND #ipexp < :nowms)"

// takeKey creates the INPROGRESS record for id. applied reports that the
// key is already COMPLETE (nothing to do).
func (s *DynamoDB[T]) takeKey(ctx context.Context, id, hash string) (applied bool, err error) {
	cfg := s.idem.cfg
	const attempts = 3 // a record can expire or vanish between our reads
	for range attempts {
		now := s.o.clock.Now()
		rec := map[string]types.AttributeValue{
			cfg.KeyAttribute:                &types.AttributeValueMemberS{Value: id},
			RecordStatusAttribute:           &types.AttributeValueMemberS{Value: StatusInProgress},
			RecordExpiryAttribute:           epochSeconds(now.Add(cfg.Expiry)),
			RecordInProgressExpiryAttribute: epochMillis(now.Add(cfg.InProgressExpiry)),
		}
		if hash != "" {
			rec[RecordValidationAttribute] = &types.AttributeValueMemberS{Value: hash}
		}
		err := s.retry(ctx, &s.st.putItem, func(ctx context.Context) error {
			_, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{
				TableName:           &cfg.Table,
				Item:                rec,
				ConditionExpression: ptr(takeCondition),
				ExpressionAttributeNames: map[string]string{
					"#id": cfg.KeyAttribute, "#exp": RecordExpiryAttribute,
					"#status": RecordStatusAttribute, "#ipexp": RecordInProgressExpiryAttribute,
				},
				ExpressionAttributeValues: map[string]types.AttributeValue{
					":now":        epochSeconds(now),
					":nowms":      epochMillis(now),
					":inprogress": &types.AttributeValueMemberS{Value: StatusInProgress},
				},
				ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			})
			return err
		})
		if err == nil {
			return false, nil
		}
		var held *types.ConditionalCheckFailedException
		if !errors.As(err, &held) {
			return false, fmt.Errorf("sink: idempotency key %q: take: %w", id, err)
		}
		old := held.Item
		if old == nil { // not every DynamoDB (dynalite) returns the old item
			if old, err = s.getRecord(ctx, id); err != nil {
				return false, err
			}
			if old == nil {
				continue // deleted meanwhile
			}
		}
		r := parseRecord(old)
		if !r.live(now) {
			continue // expired since the condition was checked
		}
		if hash != "" && r.validation != "" && r.validation != hash {
			return false, &PayloadMismatchError{Key: id, Stored: r.validation, Got: hash}
		}
		switch r.status {
		case StatusComplete:
			return true, nil
		case StatusInProgress:
			s.st.inProgress.Add(1)
			return false, fmt.Errorf("sink: idempotency key %q: %w", id, ErrInProgress)
		default:
			return false, fmt.Errorf("sink: idempotency key %q: record has unknown status %q", id, r.status)
		}
	}
	s.st.inProgress.Add(1)
	return false, fmt.Errorf("sink: idempotency key %q: record changed %d times while taking it: %w", id, attempts, ErrInProgress)
}

func (s *DynamoDB[T]) getRecord(ctx context.Context, id string) (map[string]types.AttributeValue, error) {
	var out *dynamodb.GetItemOutput
	err := s.retry(ctx, &s.st.getItem, func(ctx context.Context) error {
		var err error
		out, err = s.client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:      &s.idem.cfg.Table,
			Key:            s.recordKey(id),
			ConsistentRead: ptr(true),
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sink: idempotency key %q: read: %w", id, err)
	}
	return out.Item, nil
}

// completeKey marks the record COMPLETE; its expiry counts from now.
func (s *DynamoDB[T]) completeKey(ctx context.Context, id string) error {
	return s.retry(ctx, &s.st.updateItem, func(ctx context.Context) error {
		_, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                &s.idem.cfg.Table,
			Key:                      s.recordKey(id),
			UpdateExpression:         ptr("SET #status = :complete, #exp = :exp"),
			ExpressionAttributeNames: map[string]string{"#status": RecordStatusAttribute, "#exp": RecordExpiryAttribute},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":complete": &types.AttributeValueMemberS{Value: StatusComplete},
				":exp":      epochSeconds(s.o.clock.Now().Add(s.idem.cfg.Expiry)),
			},
		})
		return err
	})
}

// releaseKey deletes the record after a failed write so a retry can run.
func (s *DynamoDB[T]) releaseKey(ctx context.Context, id string) error {
	return s.retry(ctx, &s.st.deleteItem, func(ctx context.Context) error {
		_, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName: &s.idem.cfg.Table,
			Key:       s.recordKey(id),
		})
		return err
	})
}

func (s *DynamoDB[T]) recordKey(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{s.idem.cfg.KeyAttribute: &types.AttributeValueMemberS{Value: id}}
}

type record struct {
	status               string
	expiry, inProgressMs int64
	hasInProgress        bool
	validation           string
}

func parseRecord(item map[string]types.AttributeValue) record {
	var r record
	if v, ok := item[RecordStatusAttribute].(*types.AttributeValueMemberS); ok {
		r.status = v.Value
	}
	if v, ok := item[RecordExpiryAttribute].(*types.AttributeValueMemberN); ok {
		r.expiry, _ = strconv.ParseInt(v.Value, 10, 64)
	}
	if v, ok := item[RecordInProgressExpiryAttribute].(*types.AttributeValueMemberN); ok {
		r.inProgressMs, _ = strconv.ParseInt(v.Value, 10, 64)
		r.hasInProgress = true
	}
	if v, ok := item[RecordValidationAttribute].(*types.AttributeValueMemberS); ok {
		r.validation = v.Value
	}
	return r
}

// live is the negation of takeCondition: the record still holds its key.
func (r record) live(now time.Time) bool {
	if r.expiry < now.Unix() {
		return false
	}
	return r.status != StatusInProgress || !r.hasInProgress || r.inProgressMs >= now.UnixMilli()
}

// payloadHash hashes the marshalled items, in order, without the TTL
// attribute (it changes with every attempt).
func payloadHash(entries []*entry, skip string) string {
	h := sha256.New()
	for _, e := range entries {
		c := ddbitem.Canonical(e.item, skip)
		h.Write(binary.AppendUvarint(nil, uint64(len(c))))
		h.Write(c)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func epochSeconds(t time.Time) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(t.Unix(), 10)}
}

func epochMillis(t time.Time) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(t.UnixMilli(), 10)}
}

func ptr[V any](v V) *V { return &v }
