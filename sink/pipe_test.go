package sink_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sqsfake"
)

type job struct {
	N int `json:"n"`
}

type result struct {
	Key    string
	Square int
}

func TestPipeWritesThenDeletes(t *testing.T) {
	f := sqsfake.New()
	q := f.MustCreateQueue("jobs", nil)
	for i := range 20 {
		f.MustSendJSON(q, job{N: i})
	}
	store := sink.NewMemoryKeyed(func(r result) string { return r.Key })
	var failOnce atomic.Bool
	store.FailWith(func(r result) error {
		if r.Square == 49 && failOnce.CompareAndSwap(false, true) {
			return errors.New("table unavailable")
		}
		return nil
	})
	process := func(ctx context.Context, j *job) (result, error) {
		key, ok := sink.KeyFrom(ctx)
		require.True(t, ok, "the key defaults to the MessageId")
		m, _ := sqspool.MessageFrom(ctx)
		assert.Equal(t, m.ID, key)
		return result{Key: key, Square: j.N * j.N}, nil
	}
	written := make(chan error, 20)
	signalling := sink.Func[result](func(ctx context.Context, rs ...result) error {
		err := store.Put(ctx, rs...)
		written <- err
		return err
	})
	p, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: f, Queue: q}, sink.Pipe(process, signalling),
		sqspool.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), sqspool.WithRetryBackoff(nil))
	require.NoError(t, err)
	for range 20 {
		<-written
	}
	require.NoError(t, p.Shutdown(context.Background()))
	assert.Equal(t, 19, store.Len(), "every result but the failed one is stored")
	s := f.Stats(q)
	assert.EqualValues(t, 19, s.Deleted)
	assert.Equal(t, 1, s.InFlight, "the message whose write failed was not deleted")
}

func TestKeyFromPrefersAnExplicitKey(t *testing.T) {
	ctx := sink.WithKey(context.Background(), "order-42")
	key, ok := sink.KeyFrom(ctx)
	assert.True(t, ok)
	assert.Equal(t, "order-42", key)
	_, ok = sink.KeyFrom(context.Background())
	assert.False(t, ok)
}
