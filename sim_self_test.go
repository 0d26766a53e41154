package sqspool

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The simulator's own rules, checked on hand-made histories: a simulator
// whose oracle is wrong finds nothing, or finds what is not there.

func TestSimDiceAnswersByKeyNotByOrder(t *testing.T) {
	d := dice{42}
	a1, b1 := d.u64("latency", 1, 2), d.u64("latency", 3, 4)
	b2, a2 := d.u64("latency", 3, 4), d.u64("latency", 1, 2)
	assert.Equal(t, a1, a2)
	assert.Equal(t, b1, b2)
	assert.NotEqual(t, a1, b1)
	assert.NotEqual(t, d.u64("latency", 1, 2), dice{43}.u64("latency", 1, 2), "another seed, another answer")
	assert.Equal(t, newSimScenario(7).String(), newSimScenario(7).String(), "a seed fixes its scenario")
}

func TestSimOracleFlagsADeleteBeforeSuccess(t *testing.T) {
	t.Setenv("SQSPOOL_SIM_SKIP", "") // every invariant
	inBubble(t, func(t *testing.T) {
		o := newSimOracle(&simScenario{sends: []simSend{{k: 0}}, visibility: 30 * time.Second, heartbeat: true}, false)
		o.delivered("m0", "h1", map[string]string{"ApproximateReceiveCount": "1"}, `{"k":0}`)
		o.returned("h1", 1)
		o.deletesApplied([]string{"h1"})
		require.Len(t, o.violations, 1)
		assert.Equal(t, invPrematureDelete, o.violations[0].kind)
	})
}

func TestSimOracleTellsWhatThePoolCouldKnow(t *testing.T) {
	for _, tc := range []struct {
		name       string
		firstCount int // the count the pool was told with the older delivery
		olderFirst bool
		knownNewer bool
	}{
		{"newer arrives after the older, higher count", 1, true, true},
		{"newer arrives after the older, equal count", 2, true, false},
		{"newer arrives first, the older after it with a lower count", 1, false, true},
		{"newer arrives first, the older after it with an equal count", 2, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				o := newSimOracle(&simScenario{sends: []simSend{{k: 0}}, visibility: 30 * time.Second}, false)
				o.delivered("m0", "h1", map[string]string{"ApproximateReceiveCount": "1"}, `{"k":0}`)
				o.delivered("m0", "h2", map[string]string{"ApproximateReceiveCount": "2"}, `{"k":0}`)
				time.Sleep(time.Millisecond) // the record is made after the last attempt ended
				if tc.olderFirst {
					o.returned("h1", tc.firstCount)
					time.Sleep(time.Millisecond)
					o.returned("h2", 2)
				} else {
					o.returned("h2", 2)
					time.Sleep(time.Millisecond)
					o.returned("h1", tc.firstCount)
				}
				time.Sleep(time.Millisecond)
				o.deleteReplies([]string{"h1"}, nil)
				require.Len(t, o.byK[0].stale, 1)
				assert.Equal(t, tc.knownNewer, o.byK[0].stale[0].knownNewer)
			})
		})
	}
}

func TestSimOracleExcusesASecondRunOnlyForAFailureThePoolReported(t *testing.T) {
	t.Setenv("SQSPOOL_SIM_SKIP", "") // every invariant
	inBubble(t, func(t *testing.T) {
		o := newSimOracle(&simScenario{sends: []simSend{{k: 0}, {k: 1}}, visibility: 30 * time.Second}, false)
		for k := range 2 {
			m := o.byK[k]
			m.doneEver, m.lastDone = true, time.Now()
		}
		time.Sleep(time.Second)
		o.byK[1].reports = append(o.byK[1].reports, simReportRec{at: time.Now(), api: "DeleteMessageBatch", code: "InternalError"})
		o.byK[0].reports = append(o.byK[0].reports, simReportRec{at: time.Now(), api: "DeleteMessageBatch", code: "ReceiptHandleIsInvalid"})
		o.byK[0].stale = append(o.byK[0].stale, simStaleReply{at: time.Now(), knownNewer: true, refused: true})
		time.Sleep(time.Second)
		o.decodeStart(0)
		o.decodeStart(1)
		require.Len(t, o.violations, 1)
		assert.Equal(t, invSecondRun, o.violations[0].kind)
		assert.Contains(t, o.violations[0].detail, "message 0 ")
	})
}

// A give-back applied under an older handle is not a running message made
// visible when the run is of a newer delivery: SQS refuses a change under a
// handle that is no longer the newest, so the change came first, even when
// its answer reaches the oracle after the newer run has started (seed
// 1529). Under the handle the run has, it is one.
func TestSimOracleTiesAGiveBackToItsDelivery(t *testing.T) {
	t.Setenv("SQSPOOL_SIM_SKIP", "") // every invariant
	for _, tc := range []struct {
		name      string
		redeliver bool
		violation bool
	}{
		{"the run is of a newer delivery", true, false},
		{"the run is of the delivery given back", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				o := newSimOracle(&simScenario{sends: []simSend{{k: 0}}, visibility: 30 * time.Second}, false)
				o.delivered("m0", "h1", map[string]string{"ApproximateReceiveCount": "1"}, `{"k":0}`)
				o.returned("h1", 1)
				time.Sleep(time.Millisecond)
				if tc.redeliver {
					o.delivered("m0", "h2", map[string]string{"ApproximateReceiveCount": "2"}, `{"k":0}`)
					o.returned("h2", 2)
				}
				m := o.byK[0]
				m.runs = append(m.runs, &simRunRec{start: time.Now(), deadline: time.Now().Add(time.Minute)})
				o.changeApplied("h1", 0, time.Now())
				assertViolations(t, o, tc.violation, invVisibleRunning)
			})
		})
	}
}

// TestSimOracleJudgesAnExtensionQueuedBeforeARunByItsStart: an extension
// that reaches SQS just after a run began, when the run's deadline (a
// batch's earliest) was already past, was queued before the run and is not
// a heartbeat past the deadline; one sent later than the slack after the
// start is.
func TestSimOracleJudgesAnExtensionQueuedBeforeARunByItsStart(t *testing.T) {
	t.Setenv("SQSPOOL_SIM_SKIP", "") // every invariant
	for _, tc := range []struct {
		name      string
		sentAfter time.Duration // after the run's start
		violation bool
	}{
		{"sent just after the run began", time.Millisecond, false},
		{"sent long after the run began", time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				o := newSimOracle(&simScenario{sends: []simSend{{k: 0}}, visibility: 30 * time.Second, heartbeat: true, handlerTimeout: 5 * time.Second}, false)
				o.delivered("m0", "h1", map[string]string{"ApproximateReceiveCount": "1"}, `{"k":0}`)
				o.returned("h1", 1)
				time.Sleep(time.Minute)
				m := o.byK[0]
				m.runs = append(m.runs, &simRunRec{start: time.Now(), deadline: time.Now().Add(-50 * time.Second)})
				time.Sleep(tc.sentAfter)
				o.changesSent([]types.ChangeMessageVisibilityBatchRequestEntry{{ReceiptHandle: aws.String("h1"), VisibilityTimeout: 30}}, time.Now())
				assertViolations(t, o, tc.violation, invHeartbeatPast)
			})
		})
	}
}

// assertViolations checks that o found exactly one violation, of kind, when
// want, and none otherwise.
func assertViolations(t *testing.T, o *simOracle, want bool, kind string) {
	t.Helper()
	kinds := make([]string, 0, len(o.violations))
	for _, v := range o.violations {
		kinds = append(kinds, v.kind)
	}
	if want {
		assert.Equal(t, []string{kind}, kinds)
	} else {
		assert.Empty(t, kinds)
	}
}
