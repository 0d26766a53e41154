package sink

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sink/internal/ddbitem"
)

// Idempotency record attributes, as AWS Lambda Powertools names them, plus
// the lease token.
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
	// RecordInProgressExpiryAttribute holds the epoch millisecond at which
	// the lease of an INPROGRESS record ends; after it, the key may be taken
	// over.
	RecordInProgressExpiryAttribute = "in_progress_expiration"
	// RecordTokenAttribute holds the random token of the Put that took the
	// key; the record is extended, completed or released only under it.
	RecordTokenAttribute = "lease_token"
	// RecordValidationAttribute holds the hex SHA-256 payload hash when
	// IdempotencyConfig.PayloadHash is set.
	RecordValidationAttribute = "validation"

	// StatusInProgress marks a key whose write is running (or whose writer
	// died and whose lease has not lapsed yet).
	StatusInProgress = "INPROGRESS"
	// StatusComplete marks a key whose items were written.
	StatusComplete = "COMPLETE"

	// DefaultIdempotencyExpiry is how long a COMPLETE record suppresses
	// repeats when IdempotencyConfig.Expiry is zero.
	DefaultIdempotencyExpiry = time.Hour
	// DefaultLease is IdempotencyConfig.Lease when zero: two thirds of SQS's
	// default visibility timeout (30 s), so that the key of a writer that
	// died is free about when SQS delivers its message again.
	DefaultLease = 20 * time.Second
	// minLease keeps the margin and the renewal period meaningful.
	minLease = time.Second
)

var (
	// ErrInProgress is returned by an idempotent Put whose key is held by
	// another Put that has not finished, or whose writer died less than a
	// lease ago, once it could not wait for the key (see
	// IdempotencyConfig.MaxWait). It comes wrapped in a sqspool.RetryAfter whose delay
	// is when the holder's lease can have lapsed, so that the pool brings
	// the message back then instead of spending a receive at once.
	ErrInProgress = errors.New("sink: idempotency key in progress")
	// ErrNoKey is returned by an idempotent Put that has no key: an empty
	// IdempotencyKey, or no key in the context.
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
type IdempotencyConfig struct {
	// Table is the idempotency table. Its partition key is KeyAttribute, a
	// string; it needs no sort key. Required.
	Table string
	// KeyAttribute is the table's partition key (DefaultIdempotencyKeyAttribute
	// when empty).
	KeyAttribute string
	// Prefix goes before every key, separated by "#", so that one table can
	// serve several sinks (default: the sink's table name).
	Prefix string
	// Expiry is how long after completion a key suppresses repeats
	// (DefaultIdempotencyExpiry when zero). Make it longer than the queue
	// keeps messages if redeliveries must never repeat a write. It must
	// exceed Lease.
	Expiry time.Duration
	// Lease is how long a Put holds its key without renewing it
	// (DefaultLease when zero, at least a second). The sink renews the
	// leases of running Puts every third of it, sends no write of a Put
	// later than a quarter of it before its lease ends (the margin for
	// clock skew between hosts and for requests in transit), and a key
	// whose writer died is free a lease after its last renewal. Set it a
	// little under the queue's visibility timeout.
	Lease time.Duration
	// MaxWait bounds how long a Put that finds its key held waits for it
	// before returning ErrInProgress. Zero means Lease plus its quarter:
	// long enough for the key of a writer that died to come free. A
	// negative MaxWait never waits. A Put waits only when its context's
	// deadline (a sqspool handler's always has one) leaves room for the
	// holder's lease to lapse and for the write after it; meanwhile it
	// tries the key every quarter of Lease, so that it also ends soon after
	// a live holder completes. Inside a handler the wait keeps the message
	// in flight (the pool's heartbeat extends it): a message given back
	// instead spends one of its receives, and under a redrive policy a
	// message whose earlier delivery died mid-Put could then reach the
	// dead-letter queue without having failed.
	MaxWait time.Duration
	// PayloadHash stores a hash of the items with the record and fails a
	// later Put with the same key but other items with *PayloadMismatchError.
	// The hash covers the items as marshalled, without
	// the WithTTL attribute.
	PayloadHash bool
}

// IdempotencyKeyer is implemented by an item type that carries its own
// idempotency key, such as an id the producer assigned, which also catches the
// producer sending one event twice and a redrive from the dead-letter queue
// (which gets a new MessageId). In idempotent mode the key of a Put of such
// items is its first item's IdempotencyKey; otherwise it is KeyFrom(ctx), the
// SQS MessageId unless the handler set one with WithKey.
type IdempotencyKeyer interface {
	IdempotencyKey() string
}

// WithIdempotency turns on idempotent mode.
func WithIdempotency(cfg IdempotencyConfig) DynamoDBOption {
	return func(o *dynamoOptions) { o.idempotency = &cfg }
}

type idempotency[T any] struct {
	cfg IdempotencyConfig
	// period is the lease; margin how long before its end writes stop;
	// maxWait the bound on waiting for a held key (negative: none).
	period, margin, maxWait time.Duration
}

func newIdempotency[T any](cfg IdempotencyConfig, table string) (*idempotency[T], error) {
	if cfg.Table == "" {
		return nil, errors.New("sink: WithIdempotency: empty Table")
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
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	switch {
	case cfg.Lease < minLease:
		return nil, fmt.Errorf("sink: WithIdempotency: Lease %v is under %v", cfg.Lease, minLease)
	case cfg.Expiry <= cfg.Lease:
		return nil, fmt.Errorf("sink: WithIdempotency: Expiry %v must exceed Lease %v", cfg.Expiry, cfg.Lease)
	}
	m := &idempotency[T]{cfg: cfg, period: cfg.Lease, margin: cfg.Lease / 4, maxWait: cfg.MaxWait}
	if m.maxWait == 0 {
		m.maxWait = m.period + m.margin
	}
	return m, nil
}

// recordID returns the record id of a Put: prefix#key.
func (m *idempotency[T]) recordID(ctx context.Context, items []T) (string, error) {
	var key string
	if k, ok := any(items[0]).(IdempotencyKeyer); ok {
		key = k.IdempotencyKey()
	} else {
		key, _ = KeyFrom(ctx)
	}
	if key == "" {
		return "", ErrNoKey
	}
	return m.cfg.Prefix + "#" + key, nil
}

// putIdempotent takes the key, writes under the lease, and completes the
// record; see the package documentation.
func (s *DynamoDB[T]) putIdempotent(ctx context.Context, items []T, entries []*entry) error {
	id, err := s.idem.recordID(ctx, items)
	if err != nil {
		return err
	}
	var hash string
	if s.idem.cfg.PayloadHash {
		hash = payloadHash(entries, s.o.ttlAttr)
	}
	l, err := s.takeKey(ctx, id, hash)
	if err != nil || l == nil {
		return err
	}
	s.leases.add(l)
	defer s.leases.remove(l)
	for _, e := range entries {
		e.lease = l
	}
	var werr error
	if !l.tookOver || !s.alreadyWritten(ctx, entries) {
		werr = s.submit(ctx, entries)
	}
	// The record must leave INPROGRESS even when the caller's context has
	// just ended, or the key stays blocked until the lease lapses.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.cleanupTimeout)
	defer cancel()
	if werr != nil {
		if err := s.releaseKey(cctx, l); err != nil {
			return errors.Join(werr, fmt.Errorf("sink: idempotency key %q stays INPROGRESS until its lease lapses: delete: %w", id, err))
		}
		return werr
	}
	// The items are durable: whatever happens to the record now, Put
	// succeeded (the Sink contract), and the message may be deleted.
	s.completeKey(cctx, l)
	return nil
}

// takeCondition lets a conditional PutItem take a key that is free: no
// record, an expired record, or an INPROGRESS record whose lease ended. It
// compares with the sink's clock, so expiry is enforced whether or not
// DynamoDB's TTL has deleted the record yet.
const takeCondition = "attribute_not_exists(#id) OR #exp < :now OR " +
	"(#status = :inprogress AND attribute_exists(#ipexp) AND #ipexp < :nowms)"

// takeKey creates the INPROGRESS record for id under a new lease. It
// returns a nil lease when the key is already COMPLETE (nothing to do). A
// key held by another Put it waits for, within IdempotencyConfig.MaxWait
// and its context's deadline, trying it again every margin; past that it
// returns ErrInProgress.
func (s *DynamoDB[T]) takeKey(ctx context.Context, id, hash string) (*lease, error) {
	var giveUp time.Time // set when the key is first found held
	for {
		l, held, err := s.tryTakeKey(ctx, id, hash)
		if held == nil {
			return l, err
		}
		now := s.o.clock.Now()
		if giveUp.IsZero() {
			giveUp = s.idem.waitEnd(ctx, *held, now)
			if now.Before(giveUp) {
				s.st.inProgressWaited.Add(1)
			}
		}
		if !now.Before(giveUp) || s.wait(ctx, min(s.idem.margin, giveUp.Sub(now))) != nil {
			s.st.inProgress.Add(1)
			return nil, s.inProgress(id, *held, s.o.clock.Now())
		}
	}
}

// waitEnd is when a Put that found its key held (r) at now stops waiting
// for it: when the holder's lease can have lapsed, if MaxWait and ctx's
// deadline leave room for that and for a write after it; else now (no
// wait). A record without a lease end is held until it expires: no wait.
func (m *idempotency[T]) waitEnd(ctx context.Context, r record, now time.Time) time.Time {
	deadline, ok := ctx.Deadline()
	if !ok || m.maxWait < 0 || !r.hasInProgress {
		return now
	}
	free := time.UnixMilli(r.inProgressMs).Add(m.margin)
	// The deadline is on the wall clock, the lease on the sink's.
	if wait := free.Sub(now); wait > m.maxWait || wait+m.margin > time.Until(deadline) {
		return now
	}
	return free
}

// tryTakeKey is one try of takeKey: a nil lease and a nil error when the key
// is COMPLETE, the record (held) when another Put holds it.
func (s *DynamoDB[T]) tryTakeKey(ctx context.Context, id, hash string) (l *lease, held *record, err error) {
	cfg := s.idem.cfg
	const attempts = 3 // a record can expire or vanish between our reads
	for range attempts {
		// The lease counts from before the request is sent, so that on our
		// clock it ends no later than the end the record holds.
		now := s.o.clock.Now()
		l := &lease{id: id, token: rand.Text(), hash: hash, end: now.Add(s.idem.period), nextRenew: now.Add(s.idem.period / 3)}
		rec := s.record(l, StatusInProgress, now)
		err := s.retry(ctx, &s.st.putItem, func(ctx context.Context) error {
			out, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{
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
				ReturnValues:                        types.ReturnValueAllOld,
			})
			if err == nil && out != nil {
				// Taken over from a writer whose lease lapsed (it died, or
				// lost its way): its items may have landed.
				l.tookOver = parseRecord(out.Attributes).status == StatusInProgress
			}
			return err
		})
		if err == nil {
			return l, nil, nil
		}
		var failed *types.ConditionalCheckFailedException
		if !errors.As(err, &failed) {
			return nil, nil, fmt.Errorf("sink: idempotency key %q: take: %w", id, err)
		}
		old := failed.Item
		if old == nil { // not every DynamoDB (dynalite) returns the old item
			if old, err = s.getRecord(ctx, id); err != nil {
				return nil, nil, err
			}
			if old == nil {
				continue // deleted meanwhile
			}
		}
		now = s.o.clock.Now()
		r := parseRecord(old)
		if !r.live(now) {
			continue // expired since the condition was checked
		}
		if hash != "" && r.validation != "" && r.validation != hash {
			return nil, nil, &PayloadMismatchError{Key: id, Stored: r.validation, Got: hash}
		}
		switch r.status {
		case StatusComplete:
			s.st.skipped.Add(1)
			return nil, nil, nil
		case StatusInProgress:
			return nil, &r, nil
		default:
			return nil, nil, fmt.Errorf("sink: idempotency key %q: record has unknown status %q", id, r.status)
		}
	}
	s.st.inProgress.Add(1)
	return nil, nil, sqspool.RetryAfter(s.idem.margin, fmt.Errorf("sink: idempotency key %q: record changed %d times while taking it: %w", id, attempts, ErrInProgress))
}

// alreadyWritten reports that the table holds every item of a Put exactly as
// the Put would write it (the TTL attribute aside): what a writer that died
// between its write and its COMPLETE left, when the handler is
// deterministic. The Put that took its key over then skips the write, so
// the items are not applied twice. It reads each item (consistently), which
// only a takeover pays for; any doubt (an error, a missing or different
// item) means write.
func (s *DynamoDB[T]) alreadyWritten(ctx context.Context, entries []*entry) bool {
	for _, e := range entries {
		key := map[string]types.AttributeValue{s.o.hashKey: e.item[s.o.hashKey]}
		if s.o.rangeKey != "" {
			key[s.o.rangeKey] = e.item[s.o.rangeKey]
		}
		s.st.getItem.Add(1)
		out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key, ConsistentRead: ptr(true)})
		if err != nil || out.Item == nil ||
			!bytes.Equal(ddbitem.Canonical(out.Item, s.o.ttlAttr), ddbitem.Canonical(e.item, s.o.ttlAttr)) {
			return false
		}
	}
	s.st.takeoverWritesSkipped.Add(1)
	return true
}

// inProgress is the error of a Put that found the key held: ErrInProgress,
// with a retry delay lasting until the holder's lease can have lapsed (plus
// the margin for clock skew). If the holder is alive, it renews the lease
// and the next delivery waits again; if it died, the next delivery takes
// the key over.
func (s *DynamoDB[T]) inProgress(id string, r record, now time.Time) error {
	delay := s.idem.margin
	if r.hasInProgress {
		delay += max(time.UnixMilli(r.inProgressMs).Sub(now), 0)
	}
	return sqspool.RetryAfter(delay, fmt.Errorf("sink: idempotency key %q: %w", id, ErrInProgress))
}

// record returns the idempotency record of l with the given status.
func (s *DynamoDB[T]) record(l *lease, status string, now time.Time) map[string]types.AttributeValue {
	l.mu.Lock()
	end := l.end
	l.mu.Unlock()
	rec := map[string]types.AttributeValue{
		s.idem.cfg.KeyAttribute:         &types.AttributeValueMemberS{Value: l.id},
		RecordStatusAttribute:           &types.AttributeValueMemberS{Value: status},
		RecordExpiryAttribute:           epochSeconds(now.Add(s.idem.cfg.Expiry)),
		RecordInProgressExpiryAttribute: epochMillis(end),
		RecordTokenAttribute:            &types.AttributeValueMemberS{Value: l.token},
	}
	if l.hash != "" {
		rec[RecordValidationAttribute] = &types.AttributeValueMemberS{Value: l.hash}
	}
	return rec
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

// completeKey marks the record COMPLETE, its expiry counting from now. The
// record goes through the batcher with the writes of other Puts: as a whole
// item put, unconditional, which is safe because it is sent while the lease
// is held (its entry carries the lease, so it is never sent past the
// deadline). If that fails, an UpdateItem conditioned on the token tries
// once more; if that fails too, the key stays INPROGRESS until its lease
// lapses (counted in CompletesFailed).
func (s *DynamoDB[T]) completeKey(ctx context.Context, l *lease) {
	item := s.record(l, StatusComplete, s.o.clock.Now())
	rec := &entry{
		table: s.idem.cfg.Table,
		item:  item,
		key:   entryKey(s.idem.cfg.Table, item, s.idem.cfg.KeyAttribute, ""),
		wire:  ddbitem.WireSize(item) + requestOverhead,
		lease: l,
	}
	if len(s.send(ctx, []*entry{rec})) == 0 {
		return
	}
	err := s.retry(ctx, &s.st.updateItem, func(ctx context.Context) error {
		_, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:           &s.idem.cfg.Table,
			Key:                 s.recordKey(l.id),
			UpdateExpression:    ptr("SET #status = :complete, #exp = :exp"),
			ConditionExpression: ptr(ownedCondition),
			ExpressionAttributeNames: map[string]string{
				"#status": RecordStatusAttribute, "#exp": RecordExpiryAttribute, "#token": RecordTokenAttribute,
			},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":complete":   &types.AttributeValueMemberS{Value: StatusComplete},
				":exp":        epochSeconds(s.o.clock.Now().Add(s.idem.cfg.Expiry)),
				":token":      &types.AttributeValueMemberS{Value: l.token},
				":inprogress": &types.AttributeValueMemberS{Value: StatusInProgress},
			},
		})
		return err
	})
	if err != nil {
		s.st.completesFailed.Add(1)
	}
}

// releaseKey deletes the record after a failed write so that a retry can
// run, on condition that it is still ours: a record another Put took over,
// or completed, stays.
func (s *DynamoDB[T]) releaseKey(ctx context.Context, l *lease) error {
	err := s.retry(ctx, &s.st.deleteItem, func(ctx context.Context) error {
		_, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName:                &s.idem.cfg.Table,
			Key:                      s.recordKey(l.id),
			ConditionExpression:      ptr(ownedCondition),
			ExpressionAttributeNames: map[string]string{"#token": RecordTokenAttribute, "#status": RecordStatusAttribute},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":token":      &types.AttributeValueMemberS{Value: l.token},
				":inprogress": &types.AttributeValueMemberS{Value: StatusInProgress},
			},
		})
		return err
	})
	var notOurs *types.ConditionalCheckFailedException
	if errors.As(err, &notOurs) {
		return nil
	}
	return err
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
