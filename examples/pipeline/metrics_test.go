package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestMonitorServesMetricsAndReadiness(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var out strings.Builder
	mon, err := startMonitor("127.0.0.1:0", &out)
	require.NoError(t, err)
	assert.Equal(t, "metrics at "+mon.URL+"/metrics, readiness at "+mon.URL+"/readyz\n", out.String())
	defer func() { require.NoError(t, mon.Close(context.Background())) }()
	defer http.DefaultClient.CloseIdleConnections()

	code, _ := get(t, mon.URL+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code, "not ready before the pool starts")

	f := sqsfake.New()
	q := f.MustCreateQueue("jobs", nil)
	for range 3 {
		f.MustSendJSON(q, Request{ID: "r", Text: "t"})
	}
	handled := make(chan struct{}, 3)
	pool, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: f, Queue: q},
		func(context.Context, *Request) error { handled <- struct{}{}; return nil },
		sqspool.WithObserver(mon.Observer), sqspool.WithLogger(quiet))
	require.NoError(t, err)
	mon.SetPool(pool)
	for range 3 {
		<-handled
	}
	code, body := get(t, mon.URL+"/readyz")
	assert.Equal(t, http.StatusOK, code, body)
	require.NoError(t, pool.Shutdown(context.Background()))

	code, body = get(t, mon.URL+"/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "sqspool_messages_processed")
	assert.Contains(t, body, "messaging_client_consumed_messages")
	code, _ = get(t, mon.URL+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code, "a stopped pool is not ready")
}
