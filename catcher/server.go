package catcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
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
	// DefaultMaxConnections bounds the open connections: each costs a few
	// KiB even when idle (buffers, a goroutine).
	DefaultMaxConnections = 10_000
)

// ServerOption configures NewServer and Serve.
type ServerOption func(*serverOptions)

type serverOptions struct {
	configure       []func(*http.Server)
	shutdownTimeout time.Duration
	maxConns        int
	errs            []error
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
	return func(o *serverOptions) {
		if d <= 0 {
			o.errs = append(o.errs, fmt.Errorf("catcher: WithShutdownTimeout(%v): want > 0", d))
			return
		}
		o.shutdownTimeout = d
	}
}

// WithMaxConnections bounds the open connections (default
// DefaultMaxConnections): a connection past the bound is closed as soon as
// it is accepted, before anything is read from it. The bound is kept in the
// server's ConnState hook: a WithServerConfig that replaces ConnState
// should call the one it replaces.
func WithMaxConnections(n int) ServerOption {
	return func(o *serverOptions) {
		if n <= 0 {
			o.errs = append(o.errs, fmt.Errorf("catcher: WithMaxConnections(%d): want > 0", n))
			return
		}
		o.maxConns = n
	}
}

// NewServer returns an *http.Server for h on addr with the Default*
// timeouts, header limit and connection bound set. Run it as usual; on
// stop, call Shutdown and then the Handler's Close, or use Serve, which does
// both. Invalid options are ignored here; Serve reports them.
func NewServer(addr string, h http.Handler, opts ...ServerOption) *http.Server {
	srv, _ := newServer(addr, h, opts)
	return srv
}

func newServer(addr string, h http.Handler, opts []ServerOption) (*http.Server, serverOptions) {
	o := serverOptions{shutdownTimeout: DefaultShutdownTimeout, maxConns: DefaultMaxConnections}
	for _, opt := range opts {
		opt(&o)
	}
	var conns atomic.Int64
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ReadTimeout:       DefaultReadTimeout,
		WriteTimeout:      DefaultWriteTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		// Counting in ConnState works for any listener, also when the
		// caller runs the server itself.
		ConnState: func(c net.Conn, state http.ConnState) {
			switch state {
			case http.StateNew:
				if conns.Add(1) > int64(o.maxConns) {
					_ = c.Close() // the server then reports StateClosed
				}
			case http.StateClosed, http.StateHijacked:
				conns.Add(-1)
			}
		},
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
	if srv.WriteTimeout > 0 && srv.WriteTimeout < h.cfg.sendTimeout+answerMargin {
		o.errs = append(o.errs, fmt.Errorf("catcher: Serve: WriteTimeout %v leaves no time for the send timeout %v: every request would get 503", srv.WriteTimeout, h.cfg.sendTimeout))
	}
	if len(o.errs) > 0 {
		return errors.Join(append(o.errs, ln.Close(), h.Close(context.WithoutCancel(ctx)))...)
	}
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
