package sqspool

// The deterministic simulation of issue 11: a seeded schedule explorer over
// the real pool, the in-memory fake and the fake clock of testing/synctest.
// One seed fixes every choice the world makes (arrivals, duplicate
// deliveries and their receive counts, each call's latency and faults,
// each handler's outcome, decoder panics, the options, when and how the
// pool is stopped); after each run the invariants in sim_oracle_test.go
// are checked. Time only moves when every goroutine of the run is blocked,
// and each choice is keyed by what it decides rather than drawn in call
// order, so a seed replays its choices exactly; the pool's own backoff
// jitter (internal/backoff) is drawn from a source seeded with the seed.
// What does not replay is the Go scheduler's order among goroutines that
// run in the same instant (and so the order in which they draw jitter): a
// replay can take another turn there, hence SQSPOOL_SIM_REPEAT.
//
//	go test -run 'TestSimulate$' .                        # the default seeds (fewer with -short or -race)
//	SQSPOOL_SIM_SEEDS=1000000 go test -run 'TestSimulate$' -timeout 0 .
//	SQSPOOL_SIM_SEED=123 go test -run 'TestSimulate$' -v . # one seed, with its event log
//	SQSPOOL_SIM_REPEAT=20 ...   # with SQSPOOL_SIM_SEED: replay until it fails
//	SQSPOOL_SIM_START=5001 ...  # seeds from 5001 on
//	SQSPOOL_SIM_CLASSIFY=1 ...  # run every seed; count violations by kind
//	SQSPOOL_SIM_SKIP=panics,second-run ...  # leave out kinds (see simSkipped)
//	SQSPOOL_SIM_FOCUS=drain ... # every seed from one family of runs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqspool/sqspool/internal/backoff"
	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/sqsfake"
)

// simDefaultSeeds is how many seeds a plain go test runs (about 10 s).
const simDefaultSeeds = 10_000

// simRaceSeeds is the default under -race. The race detector's runtime
// (ThreadSanitizer, as Go 1.26 ships it) can crash inside synctest bubbles
// after enough of them: a SIGSEGV in __tsan::SlotLock under
// runtime.(*timer).maybeRunChan once in a CI run of 10,000 seeds (at about
// seed 2,400), and StackDepot failures after a few hundred replays of one
// seed. So -race runs a few seeds, which still hunt data races under
// generated schedules, and scripts/test runs the default seeds without it.
const simRaceSeeds = 300

// simShortSeeds is the default under -short (the oldest-Go step of
// scripts/test): the simulation compiles and runs there, briefly.
const simShortSeeds = 500

func envUint(t *testing.T, name string, def uint64) uint64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return n
}

// simFoundSeeds are seeds that long runs (SQSPOOL_SIM_SEEDS=1000000) found
// breaking an invariant, each fixed since, in the pool or in the oracle:
// every test run replays them.
var simFoundSeeds = []uint64{226967, 317306, 449779, 738445, 847150}

// TestSimulateFoundSeeds replays simFoundSeeds (the seeds below 10,000 that
// broke an invariant are in TestSimulate's own range).
func TestSimulateFoundSeeds(t *testing.T) {
	needBubbles(t)
	for _, seed := range simFoundSeeds {
		for _, v := range simRunSeed(t, seed, false).violations {
			t.Errorf("seed %d: %s: %s (replay: %s)", seed, v.kind, v.detail, simReplayCommand(seed))
		}
	}
}

func TestSimulate(t *testing.T) {
	needBubbles(t)
	if s := os.Getenv("SQSPOOL_SIM_SEED"); s != "" {
		// The seed's choices replay exactly; where goroutines race within
		// one instant, a replay can take another turn. SQSPOOL_SIM_REPEAT replays until a run
		// breaks an invariant, and logs that run.
		seed := envUint(t, "SQSPOOL_SIM_SEED", 0)
		repeat := max(envUint(t, "SQSPOOL_SIM_REPEAT", 1), 1)
		// The log costs time, and so moves the races: the repeats run
		// without it, and the log comes from one more run, which breaks
		// an invariant only if the race goes the same way again.
		var o *simOracle
		failing := 0
		if repeat > 1 {
			for range repeat {
				if r := simRunSeed(t, seed, false); len(r.violations) > 0 {
					failing++
					if o == nil {
						o = r
					}
				}
			}
			t.Logf("seed %d: %d of %d runs broke an invariant", seed, failing, repeat)
			if o != nil {
				for _, v := range o.violations {
					t.Errorf("seed %d: %s: %s", seed, v.kind, v.detail)
				}
			}
		}
		o = simRunSeed(t, seed, true)
		t.Logf("seed %d, a run with its log:\n%v\n%s", seed, o.sc, strings.Join(o.log, "\n"))
		for _, v := range o.violations {
			t.Errorf("seed %d: %s: %s", seed, v.kind, v.detail)
		}
		return
	}
	seeds := uint64(simDefaultSeeds)
	switch {
	case simRace:
		seeds = simRaceSeeds
	case testing.Short():
		seeds = simShortSeeds
	}
	n := envUint(t, "SQSPOOL_SIM_SEEDS", seeds)
	first := envUint(t, "SQSPOOL_SIM_START", 1)
	classify := os.Getenv("SQSPOOL_SIM_CLASSIFY") != ""
	var next atomic.Uint64
	var failed atomic.Bool
	tally := newSimTally()
	start := time.Now()
	t.Run("seeds", func(t *testing.T) {
		for w := range runtime.GOMAXPROCS(0) {
			t.Run(strconv.Itoa(w), func(t *testing.T) {
				t.Parallel()
				for {
					i := next.Add(1) - 1
					if i >= n || (failed.Load() && !classify) {
						return
					}
					seed := first + i
					o := simRunSeed(t, seed, false)
					if len(o.violations) == 0 {
						continue
					}
					tally.add(seed, o.violations)
					if classify {
						continue
					}
					failed.Store(true)
					var b strings.Builder
					for _, v := range o.violations {
						fmt.Fprintf(&b, "\n  %s: %s", v.kind, v.detail)
					}
					t.Errorf("seed %d breaks an invariant:%s\n  scenario: %v\n  replay: %s", seed, b.String(), o.sc, simReplayCommand(seed))
				}
			})
		}
	})
	ran := min(next.Load(), n)
	t.Logf("%d seeds from %d in %v", ran, first, time.Since(start).Round(time.Millisecond))
	if classify {
		t.Log(tally)
	}
}

// simTally counts violations by kind, with the first seed of each.
type simTally struct {
	mu    sync.Mutex
	first map[string]uint64
	count map[string]int
}

func newSimTally() *simTally {
	return &simTally{first: map[string]uint64{}, count: map[string]int{}}
}

func (s *simTally) add(seed uint64, vs []simViolation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kinds := map[string]bool{}
	for _, v := range vs {
		kind := v.kind
		if _, blocked, ok := strings.Cut(v.detail, "blocked: "); ok {
			kind += " [" + blocked + "]" // hangs apart by where they hang
		}
		kinds[kind] = true
	}
	for k := range kinds {
		s.count[k]++
		if f, ok := s.first[k]; !ok || seed < f {
			s.first[k] = seed
		}
	}
}

func (s *simTally) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	kinds := make([]string, 0, len(s.count))
	for k := range s.count {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	b.WriteString("violations by kind (seeds failing, first seed):")
	for _, k := range kinds {
		fmt.Fprintf(&b, "\n  %6d  first at seed %-6d %s", s.count[k], s.first[k], k)
	}
	return b.String()
}

// simRunSeed runs one seed in its own bubble. Goroutines still blocked when
// the run's root returns (after Wait, or after a hang was seen) make
// synctest panic with a deadlock; that is a violation of its own, and the
// goroutines are left behind.
func simRunSeed(t *testing.T, seed uint64, verbose bool) (o *simOracle) {
	sc := newSimScenario(seed)
	returned := false
	defer func() {
		// synctest.Test ends the goroutine (FailNow) when the bubble's
		// test failed: under -race, when the run raced. Say which seed.
		if !returned {
			t.Errorf("seed %d: the run failed (a data race is reported above)\n  scenario: %v\n  replay: %s", seed, sc, simReplayCommand(seed))
		}
	}()
	func() {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			if e, ok := r.(error); ok && strings.HasPrefix(e.Error(), "deadlock") && o != nil {
				if !slices.ContainsFunc(o.violations, func(v simViolation) bool { return v.kind == invShutdownHang }) {
					o.violate(invGoroutineLeft, "", "goroutines of the pool still blocked after Wait returned (%v)", e)
				}
				return
			}
			panic(r)
		}()
		synctest.Test(t, func(*testing.T) { o = simRun(sc, verbose) })
	}()
	returned = true
	return o
}

type simShutdown struct {
	who        string
	start, end time.Time
	bound      time.Duration
	err        error
	done       chan struct{}
}

// slack is what the final flush may take on top of its bounds: every
// attempt of a batch call with its latency and backoff.
func (o *simOracle) slack() time.Duration {
	return time.Duration(o.sc.batchAttempts)*(2*o.sc.latMax+time.Second) + 2*time.Second
}

// runMax bounds how long a handler may still run: to its deadline, the
// watchdog's tick, and what a handler that ignores its context adds.
func (o *simOracle) runMax() time.Duration {
	return o.hdl + o.tick + o.sc.maxRun + o.slack()
}

func (o *simOracle) markStop() {
	o.mu.Lock()
	if o.stopBegun.IsZero() {
		o.stopBegun = time.Now()
		o.logf("stop begins")
	}
	o.mu.Unlock()
}

// shutdown calls p.Shutdown with a context derived from base, ending after
// within (no sooner than base when 0), and records when it returned.
func (o *simOracle) shutdown(base context.Context, p *Pool, who string, within time.Duration) *simShutdown {
	s := &simShutdown{who: who, start: time.Now(), done: make(chan struct{})}
	ctx := base
	s.bound = o.runMax() + o.slack()
	if within > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, within)
		defer cancel()
		s.bound = within + abandonGrace + o.sc.flushTimeout + o.slack()
	}
	o.markStop()
	o.mu.Lock()
	o.shutdowns = append(o.shutdowns, s)
	o.logf("%s: Shutdown(within %v)", who, within)
	o.mu.Unlock()
	err := p.Shutdown(ctx)
	o.mu.Lock()
	s.end, s.err = time.Now(), err
	o.logf("%s: Shutdown returned %v", who, err)
	o.mu.Unlock()
	close(s.done)
	return s
}

func (o *simOracle) handler(pp *atomic.Pointer[Pool]) Handler[simBody] {
	return func(ctx context.Context, b *simBody) error {
		k := b.K
		r := o.runStart(ctx, k)
		msg, _ := MessageFrom(ctx)
		beh, took, respect := o.sc.behaviour(k, r.idx)
		if o.sc.stopKind == stopInside && k == o.sc.insideK && r.idx == 0 && pp.Load() != nil {
			within := o.sc.stopWithin
			if o.sc.d.chance(0.5, "inside-no-deadline") {
				within = 0
			}
			if o.sc.d.chance(0.5, "inside-goroutine") {
				// From a goroutine the handler starts and waits for.
				var wg sync.WaitGroup
				wg.Go(func() { o.shutdown(ctx, pp.Load(), "goroutine of a handler", within) })
				wg.Wait()
			} else {
				o.shutdown(ctx, pp.Load(), "inside handler", within)
			}
		}
		var err error
		switch beh {
		case behPastDeadline:
			dl, _ := ctx.Deadline()
			time.Sleep(time.Until(dl) + took)
			if o.sc.d.chance(0.5, "past-fails", uint64(k), uint64(r.idx)) {
				err = fmt.Errorf("simulated failure past the deadline")
			}
		case behBlock:
			<-ctx.Done()
			err = ctx.Err()
		default:
			if respect {
				err = sleep(ctx, clock.Real, took)
			} else {
				time.Sleep(took)
			}
			if err != nil {
				break
			}
			switch beh {
			case behFail:
				err = fmt.Errorf("simulated failure")
			case behRetryAfter:
				err = RetryAfter(o.sc.d.dur(0, 10*time.Second, "retry-after", uint64(k), uint64(r.idx)), fmt.Errorf("simulated throttle"))
			case behNoRetry:
				err = NoRetry(fmt.Errorf("simulated poison"))
			case behPanic:
				o.runEnded(k, r, fmt.Errorf("panic"), true, msg.ReceiveCount)
				panic("simulated handler panic")
			}
		}
		o.runEnded(k, r, err, false, msg.ReceiveCount)
		// Within an instant, goroutines race as the scheduler lets them:
		// yielding a drawn number of times moves this worker's next step
		// along whatever runs in the same instant (a stop, say).
		for range o.sc.d.u64("yields", uint64(k), uint64(r.idx)) % uint64(o.sc.yields+1) {
			runtime.Gosched()
		}
		return err
	}
}

// monitor checks for stalls until the stop begins: visible messages, a
// free worker, and no receive made for longer than any wait the pool may
// legitimately take (a long poll, a receive backoff, a breaker's cool-down
// and its probes).
func (o *simOracle) monitor(p *Pool, fake *sqsfake.Fake, url string, stop <-chan struct{}) {
	bound := 40*time.Second + 2*o.sc.latMax + maxReceiveBackoff + o.sc.waitTime
	if o.sc.breaker != nil {
		// Half-open receives nothing more while its probes run. On a FIFO
		// queue probes of one group run one after another, each with its
		// whole handler timeout (a message that waited for its turn has it
		// from its start; seed 847150).
		probes := 1
		if o.sc.fifo {
			probes = o.sc.breaker.withDefaults().Probes
		}
		bound += o.sc.breaker.CoolDown + time.Duration(probes)*o.runMax()
	}
	var since time.Time
	calls := -1
	for {
		t := time.NewTimer(5 * time.Second)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		visible := fake.Stats(url).Visible
		limit := int(p.limit.Load())
		state, _ := p.brk.snapshot() // not under o.mu: OnStateChange takes it under the breaker's lock
		o.mu.Lock()
		if !o.stopBegun.IsZero() {
			o.mu.Unlock()
			return
		}
		now := time.Now()
		if visible == 0 || o.running >= limit || o.recvOpen > 0 || o.recvCalls != calls {
			since, calls = now, o.recvCalls
		} else if now.Sub(since) > bound {
			o.violate(invStall, "", "%d messages visible, %d of %d handlers running, breaker %v, and no receive for %v (since %v)",
				visible, o.running, limit, state, now.Sub(since), since.Sub(o.t0))
		}
		o.mu.Unlock()
	}
}

func (sc *simScenario) options(o *simOracle) []Option {
	opts := []Option{
		WithWorkers(sc.workers), WithMaxMessages(sc.maxMessages), WithWaitTime(sc.waitTime),
		WithHeartbeat(sc.heartbeat), WithDecodeFailure(sc.decodePolicy), withDecoder(o.decode),
		WithErrorHook(o.report), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		WithBatchAttempts(sc.batchAttempts), WithDeleteLinger(sc.linger), withReceiveFill(sc.fill),
		WithFlushTimeout(sc.flushTimeout), WithShutdownTimeout(sc.shutdownTO), WithRetryBackoff(nil),
		func(c *config) { c.jitter = backoff.Seeded(sc.seed) }, // the pool's own backoffs replay too
	}
	if sc.pHookPanic > 0 {
		opts = append(opts, WithObserver(simObserver{o}))
	}
	if sc.pollers > 0 {
		opts = append(opts, WithPollers(sc.pollers))
	}
	if sc.handlerTimeout > 0 {
		opts = append(opts, WithHandlerTimeout(sc.handlerTimeout))
	}
	if sc.backoff {
		opts = append(opts, WithRetryBackoff(simRetryBackoff))
	}
	if sc.breaker != nil {
		cb := *sc.breaker
		cb.OnStateChange = o.breakerChanged
		opts = append(opts, WithCircuitBreaker(cb))
	}
	if sc.adaptive != nil {
		opts = append(opts, WithAdaptiveConcurrency(*sc.adaptive))
	}
	return opts
}

// simulate is one run, inside its bubble.
func simRun(sc *simScenario, verbose bool) *simOracle {
	o := newSimOracle(sc, verbose)
	fake := sqsfake.New(sqsfake.WithSeed(int64(sc.seed)))
	name, attrs := "sim", map[string]string{"VisibilityTimeout": strconv.Itoa(int(sc.visibility / time.Second))}
	if sc.fifo {
		name, attrs["FifoQueue"] = "sim.fifo", "true"
	}
	url := fake.MustCreateQueue(name, attrs)
	client := &simClient{fake: fake, sc: sc, or: o}

	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	var pp atomic.Pointer[Pool]
	p, err := simStart(parent, &Consumer{Client: client, Queue: url}, o, &pp)
	if err != nil {
		o.violate("start", "", "StartPool: %v", err)
		return o
	}
	pp.Store(p)

	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		sends := slices.Clone(sc.sends)
		slices.SortStableFunc(sends, func(a, b simSend) int { return int(a.at - b.at) })
		for _, s := range sends {
			time.Sleep(s.at - o.now())
			in := &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(simBodyOf(s))}
			if sc.fifo {
				in.MessageGroupId, in.MessageDeduplicationId = aws.String(s.group), aws.String(strconv.Itoa(s.k))
			}
			fake.MustSendMessage(in)
		}
	}()
	monStop, monDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(monDone)
		o.monitor(p, fake, url, monStop)
	}()

	time.Sleep(sc.stopAt)
	o.mu.Lock()
	begun := !o.stopBegun.IsZero()
	o.mu.Unlock()
	stopAt := time.Now()
	waitBound := o.runMax() + o.slack()
	external := func(who string, within time.Duration) {
		go o.shutdown(context.Background(), p, who, within)
		waitBound = max(waitBound, within+abandonGrace+sc.flushTimeout+o.slack()+o.runMax())
	}
	switch sc.stopKind {
	case stopDeadline:
		external("Shutdown", sc.stopWithin)
	case stopNoDeadline:
		external("Shutdown", 0)
	case stopTwice:
		external("first Shutdown", sc.stopWithin)
		external("second Shutdown", 0)
	case stopParent:
		o.markStop()
		cancelParent()
		waitBound = max(waitBound, sc.shutdownTO+abandonGrace+sc.flushTimeout+o.slack()+o.runMax())
	case stopInside:
		// The handler that stops may have called Shutdown before now, and
		// goes on after it returns.
		waitBound = max(waitBound, sc.stopWithin+abandonGrace+sc.flushTimeout+o.slack()+o.runMax())
		if !begun {
			external("Shutdown (the handler that stops did not run)", sc.stopWithin)
		}
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- p.Wait() }()
	limit := time.NewTimer(waitBound)
	defer limit.Stop()
	var final error
	select {
	case final = <-waitErr:
	case <-limit.C:
		o.mu.Lock()
		o.violate(invShutdownHang, "wait", "Wait did not return within %v of the stop at %v (%s); blocked: %s",
			waitBound, stopAt.Sub(o.t0), o.shutdownsLocked(), strings.Join(bubbleBlocked(), "; "))
		o.mu.Unlock()
		return o
	}
	o.mu.Lock()
	shutdowns := slices.Clone(o.shutdowns)
	o.mu.Unlock()
	for _, s := range shutdowns {
		select {
		case <-s.done:
		case <-time.After(time.Minute):
			o.mu.Lock()
			o.violate(invShutdownHang, s.who, "%s did not return, though Wait did", s.who)
			o.mu.Unlock()
			return o
		}
	}
	close(monStop)
	<-monDone
	<-senderDone
	o.check(p, fake, url, final)
	return o
}

func (o *simOracle) shutdownsLocked() string {
	var parts []string
	for _, s := range o.shutdowns {
		if s.end.IsZero() {
			parts = append(parts, fmt.Sprintf("%s called at %v has not returned", s.who, s.start.Sub(o.t0)))
		} else {
			parts = append(parts, fmt.Sprintf("%s called at %v returned at %v", s.who, s.start.Sub(o.t0), s.end.Sub(o.t0)))
		}
	}
	if len(parts) == 0 {
		return "no Shutdown call"
	}
	return strings.Join(parts, "; ")
}

// bubbleBlocked names where the goroutines of the calling goroutine's
// bubble are blocked: each one's innermost frame in the pool's own code,
// with its wait state. It tells one hang from another.
func bubbleBlocked() []string {
	buf := make([]byte, 1<<20)
	self := string(buf[:runtime.Stack(buf, false)])
	i := strings.Index(self, "synctest bubble ")
	if i < 0 {
		return nil
	}
	bubble := self[i : i+strings.IndexByte(self[i:], ']')]
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	seen := map[string]bool{}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if !strings.Contains(header, bubble+"]") || strings.Contains(g, "bubbleBlocked") {
			continue
		}
		state := header[strings.IndexByte(header, '[')+1 : strings.IndexByte(header, ',')]
		lines := strings.Split(g, "\n")
		for j := 1; j+1 < len(lines); j += 2 {
			fn, file := lines[j], strings.TrimSpace(lines[j+1])
			if !strings.HasPrefix(fn, "github.com/sqspool/sqspool.") || strings.Contains(file, "_test.go") {
				continue
			}
			fn = strings.TrimPrefix(fn[:strings.LastIndexByte(fn, '(')], "github.com/sqspool/sqspool.")
			file = file[strings.LastIndexByte(file, '/')+1:]
			if sp := strings.IndexByte(file, ' '); sp > 0 {
				file = file[:sp]
			}
			key := fmt.Sprintf("%s at %s (%s)", fn, file, state)
			if !seen[key] {
				seen[key] = true
				out = append(out, key)
			}
			break
		}
	}
	sort.Strings(out)
	return out
}

// simObserver panics now and then, as a faulty metrics exporter might.
type simObserver struct {
	o *simOracle
}

func (s simObserver) maybePanic(what string) {
	if s.o.sc.d.chance(s.o.sc.pHookPanic/4, "observer-panic", uint64(time.Now().UnixNano())) {
		s.o.announcePanic("observer " + what)
		panic("simulated observer panic in " + what)
	}
}

func (s simObserver) Received(*Message) { s.maybePanic("Received") }

func (s simObserver) Start(ctx context.Context, _ *Message) (context.Context, func(error)) {
	s.maybePanic("Start")
	return ctx, func(error) { s.maybePanic("done") }
}

func (s simObserver) Deleted(*Message) { s.maybePanic("Deleted") }

func (s simObserver) Call(string, int, time.Duration, error) { s.maybePanic("Call") }
