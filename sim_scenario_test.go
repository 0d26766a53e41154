package sqspool

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"
)

// simSkipped reports whether SQSPOOL_SIM_SKIP (a comma-separated list)
// names kind: a kind of violation not to count, "panics" for no decoder
// and error-hook panics (which end the process unless the pool recovers
// them), or "inside" for no Shutdown from inside a handler (which, if it
// hangs, leaves goroutines behind). It is for exploring, one defect at a
// time. Unset, it means simKnownOpen; set it empty to count every kind.
func simSkipped(kind string) bool {
	skip, set := os.LookupEnv("SQSPOOL_SIM_SKIP")
	if !set {
		return slices.Contains(simKnownOpen, kind)
	}
	return slices.Contains(strings.Split(skip, ","), kind)
}

// simKnownOpen are the kinds of violation the simulator still finds on
// rare schedules, not counted by default so that CI guards everything else
// while one is being fixed. None is open: CI checks every kind.
var simKnownOpen []string

// SQSPOOL_SIM_FOCUS=drain or long-haul makes every seed one of that family
// of runs (see newSimScenario), to hunt one rare defect.

// dice derives every choice of a simulated run from its seed. A choice is a
// hash of the seed, a kind and keys that name what is being decided (a
// message and its run number, a call and its number), not the next draw of
// a shared stream, so that two goroutines asking in either order get the
// same answers and a seed replays its choices exactly.
type dice struct{ seed uint64 }

func mix(h uint64) uint64 { // splitmix64's finaliser
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

func (d dice) u64(kind string, keys ...uint64) uint64 {
	h := mix(d.seed + 0x9e3779b97f4a7c15)
	for i := 0; i < len(kind); i++ {
		h = mix(h ^ uint64(kind[i]))
	}
	for _, k := range keys {
		h = mix(h ^ k ^ 0x5151)
	}
	return h
}

// chance is true with probability p.
func (d dice) chance(p float64, kind string, keys ...uint64) bool {
	return p > 0 && float64(d.u64(kind, keys...)>>11)/(1<<53) < p
}

// dur is uniform in [lo, hi), to the nanosecond, so that events rarely
// share an instant of simulated time.
func (d dice) dur(lo, hi time.Duration, kind string, keys ...uint64) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(d.u64(kind, keys...)%uint64(hi-lo))
}

// q rounds d to the scenario's grain.
func (sc *simScenario) q(d time.Duration) time.Duration {
	if sc.grain <= 0 {
		return d
	}
	return d.Round(sc.grain)
}

// The handler behaviours a run can draw.
type simBehaviour int

const (
	behOK           simBehaviour = iota // returns nil after a while
	behFail                             // returns an error
	behRetryAfter                       // returns RetryAfter(d)
	behNoRetry                          // returns NoRetry
	behPanic                            // panics
	behPastDeadline                     // ignores its context, returns after the deadline
	behBlock                            // blocks until cancelled
	numBehaviours
)

var behaviourNames = [numBehaviours]string{"ok", "fail", "retry-after", "no-retry", "panic", "past-deadline", "block"}

func (b simBehaviour) String() string { return behaviourNames[b] }

// How a run ends the pool.
type simStopKind int

const (
	stopDeadline   simStopKind = iota // Shutdown(ctx with a deadline)
	stopNoDeadline                    // Shutdown(context.Background())
	stopInside                        // a handler calls Shutdown
	stopTwice                         // two Shutdowns at once
	stopParent                        // StartPool's context is cancelled
	numStopKinds
)

var stopNames = [numStopKinds]string{"deadline", "no-deadline", "inside-handler", "twice", "parent-cancel"}

// simSend is one message the scenario sends.
type simSend struct {
	k         int
	at        time.Duration
	malformed bool
	group     string
}

// simScenario is everything a seed fixes before the run starts; the rest
// (per call, per run) is drawn from dice as the run goes.
type simScenario struct {
	seed uint64
	d    dice

	fifo           bool
	workers        int
	pollers        int // 0: the default
	maxMessages    int
	waitTime       time.Duration
	visibility     time.Duration
	handlerTimeout time.Duration // 0: derived
	heartbeat      bool
	breaker        *CircuitBreaker
	adaptive       *AdaptiveConcurrency
	decodePolicy   DecodeFailurePolicy
	backoff        bool // a deterministic retry backoff; else none
	batchAttempts  int
	linger, fill   time.Duration
	flushTimeout   time.Duration
	shutdownTO     time.Duration

	sends []simSend

	// SQS faults, per call or per entry.
	latMax                             time.Duration
	pErr, pThrottle, pLost, pEntryFail float64
	pDup, pEqualCount                  float64
	refuseStale                        bool // a stale handle's delete is refused, not a silent no-op
	pDecodePanic, pHookPanic           float64

	// Handler behaviour weights, and how long a run takes.
	weights  [numBehaviours]int
	pRespect float64 // a run returns early when its context ends
	maxRun   time.Duration
	longHaul bool // handlers run past the 12-hour visibility cap
	// grain, when set, rounds arrivals, latencies, run times and the stop
	// to its multiples, so that events share instants and goroutines race
	// within them (with no grain they rarely do, and a seed replays closer).
	grain time.Duration
	// yields is the most a handler yields the processor before it returns.
	yields     int
	stopAt     time.Duration
	stopKind   simStopKind
	stopWithin time.Duration // the Shutdown context's timeout (stopDeadline, stopTwice, stopInside)
	insideK    int
}

// simRetryBackoff is the scenario's backoff: deterministic, so that the
// checks know which delay a failure asked for.
func simRetryBackoff(receiveCount int) time.Duration {
	return time.Duration(min(receiveCount, 5)) * 1500 * time.Millisecond
}

func newSimScenario(seed uint64) *simScenario {
	r := rand.New(rand.NewPCG(seed, 0x51a5_9001))
	sc := &simScenario{seed: seed, d: dice{seed}}
	pick := func(p float64) bool { return r.Float64() < p }
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo)+1)) }

	sc.fifo = pick(0.25)
	sc.workers = 1 + r.IntN(4)
	if !sc.fifo && pick(0.3) {
		sc.pollers = 1 + r.IntN(2)
	}
	sc.maxMessages = 1 + r.IntN(10)
	sc.waitTime = []time.Duration{time.Second, 5 * time.Second, 20 * time.Second, 20 * time.Second}[r.IntN(4)]
	sc.visibility = time.Duration(10+r.IntN(50)) * time.Second
	sc.heartbeat = pick(0.8)
	if pick(0.5) {
		sc.handlerTimeout = between(3*time.Second, 40*time.Second)
		if !sc.heartbeat {
			sc.handlerTimeout = min(sc.handlerTimeout, sc.visibility/2)
		}
	}
	if pick(0.3) {
		sc.breaker = &CircuitBreaker{
			Window: 20 * time.Second, MinRequests: 2 + r.IntN(4), FailureRatio: 0.5,
			CoolDown: between(2*time.Second, 20*time.Second), Probes: 1 + r.IntN(3),
		}
	}
	if pick(0.25) {
		sc.adaptive = &AdaptiveConcurrency{Min: 1, Max: sc.workers + r.IntN(3), Interval: between(500*time.Millisecond, 3*time.Second)}
	}
	if pick(0.5) {
		sc.decodePolicy = DeleteMalformed
	}
	sc.backoff = pick(0.6)
	sc.batchAttempts = 1 + r.IntN(5)
	sc.linger = between(0, 50*time.Millisecond)
	sc.fill = between(0, 20*time.Millisecond)
	sc.flushTimeout = between(500*time.Millisecond, 5*time.Second)
	sc.shutdownTO = between(time.Second, 30*time.Second)

	sc.latMax = []time.Duration{time.Millisecond, 50 * time.Millisecond, 400 * time.Millisecond, 3 * time.Second}[r.IntN(4)]
	faulty := pick(0.7)
	if faulty {
		sc.pErr, sc.pThrottle, sc.pLost, sc.pEntryFail = r.Float64()*0.2, r.Float64()*0.15, r.Float64()*0.15, r.Float64()*0.25
	}
	if !sc.fifo {
		sc.pDup = []float64{0, 0.1, 0.4}[r.IntN(3)]
		sc.pEqualCount = []float64{0, 0, 0.5}[r.IntN(3)]
	}
	sc.refuseStale = sc.fifo || pick(0.5)
	if pick(0.1) {
		sc.pDecodePanic = 0.3
	}
	if pick(0.05) {
		sc.pHookPanic = 0.2
	}
	if simSkipped("panics") {
		sc.pDecodePanic, sc.pHookPanic = 0, 0
	}

	for b := range numBehaviours {
		sc.weights[b] = r.IntN(4)
	}
	sc.weights[behOK] += 3
	sc.pRespect = r.Float64()
	sc.maxRun = []time.Duration{100 * time.Millisecond, 2 * time.Second, 20 * time.Second}[r.IntN(3)]

	sc.grain = []time.Duration{0, 0, 0, 10 * time.Millisecond, 500 * time.Millisecond}[r.IntN(5)]
	n := 1 + r.IntN(10)
	spread := []time.Duration{0, 5 * time.Second, 40 * time.Second}[r.IntN(3)]
	malformed := []float64{0, 0, 0.1, 0.4}[r.IntN(4)]
	groups := 1 + r.IntN(3)
	for k := range n {
		s := simSend{k: k, at: sc.q(between(0, spread)), malformed: pick(malformed)}
		if sc.fifo {
			s.group = fmt.Sprintf("g%d", r.IntN(groups))
		}
		sc.sends = append(sc.sends, s)
	}

	sc.stopKind = simStopKind(r.IntN(int(numStopKinds)))
	if sc.stopKind == stopInside && simSkipped("inside") {
		sc.stopKind = stopDeadline
	}
	sc.stopWithin = between(time.Second, 40*time.Second)
	sc.insideK = r.IntN(n)
	sc.stopAt = between(0, spread+60*time.Second)
	if sc.breaker != nil {
		// Long enough for the breaker to open, cool down and, if it is
		// stuck, for the stall check to see it.
		sc.stopAt = between(2*time.Minute, 6*time.Minute)
	}

	sc.stopAt = sc.q(sc.stopAt)

	// Some runs crowd the stop: a full read-ahead behind busy workers, short
	// handlers on a coarse grain, and a stop on the same grain, so that a
	// handler often finishes in the very instant the stop gives back what
	// no worker has taken.
	sc.yields = []int{0, 0, 4, 64}[r.IntN(4)]
	if pick(0.1) || os.Getenv("SQSPOOL_SIM_FOCUS") == "drain" {
		sc.workers, sc.maxMessages, sc.adaptive, sc.breaker = 1+r.IntN(2), 10, nil, nil
		sc.grain, sc.latMax, sc.maxRun = 100*time.Millisecond, time.Millisecond, 600*time.Millisecond
		sc.yields = 1 << r.IntN(8)
		sc.weights = [numBehaviours]int{}
		sc.weights[behOK], sc.weights[behFail] = 4, 1
		sc.sends = sc.sends[:0]
		for k := range 10 {
			s := simSend{k: k}
			if sc.fifo {
				s.group = fmt.Sprintf("g%d", k%4)
			}
			sc.sends = append(sc.sends, s)
		}
		sc.insideK = r.IntN(10)
		sc.stopAt = sc.q(between(300*time.Millisecond, 3*time.Second))
	}

	// A few runs hold a message past SQS's 12-hour cap, where the heartbeat
	// can extend no further.
	if pick(0.02) || os.Getenv("SQSPOOL_SIM_FOCUS") == "long-haul" {
		sc.longHaul = true
		// One worker and full long polls: while the worker is free, the
		// pool polls every 20 s of those hours, which is most of the cost.
		sc.workers, sc.maxMessages, sc.pollers, sc.adaptive, sc.breaker = 1, 1, 0, nil, nil
		sc.waitTime = 20 * time.Second
		sc.visibility = time.Duration(30+r.IntN(90)) * time.Minute
		sc.heartbeat = true
		sc.handlerTimeout = between(11*time.Hour, 14*time.Hour)
		sc.weights = [numBehaviours]int{}
		sc.weights[behPastDeadline], sc.weights[behBlock] = 2, 1
		sc.maxRun = time.Hour
		sc.sends = sc.sends[:min(len(sc.sends), 2)]
		sc.stopAt = between(12*time.Hour+10*time.Minute, 13*time.Hour)
		sc.grain = 0
		sc.insideK = 0
	}
	return sc
}

func (sc *simScenario) String() string {
	var b strings.Builder
	kind := "standard"
	if sc.fifo {
		kind = "fifo"
	}
	fmt.Fprintf(&b, "%s queue, %d msgs, workers=%d pollers=%d max=%d wait=%v vis=%v handlerTimeout=%v heartbeat=%v",
		kind, len(sc.sends), sc.workers, sc.pollers, sc.maxMessages, sc.waitTime, sc.visibility, sc.handlerTimeout, sc.heartbeat)
	if sc.breaker != nil {
		fmt.Fprintf(&b, " breaker=%+v", *sc.breaker)
	}
	if sc.adaptive != nil {
		fmt.Fprintf(&b, " adaptive=%+v", *sc.adaptive)
	}
	fmt.Fprintf(&b, " decode=%d backoff=%v attempts=%d linger=%v fill=%v flush=%v",
		sc.decodePolicy, sc.backoff, sc.batchAttempts, sc.linger, sc.fill, sc.flushTimeout)
	if n := sc.batchSize(); n > 0 {
		fmt.Fprintf(&b, " batch=%d batchLinger=%v", n, sc.batchLinger())
	}
	fmt.Fprintf(&b, "\n  faults: lat<%v err=%.2f throttle=%.2f lost=%.2f entry=%.2f dup=%.2f equalCount=%.2f refuseStale=%v decodePanic=%.2f hookPanic=%.2f",
		sc.latMax, sc.pErr, sc.pThrottle, sc.pLost, sc.pEntryFail, sc.pDup, sc.pEqualCount, sc.refuseStale, sc.pDecodePanic, sc.pHookPanic)
	fmt.Fprintf(&b, "\n  handlers: weights=%v respectCtx=%.2f maxRun=%v longHaul=%v grain=%v", sc.weights, sc.pRespect, sc.maxRun, sc.longHaul, sc.grain)
	fmt.Fprintf(&b, "\n  stop: %s at %v (ctx timeout %v, inside k=%d, parent timeout %v)", stopNames[sc.stopKind], sc.stopAt, sc.stopWithin, sc.insideK, sc.shutdownTO)
	return b.String()
}

// behaviour draws what run number run of message k does.
func (sc *simScenario) behaviour(k, run int) (simBehaviour, time.Duration, bool) {
	total := 0
	for _, w := range sc.weights {
		total += w
	}
	x := int(sc.d.u64("behaviour", uint64(k), uint64(run)) % uint64(total))
	b := simBehaviour(0)
	for ; x >= sc.weights[b]; b++ {
		x -= sc.weights[b]
	}
	took := sc.q(sc.d.dur(0, sc.maxRun, "took", uint64(k), uint64(run)))
	return b, took, sc.d.chance(sc.pRespect, "respect", uint64(k), uint64(run))
}
