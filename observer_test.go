package sqspool

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type recordingObserver struct {
	NopObserver
	mu       sync.Mutex
	received int
	results  []error
	deleted  int
	calls    map[string]int
	entries  map[string]int
}

type spanKey struct{}

func (o *recordingObserver) Received(*Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.received++
}

func (o *recordingObserver) Start(ctx context.Context, m *Message) (context.Context, func(error)) {
	return context.WithValue(ctx, spanKey{}, "span-"+m.ID), func(err error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.results = append(o.results, err)
	}
}

func (o *recordingObserver) Deleted(*Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.deleted++
}

func (o *recordingObserver) Call(api string, entries int, _ time.Duration, _ error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls[api]++
	o.entries[api] += entries
}

func TestObserverSeesEveryStage(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(3)
	obs := &recordingObserver{calls: map[string]int{}, entries: map[string]int{}}
	s := newSeen()
	spans := make(chan any, 3)
	p := e.start(func(ctx context.Context, o *order) error {
		spans <- ctx.Value(spanKey{})
		if o.ID == 1 {
			return errors.New("no")
		}
		return s.handler(ctx, o)
	}, WithObserver(obs), WithRetryBackoff(nil), WithDeleteLinger(time.Hour))
	s.wait(t, 2)
	e.shutdown(p)
	for range 3 {
		assert.Contains(t, <-spans, "span-", "the handler runs under the observer's context")
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	assert.Equal(t, 3, obs.received)
	require.Len(t, obs.results, 3)
	failures := 0
	for _, err := range obs.results {
		if err != nil {
			failures++
		}
	}
	assert.Equal(t, 1, failures)
	assert.Equal(t, 2, obs.deleted)
	assert.Equal(t, 1, obs.calls["DeleteMessageBatch"], "both deletes in one call")
	assert.Equal(t, 2, obs.entries["DeleteMessageBatch"])
	assert.GreaterOrEqual(t, obs.entries["ReceiveMessage"], 3)
}

func TestHealth(t *testing.T) {
	e := newEnv(t, nil)
	e.sendOrders(1)
	s := newSeen()
	p := e.start(s.handler, WithDeleteLinger(time.Hour))
	s.wait(t, 1)
	require.Eventually(t, func() bool { return p.Health().PendingDeletes == 1 }, 10*time.Second, time.Millisecond,
		"the delete waits for its linger")
	h := p.Health()
	assert.True(t, h.Polling)
	assert.False(t, h.LastReceive.IsZero())
	assert.Equal(t, BreakerClosed, h.Breaker)
	assert.False(t, h.Saturated, "one of ten workers was used")
	e.shutdown(p)
	h = p.Health()
	assert.False(t, h.Polling)
	assert.Zero(t, h.PendingDeletes)
}
