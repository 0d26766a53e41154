package sink_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/sink"
)

func TestKeyContext(t *testing.T) {
	_, ok := sink.KeyFrom(t.Context())
	assert.False(t, ok)
	ctx := sink.WithKey(t.Context(), "m-1")
	k, ok := sink.KeyFrom(ctx)
	assert.True(t, ok)
	assert.Equal(t, "m-1", k)
	k, _ = sink.KeyFrom(sink.WithKey(ctx, "producer-7"))
	assert.Equal(t, "producer-7", k, "a later WithKey overrides")
	_, ok = sink.KeyFrom(sink.WithKey(ctx, ""))
	assert.False(t, ok, "an empty key is no key")
	_, ok = sink.KeyFrom(context.WithValue(t.Context(), otherKey{}, "m-1"))
	assert.False(t, ok)
}

func TestFunc(t *testing.T) {
	var got []int
	var s sink.Sink[int] = sink.Func[int](func(_ context.Context, items ...int) error {
		got = append(got, items...)
		return nil
	})
	require.NoError(t, s.Put(t.Context(), 1, 2))
	assert.Equal(t, []int{1, 2}, got)
}

func TestMemory(t *testing.T) {
	m := sink.NewMemory[int]()
	var s sink.Sink[int] = m
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { assert.NoError(t, s.Put(t.Context(), i, i)) })
	}
	wg.Wait()
	assert.Equal(t, 100, m.Len())
	assert.Len(t, m.Items(), 100)
	assert.Equal(t, sink.MemoryStats{Puts: 50, Applied: 100}, m.Stats())

	items := m.Items()
	items[0] = -1
	assert.NotContains(t, m.Items(), -1, "Items is a copy")
	_, ok := m.Get("1")
	assert.False(t, ok, "no keys in unkeyed mode")
}

func TestMemoryKeyed(t *testing.T) {
	m := sink.NewMemoryKeyed(func(o order) string { return o.PK })
	require.NoError(t, m.Put(t.Context(), order{PK: "a", N: 1}, order{PK: "b", N: 1}))
	require.NoError(t, m.Put(t.Context(), order{PK: "a", N: 2}))
	assert.Equal(t, 2, m.Len())
	assert.Equal(t, []order{{PK: "a", N: 2}, {PK: "b", N: 1}}, m.Items())
	got, ok := m.Get("a")
	require.True(t, ok)
	assert.Equal(t, 2, got.N)
	assert.Equal(t, sink.MemoryStats{Puts: 2, Applied: 3, Overwrites: 1}, m.Stats())
}

func TestMemoryFailures(t *testing.T) {
	m := sink.NewMemory[int]()
	boom := errors.New("boom")
	m.FailWith(func(i int) error {
		if i%2 == 1 {
			return fmt.Errorf("odd %d: %w", i, boom)
		}
		return nil
	})
	err := m.Put(t.Context(), 0, 1, 2, 3)
	var we *sink.WriteError
	require.ErrorAs(t, err, &we)
	assert.Equal(t, 4, we.Total)
	require.Len(t, we.Items, 2)
	assert.Equal(t, []int{1, 3}, []int{we.Items[0].Index, we.Items[1].Index})
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, []int{0, 2}, m.Items(), "items not reported failed are written")

	m.FailWith(nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	assert.ErrorIs(t, m.Put(ctx, 4), context.Canceled)
	assert.Equal(t, 2, m.Len(), "nothing written under a done context")
	assert.Equal(t, sink.MemoryStats{Puts: 2, Applied: 2, Failed: 3}, m.Stats())
}

func TestWriteErrorMessage(t *testing.T) {
	items := make([]sink.ItemError, 5)
	for i := range items {
		items[i] = sink.ItemError{Index: i, Err: errors.New("x")}
	}
	err := &sink.WriteError{Items: items, Total: 9}
	assert.Equal(t, "sink: 5 of 9 items not written; item 0: x; item 1: x; item 2: x; and 2 more", err.Error())
}

// otherKey is a context key of another package's, holding a string.
type otherKey struct{}
