package sqspool

import (
	"context"
	"errors"
	"runtime/debug"

	"github.com/sqspool/sqspool/internal/share"
)

// The steps below are the pool's, for one message; internal/share hands
// them to lambdasqspool, which runs the same handler behind a Lambda event
// source mapping.
func init() { share.Configure = configureShared }

// decodeBody runs the decode steps on m's body: the SNS unwrap if set, then
// decode (which recovers its panics: see callDecoder). A failure is logged
// and returned as it is.
func (c *config) decodeBody(m *Message, decode func(body string) error) error {
	body := m.Body
	var err error
	if c.snsEnvelope {
		body, err = unwrapSNS(body)
	}
	if err == nil {
		err = decode(body)
	}
	if err != nil {
		c.logger.Warn("sqspool: message body does not decode", "message_id", m.ID, "receive_count", m.ReceiveCount, "error", err)
		c.verbose.Debug("sqspool: undecodable body", "message_id", m.ID, "body", m.Body)
	}
	return err
}

// logFailure logs a handler's error, and reports whether it was a panic.
func (c *config) logFailure(m *Message, err error) (panicked bool) {
	perr, panicked := err.(*PanicError) // protect returns it unwrapped
	if panicked {
		c.logger.Error("sqspool: handler panicked", "message_id", m.ID, "panic", perr.Value, "stack", string(perr.Stack))
	} else {
		c.verbose.Warn("sqspool: handler failed", "message_id", m.ID, "receive_count", m.ReceiveCount, "error", err)
	}
	return panicked
}

// report hands err to the error hook.
func (c *config) report(ctx context.Context, m *Message, err error) {
	if h := c.onError; h != nil {
		guard(c.logger, "ErrorHook", func() { h(ctx, m, err) })
	}
}

// protect runs f, turning a panic into a *PanicError.
func protect(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return f()
}

// configureShared is share.Configure: opts is a []Option.
func configureShared(opts any, batch bool) (share.Settings, error) {
	cfg := defaultConfig()
	for _, o := range opts.([]Option) {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return share.Settings{}, err
	}
	if err := cfg.validateBatch(batch); err != nil {
		return share.Settings{}, err
	}
	if cfg.observer != nil {
		cfg.observer = guardedObserver{o: cfg.observer, log: cfg.logger}
	}
	return share.Settings{
		DefaultDecode: decodeDefault, Workers: cfg.workers, BatchSize: cfg.batch.size,
		Process: cfg.process, ProcessBatch: cfg.processBatch,
	}, nil
}

// process is one delivery through the pool's steps, outside a pool: no
// dedup, heartbeat or backoff (the caller owns the message's fate and
// deletes nothing itself); a RetryAfter delay is set through
// d.SetVisibility.
func (c *config) process(ctx context.Context, d share.Delivery) share.Outcome {
	ctx, m, err := c.prepare(ctx, d)
	if err != nil {
		return share.Outcome{Done: c.decodePolicy == DeleteMalformed, Err: err}
	}
	hctx, done := ctx, func(error) {}
	if c.observer != nil {
		hctx, done = c.observer.Start(ctx, m)
	}
	err = protect(func() error { return d.Handle(hctx) })
	done(err)
	return c.settle(ctx, hctx, m, d, err)
}

// processBatch is process for a batch handler: it prepares each of ds,
// calls handle once with the indices of those that decode, under a context
// that gives their metadata (MessagesFrom), and settles each with its own
// error. With fifo, a malformed delivery the decode policy keeps ends the
// batch before it (the later ones do not run before its fate is known), and
// after the first failure the later messages are not settled: they come
// back with it, as a FIFO group's do in a batch pool.
func (c *config) processBatch(ctx context.Context, ds []share.Delivery, fifo bool, handle func(ctx context.Context, ran []int) error) []share.Outcome {
	out := make([]share.Outcome, len(ds))
	ctxs := make([]context.Context, len(ds))
	ran := make([]int, 0, len(ds))
	msgs := make([]*Message, 0, len(ds))
	for i, d := range ds {
		mctx, m, err := c.prepare(ctx, d)
		if err != nil {
			out[i] = share.Outcome{Done: c.decodePolicy == DeleteMalformed, Err: err}
			if fifo && !out[i].Done {
				break
			}
			continue
		}
		ctxs[i] = mctx
		ran = append(ran, i)
		msgs = append(msgs, m)
	}
	if len(ran) == 0 {
		return out
	}
	dones := make([]func(error), len(ran))
	for k, i := range ran {
		dones[k] = func(error) {}
		if c.observer != nil {
			_, dones[k] = c.observer.Start(ctxs[i], msgs[k])
		}
	}
	err := protect(func() error { return handle(context.WithValue(ctx, batchKey{}, msgs), ran) })
	failed := false
	for k, e := range c.batchOutcomes(err, len(ran)) {
		i := ran[k]
		if failed {
			dones[k](errGroupFailed)
			out[i] = share.Outcome{Err: errGroupFailed}
			continue
		}
		dones[k](e)
		out[i] = c.settle(ctxs[i], ctxs[i], msgs[k], ds[i], e)
		failed = fifo && !out[i].Done
	}
	return out
}

// batchOutcomes is the outcome of each of the n messages of a batch whose
// handler returned err: their own under a BatchErrors (entries out of range
// are logged and ignored), err for all under any other error or a panic.
func (c *config) batchOutcomes(err error, n int) []error {
	errs := make([]error, n)
	var each BatchErrors
	if _, panicked := err.(*PanicError); panicked || !errors.As(err, &each) { // protect returns a panic unwrapped
		for k := range errs {
			errs[k] = err
		}
		return errs
	}
	for k, e := range each {
		switch {
		case e == nil:
		case k < 0 || k >= n:
			c.logger.Warn("sqspool: BatchErrors index out of range, ignored", "index", k, "messages", n, "error", e)
		default:
			errs[k] = e
		}
	}
	return errs
}

// prepare makes d's Message, hands it to the observer and decodes its body.
// It returns the context that carries the message (MessageFrom), and a
// *DecodeError, reported already, if the body does not decode.
func (c *config) prepare(ctx context.Context, d share.Delivery) (context.Context, *Message, error) {
	m := new(Message)
	fillMessage(m, d.QueueURL, d.Message, c.clock.Now())
	ctx = context.WithValue(ctx, messageKey{}, m)
	if c.observer != nil {
		c.observer.Received(m)
	}
	decode := func(body string) error { return protect(func() error { return d.Decode(body) }) } // as callDecoder
	if err := c.decodeBody(m, decode); err != nil {
		derr := &DecodeError{MessageID: m.ID, Err: err}
		c.report(ctx, m, derr)
		return ctx, m, derr
	}
	return ctx, m, nil
}

// settle makes m's handler result (err, under hctx) its outcome: done, or
// to retry, after RetryAfter's delay set through d.SetVisibility.
func (c *config) settle(ctx, hctx context.Context, m *Message, d share.Delivery, err error) share.Outcome {
	if err == nil {
		return share.Outcome{Done: true}
	}
	c.logFailure(m, err)
	delay, set, final := retryDelay(err, m.ReceiveCount, nil)
	if set && d.SetVisibility != nil {
		began := c.clock.Now()
		verr := d.SetVisibility(ctx, delay)
		if c.observer != nil {
			c.observer.Call("ChangeMessageVisibility", 1, c.clock.Now().Sub(began), verr)
		}
		if verr != nil {
			c.logger.Warn("sqspool: retry delay not set", "message_id", m.ID, "error", verr)
			c.report(ctx, m, &APIError{API: "ChangeMessageVisibility", Err: verr})
		}
	}
	c.report(hctx, m, err)
	return share.Outcome{Done: final, Err: err}
}
