package catcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server defaults. Every timeout is set, because net/http's zero values
// mean "wait forever" and let slow or idle clients hold connections.
const (
	// DefaultReadHeaderTimeout bounds reading the request headers: the
	// slowloris guard.
	DefaultReadHeaderTimeout = 5 * time.Second
	// DefaultReadTimeout bounds reading a whole request, body included:
	// 1 MiB in 30 s needs about 280 kbit/s.
	DefaultReadTimeout = 30 * time.Second
	// DefaultWriteTimeout runs from the end of the headers to the end of
	// the answer, so it covers reading the body, the linger and the send:
	// ReadTimeout + DefaultSendTimeout + 5 s.
	DefaultWriteTimeout = DefaultReadTimeout + DefaultSendTimeout + 5*time.Second
	// DefaultIdleTimeout keeps idle keep-alive connections longer than the
	// 60 s idle timeout of an AWS load balancer: a server that closes first
	// races the balancer's next request and makes it fail with 502.
	DefaultIdleTimeout = 120 * time.Second
	// DefaultMaxHeaderBytes is well above real headers and far below
	// net/http's 1 MiB default.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultShutdownTimeout bounds the graceful stop of Serve: requests in
	// progress need at most the linger plus DefaultSendTimeout.
	DefaultShutdownTimeout = 20 * time.Second
)

// ServerOption configures NewServer and Serve.
type ServerOption func(*serverOptions)

type serverOptions struct {
	configure       []func(*http.Server)
	shutdownTimeout time.Duration
}

// WithServerConfig lets fn change the *http.Server after the defaults are
// set: other timeouts, TLS, or a middleware around the handler
// (s.Handler = mw(s.Handler)).
func WithServerConfig(fn func(*http.Server)) ServerOption {
	return func(o *serverOptions) { o.configure = append(o.configure, fn) }
}

// WithShutdownTimeout bounds the graceful stop of Serve (default
// DefaultShutdownTimeout). NewServer ignores it.
func WithShutdownTimeout(d time.Duration) ServerOption {
	if d <= 0 {
		panic(fmt.Sprintf("catcher: WithShutdownTimeout(%v): want > 0", d))
	}
	return func(o *serverOptions) { o.shutdownTimeout = d }
}

// NewServer returns an *http.Server for h on addr with the Default*
// timeouts and header limit set. Run it as usual; on stop, call Shutdown
// and then the Handler's Close, or use Serve, which does both.
func NewServer(addr string, h http.Handler, opts ...ServerOption) *http.Server {
	srv, _ := newServer(addr, h, opts)
	return srv
}

func newServer(addr string, h http.Handler, opts []ServerOption) (*http.Server, serverOptions) {
	o := serverOptions{shutdownTimeout: DefaultShutdownTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ReadTimeout:       DefaultReadTimeout,
		WriteTimeout:      DefaultWriteTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
	}
	for _, fn := range o.configure {
		fn(srv)
	}
	return srv, o
}

// Serve serves h on ln until ctx ends, then stops gracefully: Shutdown
// stops accepting and waits for the requests in progress (which wait for
// their messages), then h.Close sends anything still pending. Both share
// the shutdown timeout; past it, open connections are closed and the
// requests still waiting get 503. Serve closes ln. It returns nil after a
// clean stop.
//
// The requests' contexts do not derive from ctx on purpose: cancelling ctx
// must let the requests in progress finish, not abandon them.
func Serve(ctx context.Context, ln net.Listener, h *Handler, opts ...ServerOption) error {
	srv, o := newServer("", h, opts)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var serveErr error
	stopped := false
	select {
	case serveErr = <-served: // the listener failed; still close cleanly
		stopped = true
	case <-ctx.Done():
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.shutdownTimeout)
	defer cancel()
	var errs []error
	if err := srv.Shutdown(stopCtx); err != nil {
		errs = append(errs, fmt.Errorf("catcher: shutdown: %w", err))
		_ = srv.Close() // past the timeout: cut what is left
	}
	if !stopped {
		serveErr = <-served // http.ErrServerClosed once Shutdown began
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("catcher: serve: %w", serveErr))
	}
	if err := h.Close(stopCtx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
