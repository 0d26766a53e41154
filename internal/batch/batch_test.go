package batch

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sqspool/sqspool/internal/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder collects the batches a Batcher flushes.
type recorder struct {
	mu      sync.Mutex
	batches [][]int
	flushed chan []int
	block   chan struct{} // when non-nil, flushes wait for it
}

func newRecorder() *recorder { return &recorder{flushed: make(chan []int, 100)} }

func (r *recorder) flush(ctx context.Context, items []int) {
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
		}
	}
	r.mu.Lock()
	r.batches = append(r.batches, items)
	r.mu.Unlock()
	r.flushed <- items
}

func (r *recorder) all() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]int(nil), r.batches...)
}

func TestFullBatchFlushesAtOnce(t *testing.T) {
	clk := clock.NewManual(time.Now())
	r := newRecorder()
	b := New(context.Background(), Options{MaxItems: 3, Linger: time.Hour, Clock: clk}, nil, r.flush)
	for i := range 3 {
		require.NoError(t, b.Add(i))
	}
	assert.Equal(t, []int{0, 1, 2}, <-r.flushed)
	require.NoError(t, b.Close(context.Background()))
}

func TestPartialBatchWaitsForLinger(t *testing.T) {
	clk := clock.NewManual(time.Now())
	r := newRecorder()
	b := New(context.Background(), Options{MaxItems: 10, Linger: 20 * time.Millisecond, Clock: clk}, nil, r.flush)
	require.NoError(t, b.Add(1))
	require.NoError(t, b.Add(2))
	require.True(t, clk.BlockUntil(1, nil))
	clk.Advance(19 * time.Millisecond)
	assert.Equal(t, 2, b.Pending(), "nothing leaves before the linger")
	assert.Empty(t, r.all())
	clk.Advance(time.Millisecond)
	assert.Equal(t, []int{1, 2}, <-r.flushed)
	require.NoError(t, b.Close(context.Background()))
}

func TestCloseFlushesPendingWithoutWaitingForLinger(t *testing.T) {
	clk := clock.NewManual(time.Now())
	r := newRecorder()
	b := New(context.Background(), Options{MaxItems: 10, Linger: time.Hour, Clock: clk}, nil, r.flush)
	require.NoError(t, b.Add(7))
	require.NoError(t, b.Close(context.Background()))
	assert.Equal(t, [][]int{{7}}, r.all())
	assert.Zero(t, clk.Timers(), "the linger timer is stopped")
	assert.ErrorIs(t, b.Add(8), ErrClosed)
}

func TestDrainSendsWithoutLingerAndStillAccepts(t *testing.T) {
	clk := clock.NewManual(time.Now())
	r := newRecorder()
	b := New(context.Background(), Options{MaxItems: 10, Linger: time.Hour, Clock: clk}, nil, r.flush)
	require.NoError(t, b.Add(1))
	b.Drain()
	assert.Equal(t, []int{1}, <-r.flushed, "the pending batch goes at once")
	assert.Zero(t, clk.Timers(), "the linger timer is stopped")
	require.NoError(t, b.Add(2), "a draining batcher still accepts items")
	assert.Equal(t, []int{2}, <-r.flushed, "and sends them without a linger")
	assert.Zero(t, clk.Timers())
	require.NoError(t, b.Close(context.Background()))
}

func TestMaxBytesCutsBeforeOverflow(t *testing.T) {
	r := newRecorder()
	size := func(n int) int { return n }
	b := New(context.Background(), Options{MaxItems: 10, MaxBytes: 10, Linger: time.Hour}, size, r.flush)
	for _, n := range []int{4, 4, 4, 11} {
		require.NoError(t, b.Add(n))
	}
	require.NoError(t, b.Close(context.Background()))
	assert.Equal(t, [][]int{{4, 4}, {4}, {11}}, r.all(), "a batch never passes MaxBytes; an oversize item goes alone")
}

func TestBatchesGrowWhileFlushesAreBusy(t *testing.T) {
	r := newRecorder()
	r.block = make(chan struct{})
	b := New(context.Background(), Options{MaxItems: 100, MaxInFlight: 1}, nil, r.flush)
	require.NoError(t, b.Add(0)) // goes at once: no linger, a slot is free
	for i := 1; i <= 5; i++ {
		require.NoError(t, b.Add(i))
	}
	assert.Equal(t, 5, b.Pending(), "the first flush holds item 0")
	close(r.block)
	require.NoError(t, b.Close(context.Background()))
	assert.Equal(t, [][]int{{0}, {1, 2, 3, 4, 5}}, r.all())
}

func TestMaxInFlightBoundsConcurrentFlushes(t *testing.T) {
	var mu sync.Mutex
	running, peak := 0, 0
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	flush := func(ctx context.Context, items []int) {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		started <- struct{}{}
		<-release
		mu.Lock()
		running--
		mu.Unlock()
	}
	b := New(context.Background(), Options{MaxItems: 1, MaxInFlight: 2}, nil, flush)
	for i := range 6 {
		require.NoError(t, b.Add(i))
	}
	<-started
	<-started
	assert.Equal(t, 4, b.Pending(), "four wait while two flush")
	close(release)
	require.NoError(t, b.Close(context.Background()))
	assert.Equal(t, 2, peak)
}

func TestCloseGivesUpButEveryItemReachesFlush(t *testing.T) {
	var mu sync.Mutex
	var seen []int
	cancelled := 0
	flush := func(ctx context.Context, items []int) {
		<-ctx.Done() // a flush that only ends when cancelled
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, items...)
		cancelled++
	}
	b := New(context.Background(), Options{MaxItems: 1, MaxInFlight: 1}, nil, flush)
	for i := range 3 {
		require.NoError(t, b.Add(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, b.Close(ctx), context.Canceled)
	assert.ElementsMatch(t, []int{0, 1, 2}, seen)
	assert.Equal(t, 3, cancelled)
}

func TestConcurrentAddsAllArrive(t *testing.T) {
	var mu sync.Mutex
	got := map[int]int{}
	flush := func(ctx context.Context, items []int) {
		assert.LessOrEqual(t, len(items), 10)
		mu.Lock()
		defer mu.Unlock()
		for _, it := range items {
			got[it]++
		}
	}
	b := New(context.Background(), Options{MaxItems: 10, Linger: time.Millisecond, MaxInFlight: 4}, nil, flush)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				assert.NoError(t, b.Add(g*1000+i))
			}
		}()
	}
	wg.Wait()
	require.NoError(t, b.Close(context.Background()))
	assert.Len(t, got, 8000)
	for k, n := range got {
		if n != 1 {
			t.Fatalf("item %d flushed %d times", k, n)
		}
	}
}

// AddBatch's items go at once, in batches of their own of MaxItems at most,
// and leave the pending partial batch to its linger.
func TestAddBatchFlushesItsItemsAtOnceAndAlone(t *testing.T) {
	clk := clock.NewManual(time.Now())
	r := newRecorder()
	b := New(context.Background(), Options{MaxItems: 3, Linger: time.Hour, MaxInFlight: 4, Clock: clk}, nil, r.flush)
	require.NoError(t, b.Add(0))
	require.NoError(t, b.AddBatch([]int{1, 2, 3, 4}))
	got := [][]int{<-r.flushed, <-r.flushed}
	assert.ElementsMatch(t, [][]int{{1, 2, 3}, {4}}, got)
	assert.Equal(t, 1, b.Pending(), "the pending batch still waits for its linger")
	require.NoError(t, b.Close(context.Background()))
	assert.Equal(t, []int{0}, <-r.flushed)
	assert.ErrorIs(t, b.AddBatch([]int{5}), ErrClosed)
}

// With MaxReady batches waiting for a flush slot, Add blocks until one
// starts; Close wakes a blocked Add, which then reports ErrClosed.
func TestAddBlocksWhileMaxReadyBatchesWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		r.block = make(chan struct{})
		b := New(context.Background(), Options{MaxItems: 1, MaxInFlight: 1, MaxReady: 1}, nil, r.flush)
		require.NoError(t, b.Add(1)) // flushing, blocked
		require.NoError(t, b.Add(2)) // ready: the bound
		added := make(chan error)
		go func() { added <- b.Add(3) }()
		synctest.Wait()
		select {
		case err := <-added:
			t.Fatalf("Add returned %v with a full ready queue", err)
		default:
		}
		r.block <- struct{}{} // 1 ends; 2 starts, which makes room for 3
		require.NoError(t, <-added)
		assert.Equal(t, []int{1}, <-r.flushed)
		close(r.block)
		require.NoError(t, b.Close(context.Background()))
		assert.Equal(t, [][]int{{1}, {2}, {3}}, r.all())

		b = New(context.Background(), Options{MaxItems: 1, MaxInFlight: 1, MaxReady: 1}, nil, func(ctx context.Context, _ []int) { <-ctx.Done() })
		require.NoError(t, b.Add(1))
		require.NoError(t, b.Add(2))
		go func() { added <- b.Add(3) }()
		synctest.Wait()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		assert.ErrorIs(t, b.Close(ctx), context.Canceled)
		assert.ErrorIs(t, <-added, ErrClosed)
	})
}
