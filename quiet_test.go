package sqspool

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a log destination for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func debugLogger(w *lockedBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// runRoutine starts a pool with opts, lets it handle one message that
// succeeds and one whose handler fails, and stops it cleanly.
func runRoutine(t *testing.T, opts ...Option) {
	t.Helper()
	e := newEnv(t, nil)
	e.send(`{"id":1}`, `{"id":2}`)
	handled := make(chan int, 2)
	h := func(_ context.Context, o *order) error {
		handled <- o.ID
		if o.ID == 2 {
			return errors.New("not yet")
		}
		return nil
	}
	p, err := StartPool(context.Background(), e.consumer(), h,
		append([]Option{withClock(e.clk), WithDeleteLinger(0)}, opts...)...)
	require.NoError(t, err)
	<-handled
	<-handled
	require.NoError(t, p.Shutdown(context.Background()))
}

// A library is quiet by default: a normal start, a handler error (which the
// ErrorHook and the retry already cover) and a clean stop write nothing to
// slog.Default(), which shows in users' logs and test output. Not parallel:
// it replaces the process-wide default logger.
func TestQuietByDefault(t *testing.T) {
	var def lockedBuffer
	old := slog.Default()
	slog.SetDefault(debugLogger(&def))
	t.Cleanup(func() { slog.SetDefault(old) })

	runRoutine(t)
	assert.Empty(t, def.String(), "a routine run logged to slog.Default()")

	// The same run with a logger passed tells that logger everything.
	var own lockedBuffer
	runRoutine(t, WithLogger(debugLogger(&own)))
	assert.Empty(t, def.String(), "with WithLogger, slog.Default() still hears nothing")
	assert.Contains(t, own.String(), "sqspool: handler failed")
	assert.Contains(t, own.String(), "sqspool: stopped")
}

// What an operator must act on still reaches slog.Default() without a
// logger passed: a handler panic is a bug.
func TestPanicLoggedByDefault(t *testing.T) {
	var def lockedBuffer
	old := slog.Default()
	slog.SetDefault(debugLogger(&def))
	t.Cleanup(func() { slog.SetDefault(old) })

	e := newEnv(t, nil)
	e.send(`{"id":1}`)
	panicked := make(chan struct{})
	var once sync.Once
	p, err := StartPool(context.Background(), e.consumer(), func(context.Context, *order) error {
		once.Do(func() { close(panicked) })
		panic("boom")
	}, withClock(e.clk), WithDeleteLinger(0))
	require.NoError(t, err)
	<-panicked
	require.NoError(t, p.Shutdown(context.Background()))
	assert.Contains(t, def.String(), "sqspool: handler panicked")
	assert.NotContains(t, def.String(), "sqspool: stopped")
}
