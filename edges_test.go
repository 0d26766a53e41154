package sqspool

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// panickyObserver panics in every method it has.
type panickyObserver struct{}

func (panickyObserver) Received(*Message) { panic("observer: received") }
func (panickyObserver) Start(context.Context, *Message) (context.Context, func(error)) {
	panic("observer: start")
}
func (panickyObserver) Deleted(*Message)                       { panic("observer: deleted") }
func (panickyObserver) Call(string, int, time.Duration, error) { panic("observer: call") }

// Defect 8: a panicking Decoder is a decode error under the decode policy,
// and a panicking ErrorHook or Observer is logged, never the end of the
// process.
func TestPanickingDecoderHookAndObserverDoNotCrash(t *testing.T) {
	for _, policy := range []DecodeFailurePolicy{LeaveMalformed, DeleteMalformed} {
		e := newEnv(t, nil)
		e.send("bad", "id=1")
		errs := newErrorLog()
		s := newSeen()
		hookCalls := 0
		p := e.start(s.handler, WithWorkers(1), WithMaxMessages(1), WithDecodeFailure(policy),
			WithDecoder(func(body string, o *order) error {
				if body == "bad" {
					panic("decoder: bad body")
				}
				o.ID = 1
				return nil
			}),
			WithObserver(panickyObserver{}),
			WithErrorHook(func(ctx context.Context, m *Message, err error) {
				errs.hook(ctx, m, err)
				hookCalls++ // one worker: no race
				panic("hook: " + err.Error())
			}))
		var derr *DecodeError
		require.ErrorAs(t, errs.next(t), &derr)
		var perr *PanicError
		require.ErrorAs(t, derr, &perr, "the decoder's panic is in the decode error")
		assert.Equal(t, "decoder: bad body", perr.Value)
		assert.Equal(t, []int{1}, s.wait(t, 1), "the pool went on to the next message")
		e.shutdown(p)
		st := p.Stats()
		assert.EqualValues(t, 1, st.DecodeErrors)
		assert.EqualValues(t, 1, st.Processed)
		msgs := e.fake.Messages(e.queue)
		if policy == DeleteMalformed {
			assert.Empty(t, msgs, "deleted by policy")
		} else {
			require.Len(t, msgs, 1, "left for the redrive policy")
			assert.Equal(t, "bad", msgs[0].Body)
		}
	}
}

// Defect 7: the handler's time counts from when its message arrived, not
// from when the long poll that brought it was sent.
func TestHandlerTimeoutCountsFromArrivalNotFromThePoll(t *testing.T) {
	e := newEnv(t, nil)
	left := make(chan time.Duration, 1)
	p := e.start(func(ctx context.Context, o *order) error {
		d, ok := ctx.Deadline()
		require.True(t, ok)
		require.NoError(t, ctx.Err())
		left <- time.Until(d)
		return nil
	}, WithWorkers(1), WithHandlerTimeout(5*time.Second))
	require.True(t, e.clk.BlockUntil(2, nil)) // the watchdog's tick and the long poll's wait
	e.clk.Advance(15 * time.Second)           // 15 s into the 20 s poll ...
	e.sendOrders(1)                           // ... the message arrives
	assert.Greater(t, <-left, 4*time.Second, "the whole handler timeout is left")
	e.shutdown(p)
}
