package sqspool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/sqsfake"
)

// The invariants a simulated run checks. Each violation names one.
const (
	invPrematureDelete = "premature-delete"        // deleted before a handler returned nil/NoRetry (or DeleteMalformed applied)
	invSecondRun       = "second-run"              // handled again after success, with no failure that excuses it
	invUnreported      = "lost-unreported"         // finished, not deleted, and no failure reported
	invShutdownNil     = "shutdown-nil-after-loss" // finished messages not deleted at stop, and the stop returned nil
	invRetryOverridden = "retry-delay-overridden"  // the last visibility change is not the one the outcome asked for
	invVisibleRunning  = "visible-while-running"   // a running message was made visible
	invHeartbeatPast   = "heartbeat-past-deadline" // extended after its handler's deadline
	invPastCap         = "visibility-past-cap"     // a visibility change SQS refuses: past 12 hours
	invDeadlineShort   = "deadline-short"          // a handler got less than WithHandlerTimeout from its receive
	invStall           = "stall"                   // visible messages, free workers, and no receive
	invShutdownHang    = "shutdown-hang"           // Shutdown or Wait did not return within its bound
	invGoroutineLeft   = "goroutine-left"          // goroutines outlived Wait
	invStats           = "stats-mismatch"          // Stats disagree with what SQS and the handlers saw
	invBreakerProbes   = "breaker-closed-early"    // half-open closed without Probes successes of its own probes
)

type simViolation struct {
	kind, detail string
}

type simDelivery struct {
	handle   string
	count    int
	at       time.Time // when SQS handed it out
	returned bool      // the reply reached the pool
	retAt    time.Time
	told     int // the receive count the pool was told
}

type simRunRec struct {
	idx             int
	probe           int // the half-open period it started in, if any (counted from 1)
	start, end      time.Time
	deadline        time.Time
	ended           bool
	outcome         string
	wantDelay       time.Duration // when set
	asksDelay       bool
	receivedAt      time.Time // Message.ReceivedAt
	cappedByHorizon bool
}

type simChangeRec struct {
	timeout       int32
	sent, applied time.Time
}

type simStaleReply struct {
	at         time.Time
	knownNewer bool // the pool had the newer handle before this reply came
	refused    bool
}

type simReportRec struct {
	at        time.Time
	api, code string
}

type simMsgState struct {
	k          int
	id         string
	deliveries []*simDelivery
	deleted    bool
	deletedAt  time.Time
	runs       []*simRunRec
	decodes    int
	attemptEnd time.Time // when the last decode or run ended
	episode    time.Time // when the attempt before the current one ended: the current record is younger
	lastDone   time.Time // when a run last asked for a delete
	doneEver   bool
	// malformedPending: a batch pool on a FIFO queue decoded the message,
	// which failed, and has not yet settled it (see simOracle.decodeEnded).
	malformedPending bool
	changes          []simChangeRec
	stale            []simStaleReply
	reports          []simReportRec
	entries          map[string]int // batch entries by API
}

// deliveredAgainBy reports whether a delivery newer than handle's was handed
// out by t. SQS (the fake) refuses a visibility change under a handle that
// is no longer the newest, so a change applied under handle came before
// that delivery: a run that started after it runs the newer delivery, which
// the change did not touch. The change's answer reaches the oracle only
// after the fake let go of the queue, so it can come after such a run has
// started (seed 1529).
func (m *simMsgState) deliveredAgainBy(handle string, t time.Time) bool {
	i := slices.IndexFunc(m.deliveries, func(d *simDelivery) bool { return d.handle == handle })
	return i >= 0 && slices.ContainsFunc(m.deliveries[i+1:], func(d *simDelivery) bool { return !d.at.After(t) })
}

func (m *simMsgState) running() *simRunRec {
	if n := len(m.runs); n > 0 && !m.runs[n-1].ended {
		return m.runs[n-1]
	}
	return nil
}

// simOracle records what SQS, the handlers and the pool's hooks saw during
// one run, and checks the invariants against it.
type simOracle struct {
	sc      *simScenario
	verbose bool
	t0      time.Time
	tick    time.Duration // the pool's watchdog tick
	hdl     time.Duration // the handler timeout in force

	mu        sync.Mutex
	byK       []*simMsgState
	byHandle  map[string]*simMsgState
	calls     map[string]int
	recvCalls int
	recvOpen  int
	running   int
	stopBegun time.Time
	brkState  BreakerState
	halfOpens int         // half-open periods so far
	probeOK   map[int]int // successes of the runs started in each half-open period

	returnedCount, handlerOK, handlerFailed, handlerPanics, decodeFailures, noRetries, retried int
	// maybeRetried counts plain failures without a backoff on a FIFO queue
	// with heartbeat: the pool retries such a message in place (and counts
	// it Retried) unless it had its local attempts or the stop had begun,
	// which the run can only bound.
	maybeRetried int
	deleteOK     int

	announced  atomic.Bool
	shutdowns  []*simShutdown
	violations []simViolation
	seen       map[string]bool
	log        []string
}

func newSimOracle(sc *simScenario, verbose bool) *simOracle {
	o := &simOracle{sc: sc, verbose: verbose, t0: time.Now(), byHandle: map[string]*simMsgState{}, calls: map[string]int{}, seen: map[string]bool{}, probeOK: map[int]int{}}
	for _, s := range sc.sends {
		o.byK = append(o.byK, &simMsgState{k: s.k, entries: map[string]int{}})
	}
	o.hdl = sc.handlerTimeout
	if o.hdl == 0 {
		if sc.heartbeat {
			o.hdl = min(10*sc.visibility, maxVisibility-time.Minute)
		} else {
			o.hdl = sc.visibility - min(sc.visibility/10, 5*time.Second)
		}
	}
	o.tick = watchTick(sc.visibility, o.hdl)
	return o
}

func (o *simOracle) now() time.Duration { return time.Since(o.t0) }

func (o *simOracle) logf(format string, args ...any) {
	if o.verbose {
		o.log = append(o.log, fmt.Sprintf("%12v  ", o.now())+fmt.Sprintf(format, args...))
	}
}

// violate records a violation; each kind is reported once per message.
func (o *simOracle) violate(kind, key, format string, args ...any) {
	if o.seen[kind+"/"+key] || simSkipped(kind) {
		return
	}
	o.seen[kind+"/"+key] = true
	d := fmt.Sprintf("at %v: ", o.now()) + fmt.Sprintf(format, args...)
	o.violations = append(o.violations, simViolation{kind, d})
	o.logf("VIOLATION %s: %s", kind, d)
}

func (o *simOracle) callStart(op string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls[op]++
	if op == sqsfake.OpReceiveMessage {
		o.recvCalls++
		o.recvOpen++
	}
	return o.calls[op]
}

func (o *simOracle) receiveEnded() {
	o.mu.Lock()
	o.recvOpen--
	o.mu.Unlock()
}

func (o *simOracle) delivered(id, handle string, attrs map[string]string, body string) (key, nth uint64) {
	k, _ := parseSimBody(body)
	count, _ := strconv.Atoi(attrs[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.byK[k]
	m.id = id
	m.deliveries = append(m.deliveries, &simDelivery{handle: handle, count: count, at: time.Now()})
	o.byHandle[handle] = m
	o.logf("msg %d delivered #%d (count %d) %s", k, len(m.deliveries), count, short(handle))
	return uint64(k), uint64(len(m.deliveries))
}

func (o *simOracle) deliveries(k int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.byK[k].deliveries)
}

// entryKeys names each entry of a batch call by its message and how many
// entries of this API that message has had, so that a message's faults do
// not depend on which batch it rode in or in which place.
func (o *simOracle) entryKeys(op string, n int, handle func(i int) string) []uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	keys := make([]uint64, n)
	for i := range keys {
		m := o.byHandle[handle(i)]
		if m == nil {
			keys[i] = 1 << 40
			continue
		}
		m.entries[op]++
		keys[i] = uint64(m.k)<<20 | uint64(m.entries[op])
	}
	return keys
}

func short(h string) string {
	if len(h) > 8 {
		return h[len(h)-8:]
	}
	return h
}

// previousCount is the receive count of the delivery before the newest.
func (o *simOracle) previousCount(id string) (int, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range o.byK {
		if m.id == id && len(m.deliveries) >= 2 {
			return m.deliveries[len(m.deliveries)-2].count, true
		}
	}
	return 0, false
}

func (o *simOracle) returned(handle string, count int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.byHandle[handle]
	for _, d := range m.deliveries {
		if d.handle == handle {
			d.returned, d.retAt, d.told = true, time.Now(), count
		}
	}
	o.returnedCount++
	o.logf("msg %d returned to the pool %s", m.k, short(handle))
}

func (m *simMsgState) newest() *simDelivery {
	if len(m.deliveries) == 0 {
		return nil
	}
	return m.deliveries[len(m.deliveries)-1]
}

// stale reports whether handle is no longer its message's newest.
func (o *simOracle) stale(handle string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.byHandle[handle]
	return m != nil && !m.deleted && m.newest().handle != handle
}

// deletesApplied is told which entries SQS accepted; those with the newest
// handle deleted their message.
func (o *simOracle) deletesApplied(handles []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, h := range handles {
		m := o.byHandle[h]
		if m == nil || m.deleted || m.newest().handle != h {
			continue
		}
		m.deleted, m.deletedAt = true, time.Now()
		o.logf("msg %d DELETED", m.k)
		if !m.doneEver && !m.malformedPending {
			o.violate(invPrematureDelete, strconv.Itoa(m.k), "message %d deleted, but no handler returned nil or NoRetry for it (and DeleteMalformed did not apply)", m.k)
		}
	}
}

// deleteReplies is told, as a reply reaches the pool, which of its entries
// used a stale handle: accepted without effect, or refused.
func (o *simOracle) deleteReplies(applied, refused []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	note := func(h string, ref bool) {
		m := o.byHandle[h]
		if m == nil {
			return
		}
		nd := m.newest()
		if m.deleted || nd.handle == h {
			return
		}
		// The pool knew the newer handle if it reached the pool before
		// this reply, and after the record the delete came from was made
		// (an earlier record is forgotten, and its handles with it).
		known := nd.returned && nd.retAt.Before(now) && nd.retAt.After(m.episode)
		for _, d := range m.deliveries {
			// ApproximateReceiveCount is approximate: an older delivery
			// that reached the pool, before or after the newest, with a
			// count as high leaves the pool no way to tell the newest
			// (the pool may settle ties either way).
			if d != nd && d.returned && d.retAt.Before(now) && d.retAt.After(m.episode) && d.told >= nd.told {
				known = false
			}
		}
		m.stale = append(m.stale, simStaleReply{at: now, knownNewer: known, refused: ref})
		o.logf("msg %d stale delete reply (refused %v, pool knew the newer handle %v)", m.k, ref, known)
	}
	for _, h := range applied {
		note(h, false)
	}
	for _, h := range refused {
		note(h, true)
	}
}

func (o *simOracle) deletesConfirmed(n int) {
	o.mu.Lock()
	o.deleteOK += n
	o.mu.Unlock()
}

// changesSent checks extensions as they are sent: none may be sent for a
// handler past its deadline.
func (o *simOracle) changesSent(entries []types.ChangeMessageVisibilityBatchRequestEntry, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	// An extension queued at the last tick before the deadline may be sent
	// a linger later, and again on every attempt after a failure. So may one
	// queued while the message waited for this run, under the deadline its
	// next attempt had then: a run in a batch ends at the batch's earliest
	// deadline, which can be long past when the run begins (seed 738445: a
	// FIFO message held behind its group). Such an extension is judged by
	// the run's start.
	slack := o.tick + o.sc.linger + o.slack()
	for _, e := range entries {
		m := o.byHandle[*e.ReceiptHandle]
		if m == nil {
			continue
		}
		o.logf("msg %d visibility change sent: %ds", m.k, e.VisibilityTimeout)
		if r := m.running(); r != nil && e.VisibilityTimeout > 0 && now.After(later(r.deadline, r.start).Add(slack)) {
			o.violate(invHeartbeatPast, strconv.Itoa(m.k), "message %d extended by %ds at %v, though its handler's deadline was %v",
				m.k, e.VisibilityTimeout, now.Sub(o.t0), r.deadline.Sub(o.t0))
		}
	}
}

func (o *simOracle) changeApplied(handle string, timeout int32, sent time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.byHandle[handle]
	if m == nil {
		return
	}
	now := time.Now()
	m.changes = append(m.changes, simChangeRec{timeout: timeout, sent: sent, applied: now})
	o.logf("msg %d visibility %ds APPLIED (sent at %v)", m.k, timeout, sent.Sub(o.t0))
	if r := m.running(); r != nil && timeout == 0 && !m.deliveredAgainBy(handle, r.start) {
		o.violate(invVisibleRunning, strconv.Itoa(m.k), "message %d made visible (timeout 0) while its handler (run %d) runs", m.k, r.idx)
	}
}

func (o *simOracle) changeRefused(handle string, timeout int32, code, msg string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.byHandle[handle]
	if m == nil {
		return
	}
	o.logf("msg %d visibility %ds refused: %s %s", m.k, timeout, code, msg)
	if code == sqsfake.CodeInvalidParameterValue && strings.Contains(msg, "beyond the limit") {
		o.violate(invPastCap, strconv.Itoa(m.k), "message %d: visibility change of %ds refused: %s", m.k, timeout, msg)
	}
}

func (o *simOracle) decodeStart(k int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.byK[k]
	idx := m.decodes
	m.decodes++
	m.episode = m.attemptEnd
	m.malformedPending = false // a failed decode not settled was discarded
	o.logf("msg %d attempt %d begins", k, idx)
	if m.doneEver && !o.excused(m, m.lastDone, time.Now()) && !o.lateDelivery(m) {
		o.violate(invSecondRun, strconv.Itoa(k), "message %d handled again (attempt %d) after it succeeded at %v, and no failure of its delete excuses it",
			k, idx, m.lastDone.Sub(o.t0))
	}
	return idx
}

// excused reports whether something between from and to explains why a
// message that had succeeded was not deleted: a delete failure other than a
// refused stale handle, or a stale-handle reply the pool could not have
// known better about (the newer delivery had not reached it).
func (o *simOracle) excused(m *simMsgState, from, to time.Time) bool {
	for _, r := range m.reports {
		if !r.at.Before(from) && !r.at.After(to) && r.api == "DeleteMessageBatch" && r.code != "ReceiptHandleIsInvalid" {
			return true
		}
	}
	for _, s := range m.stale {
		if !s.at.Before(from) && !s.at.After(to) && !s.knownNewer {
			return true
		}
	}
	return false
}

// lateDelivery reports whether the delivery an attempt works on left SQS
// by the instant of the message's last success and reached the pool after
// its record was gone: a late duplicate, which only a memory of deleted
// messages could drop.
func (o *simOracle) lateDelivery(m *simMsgState) bool {
	for _, d := range m.deliveries {
		if d.returned && !d.retAt.Before(m.episode) && !d.at.After(m.lastDone) && d.retAt.After(m.lastDone) {
			return true
		}
	}
	return false
}

func (o *simOracle) decodeEnded(k int, failed bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.byK[k]
	if failed && o.sc.fifo && o.sc.batchSize() > 0 {
		// A FIFO batch decodes a group's messages before its handler runs;
		// a failed decode behind a message that then fails is discarded
		// (the message runs again behind it), not settled. The pool's
		// report of the DecodeError says that it was settled.
		m.attemptEnd = time.Now()
		m.malformedPending = o.sc.decodePolicy == DeleteMalformed
		o.logf("msg %d does not decode", k)
		return
	}
	if failed {
		o.decodeFailures++
		m.attemptEnd = time.Now()
		if o.sc.decodePolicy == DeleteMalformed {
			m.lastDone, m.doneEver = time.Now(), true
		}
		o.logf("msg %d does not decode", k)
	}
}

func (o *simOracle) runStart(ctx context.Context, k int) *simRunRec {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.byK[k]
	dl, _ := ctx.Deadline()
	msg, _ := MessageFrom(ctx)
	r := &simRunRec{idx: len(m.runs), start: time.Now(), deadline: dl, receivedAt: msg.ReceivedAt}
	m.runs = append(m.runs, r)
	o.running++
	if o.brkState == BreakerHalfOpen {
		r.probe = o.halfOpens
	}
	o.logf("msg %d run %d starts, deadline %v", k, r.idx, dl.Sub(o.t0))
	// A batch ends at its earliest message's deadline (see batcher.call).
	if o.sc.handlerTimeout > 0 && o.sc.heartbeat && o.sc.handlerTimeout < maxVisibility-time.Hour && o.sc.batchSize() == 0 {
		// The record was made by a delivery that reached the pool after
		// the last attempt ended; the earliest such is a lower bound.
		var first time.Time
		for _, d := range m.deliveries {
			if d.returned && !d.retAt.Before(m.attemptEnd) && (first.IsZero() || d.retAt.Before(first)) {
				first = d.retAt
			}
		}
		if want := first.Add(o.sc.handlerTimeout - time.Millisecond); !first.IsZero() && dl.Before(want) {
			o.violate(invDeadlineShort, strconv.Itoa(k), "message %d run %d has deadline %v, less than WithHandlerTimeout(%v) after its receive reached the pool at %v",
				k, r.idx, dl.Sub(o.t0), o.sc.handlerTimeout, first.Sub(o.t0))
		}
	}
	return r
}

func (o *simOracle) runEnded(k int, r *simRunRec, err error, panicked bool, receiveCount int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.byK[k]
	now := time.Now()
	r.end, r.ended = now, true
	m.attemptEnd = now
	o.running--
	delay, asksDelay := RetryDelay(err)
	switch {
	case err == nil:
		r.outcome = "ok"
		o.handlerOK++
		m.lastDone, m.doneEver = now, true
		o.probeOK[r.probe]++
	case errors.Is(err, ErrNoRetry):
		r.outcome = "no-retry"
		o.handlerFailed++
		o.noRetries++
		m.lastDone, m.doneEver = now, true
		o.probeOK[r.probe]++ // not a failure of the downstream
	case asksDelay:
		r.outcome = "retry-after"
		o.handlerFailed++
		o.retried++
		r.asksDelay, r.wantDelay = true, max(delay, 0)
	default:
		r.outcome = "failed"
		o.handlerFailed++
		if o.sc.backoff {
			o.retried++
			r.asksDelay, r.wantDelay = true, simRetryBackoff(max(receiveCount, 1))
		} else if o.sc.fifo && o.sc.heartbeat {
			o.maybeRetried++
		}
	}
	if panicked {
		r.outcome = "panic"
		o.handlerPanics++
	}
	// Near the 12-hour cap the pool may shorten a delay.
	r.cappedByHorizon = now.Sub(r.receivedAt)+r.wantDelay > maxVisibility-time.Hour
	o.logf("msg %d run %d ends: %s %v", k, r.idx, r.outcome, err)
}

// breakerChanged is the breaker's OnStateChange: a half-open breaker may
// close only once Probes handlers that started while it was half-open
// succeeded; a handler that was running when it opened is no probe.
func (o *simOracle) breakerChanged(from, to BreakerState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.brkState = to
	o.logf("breaker %v -> %v", from, to)
	switch {
	case to == BreakerHalfOpen:
		o.halfOpens++
	case from == BreakerHalfOpen && to == BreakerClosed:
		if probes := o.sc.breaker.Probes; o.probeOK[o.halfOpens] < probes {
			o.violate(invBreakerProbes, strconv.Itoa(o.halfOpens), "the breaker closed after %d of its %d probes succeeded (handlers started before it opened were counted)",
				o.probeOK[o.halfOpens], probes)
		}
	}
}

// report is the pool's error hook.
func (o *simOracle) report(_ context.Context, msg *Message, err error) {
	o.mu.Lock()
	var ae *APIError
	rec := simReportRec{at: time.Now()}
	if errors.As(err, &ae) {
		rec.api, rec.code = ae.API, ae.EntryCode
	} else if strings.Contains(err.Error(), "DeleteMessageBatch") {
		rec.api = "DeleteMessageBatch" // "not sent after n attempts"
	}
	if msg != nil {
		k, _ := parseSimBody(msg.Body)
		m := o.byK[k]
		m.reports = append(m.reports, rec)
		if derr := (*DecodeError)(nil); o.sc.fifo && o.sc.batchSize() > 0 && errors.As(err, &derr) {
			o.decodeFailures++ // settled (see decodeEnded)
			if o.sc.decodePolicy == DeleteMalformed {
				m.lastDone, m.doneEver = time.Now(), true
			}
		}
		o.logf("msg %d reported: %v", k, err)
	} else {
		o.logf("reported: %v", err)
	}
	o.mu.Unlock()
	if o.sc.d.chance(o.sc.pHookPanic, "hook-panic", uint64(time.Now().UnixNano())) {
		o.announcePanic("error hook")
		panic("simulated error hook panic")
	}
}

// announcePanic names the seed before a simulated panic that, if the pool
// does not recover it, ends the process.
func (o *simOracle) announcePanic(what string) {
	if o.announced.Swap(true) {
		return
	}
	fmt.Fprintf(os.Stderr, "sqspool simulation seed %d: a simulated %s panic follows; if the process dies of it, replay with: %s\n",
		o.sc.seed, what, simReplayCommand(o.sc.seed))
}

func simReplayCommand(seed uint64) string {
	env := ""
	if s := os.Getenv("SQSPOOL_SIM_SKIP"); s != "" {
		env = "SQSPOOL_SIM_SKIP=" + s + " "
	}
	return fmt.Sprintf("%sSQSPOOL_SIM_SEED=%d go test -run 'TestSimulate$' -v .", env, seed)
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
