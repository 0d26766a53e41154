package batch

import (
	"context"
	"runtime"
	"strings"
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

// TestNudgeCutsAPartialBatchWithinTheBudget: Nudge sends a partial batch
// before its linger only while full batches have saved up what it lacks of
// TargetItems; otherwise it waits its linger.
func TestNudgeCutsAPartialBatchWithinTheBudget(t *testing.T) {
	clk := clock.NewManual(time.Now())
	r := newRecorder()
	b := New(context.Background(), Options{MaxItems: 4, TargetItems: 3, Linger: time.Hour, MaxInFlight: 2, Clock: clk}, nil, r.flush)
	add := func(items ...int) {
		for _, i := range items {
			require.NoError(t, b.Add(i))
		}
	}
	add(1, 2)
	b.Nudge() // nothing saved up yet: 2 items lack 1 of the target
	assert.Equal(t, 2, b.Pending())
	add(3, 4) // full: saves 1
	assert.Equal(t, []int{1, 2, 3, 4}, <-r.flushed)
	add(5, 6, 7, 8, 9, 10) // another full batch saves 1 more; 2 items pending
	assert.Equal(t, []int{5, 6, 7, 8}, <-r.flushed)
	b.Nudge() // 2 items, 1 short of the target, paid from the 2 saved
	assert.Equal(t, []int{9, 10}, <-r.flushed)
	add(11)
	b.Nudge() // 1 saved is not enough for 1 item
	b.Nudge()
	assert.Equal(t, 1, b.Pending())
	add(12)
	b.Nudge() // 2 items, paid with the last 1 saved
	assert.Equal(t, []int{11, 12}, <-r.flushed)
	add(13, 14)
	b.Nudge()
	assert.Equal(t, 2, b.Pending())
	clk.Advance(time.Hour)
	assert.Equal(t, []int{13, 14}, <-r.flushed)
	require.NoError(t, b.Close(context.Background()))
}

// TestNudgeWaitsForAFreeSlotAndNeedsATarget: a nudged partial batch would
// only queue behind running flushes (where it still takes items), and a
// batcher without TargetItems ignores Nudge.
func TestNudgeWaitsForAFreeSlotAndNeedsATarget(t *testing.T) {
	clk := clock.NewManual(time.Now())
	r := newRecorder()
	r.block = make(chan struct{})
	b := New(context.Background(), Options{MaxItems: 2, TargetItems: 1, Linger: time.Hour, Clock: clk}, nil, r.flush)
	require.NoError(t, b.Add(1))
	require.NoError(t, b.Add(2)) // full: its flush holds the only slot
	require.NoError(t, b.Add(3))
	b.Nudge()
	assert.Equal(t, 1, b.Pending(), "no free slot: the partial batch stays open")
	close(r.block)
	assert.Equal(t, []int{1, 2}, <-r.flushed)
	require.NoError(t, b.Close(context.Background()))
	assert.Equal(t, []int{3}, <-r.flushed)

	plain := New(context.Background(), Options{MaxItems: 2, Linger: time.Hour, Clock: clk}, nil, r.flush)
	require.NoError(t, plain.Add(4))
	plain.Nudge()
	assert.Equal(t, 1, plain.Pending(), "no TargetItems: Nudge does nothing")
	require.NoError(t, plain.Close(context.Background()))
	assert.Equal(t, []int{4}, <-r.flushed)
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

// goroutineID reads the running goroutine's id from its stack header.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	return id
}

// Batches that are ready when a flush ends are flushed by the goroutine
// that ran it, one after another, instead of each by a new goroutine: a new
// goroutine would grow its stack again to what a flush needs (SendMessageBatch
// through the SDK is deep), for every batch.
func TestAFlushingGoroutineCarriesOnWithReadyBatches(t *testing.T) {
	release := make(chan struct{})
	ids := make(chan string, 4)
	b := New(context.Background(), Options{MaxItems: 1}, nil, func(_ context.Context, items []int) {
		if items[0] == 0 {
			<-release // the only slot stays busy while the rest are cut
		}
		ids <- goroutineID()
	})
	for i := range 4 {
		require.NoError(t, b.Add(i))
	}
	require.Equal(t, 3, b.Pending(), "three batches wait for the slot")
	close(release)
	require.NoError(t, b.Close(context.Background()))
	close(ids)
	var seen []string
	for id := range ids {
		seen = append(seen, id)
	}
	require.Len(t, seen, 4)
	for _, id := range seen[1:] {
		assert.Equal(t, seen[0], id, "flushes ran on goroutines %v", seen)
	}
}
