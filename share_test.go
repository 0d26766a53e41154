package sqspool

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/share"
)

// The pool's per-message steps as internal/share hands them to
// lambdasqspool (whose tests run them through recorded Lambda events): what
// each outcome of a message becomes, and what the hooks hear.
func TestSharedProcessOutcomes(t *testing.T) {
	errFailed := errors.New("failed")
	errVisibility := errors.New("visibility refused")
	for _, tc := range []struct {
		name       string
		body       string
		handlerErr error
		panics     bool
		opts       []Option
		visErr     error
		wantDone   bool
		wantErr    any // a pointer to the error type the outcome holds, or nil
		wantDelay  time.Duration
		wantHooked int
	}{
		{name: "success", body: `7`, wantDone: true},
		{name: "failure", body: `7`, handlerErr: errFailed, wantErr: &errFailed, wantHooked: 1},
		{name: "no retry", body: `7`, handlerErr: NoRetry(errFailed), wantDone: true, wantErr: &errFailed, wantHooked: 1},
		{name: "retry after", body: `7`, handlerErr: RetryAfter(time.Minute, errFailed), wantErr: &errFailed, wantDelay: time.Minute, wantHooked: 1},
		{name: "retry after, visibility refused", body: `7`, handlerErr: RetryAfter(time.Minute, errFailed), visErr: errVisibility,
			wantErr: &errFailed, wantDelay: time.Minute, wantHooked: 2},
		{name: "panic", body: `7`, panics: true, wantErr: new(*PanicError), wantHooked: 1},
		{name: "malformed, left", body: `{`, wantErr: new(*DecodeError), wantHooked: 1},
		{name: "malformed, deleted", body: `{`, opts: []Option{WithDecodeFailure(DeleteMalformed)}, wantDone: true, wantErr: new(*DecodeError), wantHooked: 1},
		{name: "sns", body: `{"Type":"Notification","Message":"7"}`, opts: []Option{WithSNSEnvelope()}, wantDone: true},
		{name: "not sns", body: `7`, opts: []Option{WithSNSEnvelope()}, wantErr: &ErrNotSNSEnvelope, wantHooked: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &recordingObserver{calls: map[string]int{}, entries: map[string]int{}}
			var hooked []error
			opts := append([]Option{
				WithObserver(obs), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
				WithErrorHook(func(_ context.Context, m *Message, err error) {
					assert.Equal(t, "m-1", m.ID)
					hooked = append(hooked, err)
				}),
			}, tc.opts...)
			s, err := share.Configure(opts, false)
			require.NoError(t, err)
			assert.Equal(t, 10, s.Workers)
			var v int
			var delays []time.Duration
			var span any
			out := s.Process(context.Background(), share.Delivery{
				Message: types.Message{MessageId: aws.String("m-1"), Body: aws.String(tc.body),
					Attributes: map[string]string{"ApproximateReceiveCount": "2"}},
				QueueURL: "https://sqs.us-east-1.amazonaws.com/123456789012/q",
				Decode:   func(body string) error { return s.DefaultDecode(body, &v) },
				Handle: func(ctx context.Context) error {
					m, ok := MessageFrom(ctx)
					require.True(t, ok)
					assert.Equal(t, 2, m.ReceiveCount)
					span = ctx.Value(spanKey{})
					if tc.panics {
						panic("boom")
					}
					return tc.handlerErr
				},
				SetVisibility: func(_ context.Context, d time.Duration) error {
					delays = append(delays, d)
					return tc.visErr
				},
			})
			assert.Equal(t, tc.wantDone, out.Done)
			if tc.wantErr == nil {
				assert.NoError(t, out.Err)
				assert.Equal(t, 7, v)
				assert.Equal(t, "span-m-1", span)
			} else if target, ok := tc.wantErr.(*error); ok {
				assert.ErrorIs(t, out.Err, *target)
			} else {
				assert.ErrorAs(t, out.Err, tc.wantErr)
			}
			if tc.wantDelay > 0 {
				assert.Equal(t, []time.Duration{tc.wantDelay}, delays)
				assert.Equal(t, 1, obs.calls["ChangeMessageVisibility"])
			} else {
				assert.Empty(t, delays)
			}
			require.Len(t, hooked, tc.wantHooked)
			if tc.visErr != nil {
				var apiErr *APIError
				assert.ErrorAs(t, hooked[0], &apiErr)
				assert.ErrorIs(t, hooked[0], errVisibility)
			}
			assert.Equal(t, 1, obs.received)
		})
	}
}

func TestSharedConfigureRejectsInvalidOptions(t *testing.T) {
	_, err := share.Configure([]Option{WithWorkers(0)}, false)
	assert.ErrorContains(t, err, "workers must be at least 1")
}

// The batch form of the steps: each delivery prepared, the handler called
// once with those that decode, each settled with its own outcome; on a FIFO
// queue none settled after the first failure.
func TestSharedProcessBatchOutcomes(t *testing.T) {
	errFailed := errors.New("failed")
	for _, tc := range []struct {
		name        string
		fifo        bool
		wantDone    []bool
		wantResults []error // what the observer heard, message by message of the batch
	}{
		// The malformed second is done (DeleteMalformed) either way: the
		// FIFO rule across records is the caller's (lambdasqspool).
		{"standard", false, []bool{false, true, true, true}, []error{errFailed, nil, nil}},
		{"fifo", true, []bool{false, true, false, false}, []error{errFailed, errGroupFailed, errGroupFailed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &recordingObserver{calls: map[string]int{}, entries: map[string]int{}}
			s, err := share.Configure([]Option{WithObserver(obs), WithBatchSize(4), WithDecodeFailure(DeleteMalformed),
				WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, true)
			require.NoError(t, err)
			assert.Equal(t, 4, s.BatchSize)
			bodies := []string{`1`, `{`, `3`, `4`} // the second is malformed, and deleted
			vals := make([]int, len(bodies))
			ds := make([]share.Delivery, len(bodies))
			for i, b := range bodies {
				ds[i] = share.Delivery{
					Message: types.Message{MessageId: aws.String(b), Body: aws.String(b)},
					Decode:  func(body string) error { return s.DefaultDecode(body, &vals[i]) },
				}
			}
			var ran []int
			out := s.ProcessBatch(context.Background(), ds, tc.fifo, func(ctx context.Context, r []int) error {
				ms, ok := MessagesFrom(ctx)
				require.True(t, ok)
				assert.Len(t, ms, len(r))
				ran = r
				return BatchErrors{0: errFailed}
			})
			assert.Equal(t, []int{0, 2, 3}, ran)
			done := make([]bool, len(out))
			for i, o := range out {
				done[i] = o.Done
			}
			assert.Equal(t, tc.wantDone, done)
			assert.Equal(t, tc.wantResults, obs.results)
			assert.Equal(t, 4, obs.received)
		})
	}
}
