// Package sendbatch sends messages handed in by many concurrent callers to
// one SQS queue in SendMessageBatch calls, and hands every caller the result
// of its own message. It is the engine of sqspool.Producer and of the
// catcher's HTTP handler.
//
// Batches are cut by internal/batch: ten entries, 1 MiB, or the linger. A
// message waits in a batch until a call claims it; a caller whose context
// ends, or whose send-by time passes, before that takes its message back and
// it is never sent. Once a call carries a message, the caller waits for what
// SQS said (bounded by the send timeout), because SQS may have stored it.
// Entries that SQS failed for a transient reason (its fault, or throttling)
// are sent again in the same flush, up to Options.Attempts.
package sendbatch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/internal/backoff"
	"github.com/sqspool/sqspool/internal/batch"
	"github.com/sqspool/sqspool/internal/clock"
)

// SQS limits.
const (
	// MaxBytes is the SQS limit of one message, body and attributes
	// together, and of the payload of one SendMessageBatch call.
	MaxBytes = 1 << 20
	// MaxEntries is the SQS limit of entries per SendMessageBatch call.
	MaxEntries = 10
)

// Client is what the sender calls.
type Client interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// Options configure a Sender. Zero values take the documented defaults.
type Options struct {
	QueueURL string
	// Linger is how long a partial batch waits for more messages.
	Linger time.Duration
	// MaxInFlight is how many calls may run at once (default 1).
	MaxInFlight int
	// SendTimeout bounds each call (default 10 s).
	SendTimeout time.Duration
	// Attempts is how often an entry is sent at most when SQS fails it for
	// a transient reason (default 1: no retry).
	Attempts int
	// RetryDelay is the longest wait before the first retry call, doubled
	// for each further one (default 100 ms), with the module's equal jitter
	// (backoff.Policy) so that senders failed together do not retry together.
	RetryDelay time.Duration
	// Jitter is the source of the retry delays' random part (nil: global).
	Jitter backoff.Source
	// MaxWaiting bounds the messages admitted and not yet claimed by a
	// call; beyond it Send returns ErrFull (0: no bound).
	MaxWaiting int
	// Clock drives the linger, retry delays and send-by times (default
	// clock.Real).
	Clock clock.Clock
	// OnError, when set, hears of every failed call and failed entry.
	OnError func(msg string, err error)
	// OnQueued, when set, runs after a message joined a batch (tests).
	OnQueued func()
}

// Errors a Result may carry besides *CallError and *EntryError.
var (
	// ErrClosed: the sender was closed before the message was sent.
	ErrClosed = errors.New("closed")
	// ErrCancelled: the caller's context ended before a call carried the
	// message; it was not sent.
	ErrCancelled = errors.New("cancelled before the message was sent")
	// ErrLate: the send-by time passed before a call carried the message;
	// it was not sent.
	ErrLate = errors.New("the message could not be sent in time")
	// ErrFull: MaxWaiting messages already wait.
	ErrFull = errors.New("too many messages waiting")
	// ErrUnreported: SQS listed the entry neither as stored nor as failed,
	// so it may or may not be stored.
	ErrUnreported = errors.New("SendMessageBatch reported nothing for the entry")
)

// CallError is a SendMessageBatch call that failed as a whole: the message
// may or may not be stored when Err is a timeout.
type CallError struct {
	Entries int
	Err     error
}

func (e *CallError) Error() string {
	return fmt.Sprintf("SendMessageBatch of %d entries: %v", e.Entries, e.Err)
}

func (e *CallError) Unwrap() error { return e.Err }

// EntryError is the failure SQS reported for one entry of a batch.
type EntryError struct {
	Code        string // without the "AWS.SimpleQueueService." prefix
	Message     string
	SenderFault bool
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("sqs entry failed: %s (sender fault %t): %s", e.Code, e.SenderFault, e.Message)
}

// Transient reports whether sending the entry again may succeed: SQS's own
// faults and throttling.
func (e *EntryError) Transient() bool { return !e.SenderFault || Throttled(e.Code) }

// Throttled reports whether an SQS error code means "slow down".
func Throttled(code string) bool { return backoff.Throttle(NormalizeCode(code)) }

// NormalizeCode strips the prefix of the query-compatible SQS error codes
// ("AWS.SimpleQueueService.NonExistentQueue"), so one table serves both.
func NormalizeCode(code string) string {
	return strings.TrimPrefix(code, "AWS.SimpleQueueService.")
}

// States of a message: the caller and the flush race to move it out of
// queued, so that exactly one of them decides whether it is sent.
const (
	stateQueued    int32 = iota
	stateSending         // claimed by a flush: the caller waits for the result
	stateAbandoned       // the caller gave up first: the flush skips it
)

// Message is one message on its way. The caller fills Entry (all but Id)
// and Size (body plus attributes as SQS counts them) and passes it to Send
// once. Entry must not change until Send returns.
type Message struct {
	Entry types.SendMessageBatchRequestEntry
	Size  int

	ctx    context.Context
	sendBy time.Time
	state  atomic.Int32
	done   chan struct{} // buffered: finish never blocks on it
	result Result        // set by finish before done; read by Send after it
}

// finish hands the message its result; exactly one party calls it, the one
// that decided the message's fate. A chan struct{} is one allocation where a
// buffered chan Result is two (its buffer holds pointers).
func (m *Message) finish(r Result) {
	m.result = r
	m.done <- struct{}{}
}

// Result is what became of a message: a MessageId, or an error (ErrClosed,
// ErrCancelled, ErrLate, ErrFull, ErrUnreported, *CallError or *EntryError).
type Result struct {
	MessageID string
	Err       error
	// Attempts is how many calls carried the message.
	Attempts int
}

// Stats are counters since New. They only grow.
type Stats struct {
	Calls, CallErrors      uint64
	Entries, EntryFailures uint64
	Retries                uint64 // entries sent again after a transient failure
	EntriesPerCall         [MaxEntries + 1]uint64
	Waiting                int64 // messages admitted and not yet claimed by a call (a gauge)
}

// Sender batches messages to one queue. Create it with New.
type Sender struct {
	client   Client
	opts     Options
	queueURL *string // opts.QueueURL, shared by every call
	batcher  *batch.Batcher[*Message]
	waiting  atomic.Int64
	late     lateTimer

	calls, callErrors, entries, entryFailures, retries atomic.Uint64
	entriesPerCall                                     [MaxEntries + 1]atomic.Uint64
}

// New returns a Sender for opts.QueueURL.
func New(client Client, o Options) *Sender {
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 10 * time.Second
	}
	if o.Attempts <= 0 {
		o.Attempts = 1
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 100 * time.Millisecond
	}
	if o.Clock == nil {
		o.Clock = clock.Real
	}
	s := &Sender{client: client, opts: o, queueURL: aws.String(o.QueueURL)}
	s.late.at.Store(math.MaxInt64)
	s.batcher = batch.New(context.Background(), batch.Options{
		MaxItems:    MaxEntries,
		MaxBytes:    MaxBytes,
		Linger:      o.Linger,
		MaxInFlight: o.MaxInFlight,
		Clock:       o.Clock,
	}, func(m *Message) int { return m.Size }, s.flush)
	return s
}

// Stats returns the counters since New.
func (s *Sender) Stats() Stats {
	st := Stats{
		Calls: s.calls.Load(), CallErrors: s.callErrors.Load(),
		Entries: s.entries.Load(), EntryFailures: s.entryFailures.Load(),
		Retries: s.retries.Load(), Waiting: s.waiting.Load(),
	}
	for i := range st.EntriesPerCall {
		st.EntriesPerCall[i] = s.entriesPerCall[i].Load()
	}
	return st
}

// Close sends what is pending and waits for every call. If ctx ends first,
// the calls still running are cancelled, the messages not yet sent get
// ErrClosed, and Close returns ctx.Err(). Close may be called more than once.
func (s *Sender) Close(ctx context.Context) error {
	err := s.batcher.Close(ctx) // send-by times still hold while it waits
	l := &s.late
	l.mu.Lock()
	l.closed = true
	l.stopLocked()
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

// Send sends m and waits for its result. The message is not sent if ctx
// ends (ErrCancelled) or sendBy passes (ErrLate; zero: no send-by time)
// before a call carries it; once one does, Send waits for what SQS said.
func (s *Sender) Send(ctx context.Context, m *Message, sendBy time.Time) Result {
	m.ctx, m.sendBy = ctx, sendBy
	if !sendBy.IsZero() && !sendBy.After(s.opts.Clock.Now()) {
		return Result{Err: ErrLate}
	}
	if n := s.waiting.Add(1); s.opts.MaxWaiting > 0 && n > int64(s.opts.MaxWaiting) {
		s.waiting.Add(-1)
		return Result{Err: ErrFull}
	}
	m.done = make(chan struct{}, 1)
	if err := s.batcher.Add(m); err != nil { // only batch.ErrClosed
		s.waiting.Add(-1)
		return Result{Err: ErrClosed}
	}
	if !sendBy.IsZero() {
		s.armLate(sendBy) // after Add: a sweep that has begun will see m, or arm for it
	}
	if s.opts.OnQueued != nil {
		s.opts.OnQueued()
	}
	select {
	case <-m.done: // from a flush, or ErrLate from sweepLate
		return m.result
	case <-ctx.Done():
		if s.leave(m, stateAbandoned) {
			return Result{Err: ErrCancelled}
		}
	}
	// A flush has it: SQS may store it, so wait for the truth.
	<-m.done
	return m.result
}

// Full reports whether MaxWaiting messages wait, for a caller that wants to
// refuse work before preparing a message.
func (s *Sender) Full() bool {
	return s.opts.MaxWaiting > 0 && s.waiting.Load() >= int64(s.opts.MaxWaiting)
}

// leave moves a queued message to state; only one caller wins, and the
// winner takes it out of the waiting count.
func (s *Sender) leave(m *Message, state int32) bool {
	if m.state.CompareAndSwap(stateQueued, state) {
		s.waiting.Add(-1)
		return true
	}
	return false
}

// lateTimer is the Sender's one timer for send-by times: it fires at the
// earliest send-by time among the messages that wait for a call (or at an
// earlier one, of a message claimed since), and sweepLate then gives those
// whose time has come ErrLate and arms it for the next. A timer per message
// cost more than the rest of Send.
type lateTimer struct {
	at     atomic.Int64 // when the armed timer fires (UnixNano); MaxInt64: none armed
	mu     sync.Mutex   // taken before the batcher's lock, never after it
	timer  clock.Timer
	gen    uint64 // tells a stale callback from the armed timer's
	closed bool
	wg     sync.WaitGroup // callbacks armed and not stopped
}

// armLate makes sure a sweep runs at t or before it.
func (s *Sender) armLate(t time.Time) {
	l := &s.late
	if t.UnixNano() >= l.at.Load() {
		return // the armed sweep comes first and will see the message
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed && t.UnixNano() < l.at.Load() {
		s.armLocked(t)
	}
}

func (s *Sender) armLocked(t time.Time) {
	l := &s.late
	l.stopLocked()
	l.gen++
	gen := l.gen
	l.at.Store(t.UnixNano())
	l.wg.Add(1)
	l.timer = s.opts.Clock.AfterFunc(t.Sub(s.opts.Clock.Now()), func() { s.sweepLate(gen) })
}

func (l *lateTimer) stopLocked() {
	if l.timer != nil && l.timer.Stop() {
		l.wg.Done()
	}
	l.timer = nil
	l.at.Store(math.MaxInt64)
}

// sweepLate gives ErrLate to the waiting messages whose send-by time has
// come and arms the timer for the earliest of the others.
func (s *Sender) sweepLate(gen uint64) {
	l := &s.late
	defer l.wg.Done()
	l.mu.Lock()
	defer l.mu.Unlock()
	if gen != l.gen || l.closed {
		return // stopped or replaced after it had fired
	}
	// Disarmed before the walk: a Send that then finds no sweep armed arms
	// one itself, and one that still saw this one had added its message.
	l.timer = nil
	l.at.Store(math.MaxInt64)
	now := s.opts.Clock.Now()
	var next time.Time
	s.batcher.Waiting(func(m *Message) {
		switch {
		case m.sendBy.IsZero() || m.state.Load() != stateQueued:
		case !m.sendBy.After(now):
			if s.leave(m, stateAbandoned) {
				m.finish(Result{Err: ErrLate}) // buffered: never blocks
			}
		case next.IsZero() || m.sendBy.Before(next):
			next = m.sendBy
		}
	})
	if !next.IsZero() {
		s.armLocked(next)
	}
}

// entryIDs are the batch entry ids, distinct within a call as SQS demands.
// Calls share them: neither the SDK nor SQS changes a request's strings.
var entryIDs = func() (ids [MaxEntries]*string) {
	for i := range ids {
		ids[i] = aws.String(strconv.Itoa(i))
	}
	return ids
}()

// flush sends one batch and hands every message its own result. The batcher
// calls it exactly once per message, with a cancelled ctx if Close gave up.
func (s *Sender) flush(ctx context.Context, msgs []*Message) {
	live := make([]*Message, 0, MaxEntries)
	now := s.opts.Clock.Now()
	for _, m := range msgs {
		switch {
		case m.ctx.Err() != nil:
			if s.leave(m, stateAbandoned) {
				m.finish(Result{Err: ErrCancelled}) // the caller left; do not send
			}
		case !m.sendBy.IsZero() && now.After(m.sendBy):
			if s.leave(m, stateAbandoned) {
				m.finish(Result{Err: ErrLate})
			}
		case s.leave(m, stateSending):
			live = append(live, m)
		}
	}
	if ctx.Err() != nil { // Close gave up before this batch started
		for _, m := range live {
			m.finish(Result{Err: ErrClosed})
		}
		return
	}
	wait := backoff.Policy{Base: s.opts.RetryDelay, Max: s.opts.SendTimeout, Equal: true, Jitter: s.opts.Jitter}
	for attempt := 1; len(live) > 0; attempt++ {
		retry := s.call(ctx, live, attempt)
		if len(retry) == 0 {
			return
		}
		s.retries.Add(uint64(len(retry)))
		if !s.sleep(ctx, wait.Delay(attempt-1)) {
			for _, m := range retry {
				m.finish(Result{Err: ErrClosed, Attempts: attempt})
			}
			return
		}
		live = retry
	}
}

// sleep waits d, or until ctx ends (false).
func (s *Sender) sleep(ctx context.Context, d time.Duration) bool {
	t := s.opts.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	}
}

// call makes one SendMessageBatch call for live and hands out the results,
// except for the entries that failed transiently and may be sent again,
// which it returns.
func (s *Sender) call(ctx context.Context, live []*Message, attempt int) (retry []*Message) {
	entries := make([]types.SendMessageBatchRequestEntry, len(live))
	for i, m := range live {
		entries[i] = m.Entry
		entries[i].Id = entryIDs[i]
	}
	sendCtx, cancel := context.WithTimeout(ctx, s.opts.SendTimeout)
	out, err := s.client.SendMessageBatch(sendCtx, &sqs.SendMessageBatchInput{QueueUrl: s.queueURL, Entries: entries})
	cancel()
	s.calls.Add(1)
	s.entries.Add(uint64(len(entries)))
	s.entriesPerCall[len(entries)].Add(1)
	if err != nil {
		s.callErrors.Add(1)
		cerr := &CallError{Entries: len(entries), Err: err}
		s.report("SendMessageBatch failed", cerr)
		for _, m := range live {
			m.finish(Result{Err: cerr, Attempts: attempt})
		}
		return nil
	}
	var results [MaxEntries]Result
	var seen [MaxEntries]bool
	index := func(id *string) (int, bool) {
		i, err := strconv.Atoi(aws.ToString(id))
		if err != nil || i < 0 || i >= len(live) || seen[i] {
			return 0, false
		}
		seen[i] = true
		return i, true
	}
	for _, r := range out.Successful {
		if i, ok := index(r.Id); ok && aws.ToString(r.MessageId) != "" {
			results[i].MessageID = *r.MessageId
		}
	}
	for _, f := range out.Failed {
		if i, ok := index(f.Id); ok {
			results[i].Err = &EntryError{Code: NormalizeCode(aws.ToString(f.Code)), Message: aws.ToString(f.Message), SenderFault: f.SenderFault}
		}
	}
	for i, m := range live {
		r := results[i]
		r.Attempts = attempt
		if r.MessageID == "" && r.Err == nil {
			r.Err = ErrUnreported
		}
		if r.Err != nil {
			s.entryFailures.Add(1)
			var ee *EntryError
			if errors.As(r.Err, &ee) && ee.Transient() && attempt < s.opts.Attempts && ctx.Err() == nil {
				retry = append(retry, m)
				continue
			}
			s.report("SendMessageBatch entry failed", r.Err)
		}
		m.finish(r)
	}
	return retry
}

func (s *Sender) report(msg string, err error) {
	if s.opts.OnError != nil {
		s.opts.OnError(msg, err)
	}
}
