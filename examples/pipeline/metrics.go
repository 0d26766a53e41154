package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/otelsqspool"
)

// monitor serves what an operator scrapes: /metrics in the Prometheus format
// (the OpenTelemetry Prometheus exporter, fed by otelsqspool) and /readyz
// (from Pool.Health). Observer goes to the pool; SetPool hands the pool to
// the probe once it exists.
type monitor struct {
	Observer sqspool.Observer
	URL      string

	pool   atomic.Pointer[sqspool.Pool]
	server *http.Server
	served chan error
}

// startMonitor listens on addr and serves until Close. It prints where to
// out: the address is the point of -metrics, so it is not left to a log
// level that may hide it.
func startMonitor(addr string, out io.Writer) (*monitor, error) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	m := &monitor{
		Observer: otelsqspool.New(otelsqspool.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)))),
		URL:      "http://" + ln.Addr().String(),
		served:   make(chan error, 1),
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /readyz", m.ready)
	m.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second}
	go func() { m.served <- m.server.Serve(ln) }()
	fmt.Fprintf(out, "metrics at %s/metrics, readiness at %s/readyz\n", m.URL, m.URL)
	return m, nil
}

// SetPool gives the readiness probe its pool.
func (m *monitor) SetPool(p *sqspool.Pool) { m.pool.Store(p) }

// ready answers 200 while the pool polls and has received lately (or is too
// busy to receive), 503 otherwise.
func (m *monitor) ready(w http.ResponseWriter, _ *http.Request) {
	p := m.pool.Load()
	if p == nil {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	h := p.Health()
	if !h.Polling || (!h.Saturated && time.Since(h.LastReceive) > 45*time.Second) {
		http.Error(w, "not receiving", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "ok: %d deletes pending, breaker %s\n", h.PendingDeletes, h.Breaker)
}

// Close stops serving.
func (m *monitor) Close(ctx context.Context) error {
	err := m.server.Shutdown(ctx)
	if serr := <-m.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
