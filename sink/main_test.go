package sink_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sink/dynamofake"
)

func TestMain(m *testing.M) {
	// The integration tests' SDK clients keep idle HTTP connections; they
	// are the SDK's, not the sink's.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
}

// order is the item type of most tests.
type order struct {
	PK   string `dynamodbav:"pk"`
	N    int    `dynamodbav:"n"`
	Body string `dynamodbav:"body,omitempty"`
}

const (
	table     = "orders"
	idemTable = "idempotency"
	linger    = 5 * time.Millisecond
	maxDelay  = 80 * time.Millisecond
)

var epoch = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// env is a sink on a fake DynamoDB, both on one manual clock.
type env struct {
	t     *testing.T
	clk   *clock.Manual
	fake  *dynamofake.Fake
	calls *recorder
	sink  *sink.DynamoDB[order]
}

// newEnv builds a sink with a long backoff cap relative to base, so tests
// see several retries, and closes it when the test ends.
func newEnv(t *testing.T, opts ...sink.DynamoDBOption) *env {
	return newEnvWithFake(t, nil, opts...)
}

func newEnvWithFake(t *testing.T, fakeOpts []dynamofake.Option, opts ...sink.DynamoDBOption) *env {
	t.Helper()
	clk := clock.NewManual(epoch)
	fake := dynamofake.New(append([]dynamofake.Option{clock.Option[dynamofake.Option](clk)}, fakeOpts...)...)
	fake.CreateTable(table, "pk", "")
	fake.CreateTable(idemTable, "id", "")
	rec := &recorder{Fake: fake}
	base := []sink.DynamoDBOption{
		clock.Option[sink.DynamoDBOption](clk),
		sink.WithLinger(linger),
		sink.WithBackoff(10*time.Millisecond, maxDelay),
	}
	s, err := sink.NewDynamoDB[order](rec, table, append(base, opts...)...)
	require.NoError(t, err)
	sink.SetHandedOverHook(s, func(ctx context.Context, _ int) {
		if ch, ok := ctx.Value(handedOverKey{}).(chan struct{}); ok {
			select { // start waits for the first round only
			case ch <- struct{}{}:
			default:
			}
		}
	})
	e := &env{t: t, clk: clk, fake: fake, calls: rec, sink: s}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, s.Close(ctx))
	})
	return e
}

type handedOverKey struct{}

// goPut runs Put in a goroutine; the channel gets its result.
func (e *env) goPut(ctx context.Context, items ...order) <-chan error {
	done := make(chan error, 1)
	go func() { done <- e.sink.Put(ctx, items...) }()
	return done
}

// start is goPut that returns only once the Put's items (its first round,
// when keys repeat) are all with the batcher, or Put has returned, so that
// moving the clock cannot split them between batches.
func (e *env) start(ctx context.Context, items ...order) <-chan error {
	handed := make(chan struct{}, 1)
	ctx = context.WithValue(ctx, handedOverKey{}, handed)
	done := make(chan error, 1)
	go func() { done <- e.sink.Put(ctx, items...) }()
	select {
	case <-handed:
		return done
	case err := <-done:
		done <- err
		return done
	}
}

// put is Put with the clock driven by step until it returns.
func (e *env) put(ctx context.Context, step time.Duration, items ...order) error {
	return e.drive(e.start(ctx, items...), step)
}

// drive advances the clock by step whenever a timer is armed (a linger or a
// backoff), until done has a value, which it returns.
func (e *env) drive(done <-chan error, step time.Duration) error {
	stop := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		result <- <-done
		close(stop)
	}()
	for e.clk.BlockUntil(1, stop) {
		e.clk.Advance(step)
	}
	return <-result
}

// item returns the stored order with key pk.
func (e *env) item(pk string) (order, bool) {
	e.t.Helper()
	av, ok := e.fake.Get(table, keyOf(pk))
	if !ok {
		return order{}, false
	}
	var o order
	require.NoError(e.t, unmarshal(av, &o))
	return o, true
}

// assertN checks the N of the stored order pk.
func (e *env) assertN(pk string, want int) {
	e.t.Helper()
	o, ok := e.item(pk)
	assert.True(e.t, ok, "no item %q", pk)
	assert.Equal(e.t, want, o.N, "N of %q", pk)
}

// recorder wraps the fake to record the size of each BatchWriteItem call.
type recorder struct {
	*dynamofake.Fake
	mu      sync.Mutex
	batches [][]string // pks per call
}

func (r *recorder) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	var pks []string
	for _, reqs := range in.RequestItems {
		for _, w := range reqs {
			pks = append(pks, stringAttr(w.PutRequest.Item, "pk"))
		}
	}
	r.mu.Lock()
	r.batches = append(r.batches, pks)
	r.mu.Unlock()
	return r.Fake.BatchWriteItem(ctx, in, opts...)
}

// sizes returns the sizes of the calls, largest first: calls may run
// concurrently.
func (r *recorder) sizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]int, len(r.batches))
	for i, b := range r.batches {
		out[i] = len(b)
	}
	slices.SortFunc(out, func(a, b int) int { return b - a })
	return out
}
