package sink

import (
	"context"
	"fmt"
	"sync"
)

// Memory is an in-memory Sink for tests. It is safe for concurrent use.
//
// By default it appends every item it is given. Created with NewMemoryKeyed
// it stores items by key instead, the way a DynamoDB table stores them by
// primary key: a second write of a key overwrites the first and is counted,
// so a test can tell "applied twice" from "applied once".
type Memory[T any] struct {
	key func(T) string

	mu    sync.Mutex
	items []T
	index map[string]int // key -> position in items (keyed mode)
	stats MemoryStats
	fail  func(T) error
}

// MemoryStats counts what a Memory sink was asked to do.
type MemoryStats struct {
	// Puts is the number of Put calls, failed ones included.
	Puts int
	// Applied is the number of items written.
	Applied int
	// Overwrites is, in keyed mode, how many written items replaced an item
	// already stored under the same key.
	Overwrites int
	// Failed is the number of items reported failed.
	Failed int
}

// NewMemory returns a Memory sink that keeps every item in the order written.
func NewMemory[T any]() *Memory[T] { return &Memory[T]{} }

// NewMemoryKeyed returns a Memory sink that stores items under key(item): a
// later item with the same key replaces the earlier one, in place.
func NewMemoryKeyed[T any](key func(T) string) *Memory[T] {
	return &Memory[T]{key: key, index: make(map[string]int)}
}

// Put stores the items. If ctx is already done, nothing is stored and Put
// returns ctx's error. Items for which the FailWith function returns an error
// are not stored and are reported in a *WriteError; the others are stored.
func (m *Memory[T]) Put(ctx context.Context, items ...T) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats.Puts++
	if err := ctx.Err(); err != nil {
		m.stats.Failed += len(items)
		return fmt.Errorf("sink: memory put: %w", err)
	}
	var failed []ItemError
	for i, it := range items {
		if m.fail != nil {
			if err := m.fail(it); err != nil {
				failed = append(failed, ItemError{Index: i, Err: err})
				continue
			}
		}
		m.storeLocked(it)
	}
	m.stats.Failed += len(failed)
	return newWriteError(len(items), failed)
}

func (m *Memory[T]) storeLocked(it T) {
	m.stats.Applied++
	if m.key == nil {
		m.items = append(m.items, it)
		return
	}
	k := m.key(it)
	if i, ok := m.index[k]; ok {
		m.items[i] = it
		m.stats.Overwrites++
		return
	}
	m.index[k] = len(m.items)
	m.items = append(m.items, it)
}

// FailWith makes later Puts fail the items for which f returns an error (nil
// f: none). Use it to test a caller's handling of partial failures.
func (m *Memory[T]) FailWith(f func(T) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = f
}

// Items returns a copy of the stored items: in write order, or in keyed mode
// one per key, in the order keys were first written.
func (m *Memory[T]) Items() []T {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]T(nil), m.items...)
}

// Len returns how many items are stored (in keyed mode: how many keys).
func (m *Memory[T]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}

// Get returns the item stored under key. It reports false in unkeyed mode.
func (m *Memory[T]) Get(key string) (T, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.index[key]
	if !ok {
		var zero T
		return zero, false
	}
	return m.items[i], true
}

// Stats returns the counters.
func (m *Memory[T]) Stats() MemoryStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}
