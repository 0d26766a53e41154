package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/internal/awstest"
	"github.com/sqspool/sqspool/internal/clock"
	"github.com/sqspool/sqspool/internal/ddbtest"
	"github.com/sqspool/sqspool/sink"
	"github.com/sqspool/sqspool/sink/dynamofake"
	"github.com/sqspool/sqspool/sqsfake"
)

// job is a crash-test message; its effect is stored under the MessageId.
type job struct {
	PID int `json:"pid"`
}

type jobResult struct {
	PK  string `dynamodbav:"pk"`
	PID int    `dynamodbav:"pid"`
}

// seed returns the seed of a test's random choices: SQSPOOL_FAULT_SEED if
// set, else a fresh one. Tests log it, so a failure can be replayed.
func seed(t *testing.T) uint64 {
	if s, err := strconv.ParseUint(os.Getenv("SQSPOOL_FAULT_SEED"), 10, 64); err == nil {
		return s
	}
	s := uint64(time.Now().UnixNano())
	t.Logf("seed %d (replay with SQSPOOL_FAULT_SEED=%d)", s, s)
	return s
}

// proc is one simulated consumer process: a pool and an idempotent sink
// whose every call to SQS or DynamoDB passes its gate.
type proc struct {
	id    int
	gate  *gate
	pool  *sqspool.Pool
	store *sink.DynamoDB[jobResult]
}

// rewrites finds result keys written more than once and checks each extra
// write: every write but the last must come from a process that crashed
// before marking the key COMPLETE (the window the idempotent sink documents:
// the record stays INPROGRESS, and once its lease lapsed the write runs
// again). It returns how many such re-writes there were, and the keys whose
// repeats have no such explanation.
func rewrites(writes, completes map[string][]int, recordID func(pk string) string, crashed func(proc int) bool) (n int, unexplained []string) {
	for pk, procs := range writes {
		done := completes[recordID(pk)]
		for _, p := range procs[:len(procs)-1] {
			if !crashed(p) || slices.Contains(done, p) {
				unexplained = append(unexplained, fmt.Sprintf("%s written by %v, completed by %v", pk, procs, done))
				break
			}
			n++
		}
	}
	slices.Sort(unexplained)
	return n, unexplained
}

// TestCrashEmulator is scenario 2 on the emulators: the child consumer
// (idempotent DynamoDB sink in dynalite, key the MessageId) is SIGKILLed
// several times at random moments while a few thousand messages flow, and
// restarted each time. At the end: nothing lost, nothing applied twice.
// Every MessageId has exactly one result item and one COMPLETE record, the
// queue is empty, and a key was written twice only where a killed process
// had written it without marking it COMPLETE.
func TestCrashEmulator(t *testing.T) {
	client, ddb := awstest.SQS(t), ddbtest.DynamoDB(t)
	// dynalite does well under a thousand operations a second and the
	// idempotent sink needs two or three per message: the short run keeps
	// to 1500 messages.
	n, kills := pick(1500, 10_000), pick(4, 8)
	rng := rand.New(rand.NewPCG(seed(t), 3))
	q := awstest.NewQueue(t, client, "faults-crash", map[string]string{"VisibilityTimeout": "2"})
	results := ddbtest.NewTable(t, ddb, "pk")
	idem := ddbtest.NewTable(t, ddb, sink.DefaultIdempotencyKeyAttribute)
	b := &backend{client: client}
	b.sendBatch(t, q, jobEntries(n, 0))
	logPath := filepath.Join(t.TempDir(), "events.log")
	// The children reach the emulators through proxies that pass whole
	// requests only (see wholeRequestProxy).
	env := proxiedEnv(t)
	args := []string{"-queue", q, "-log", logPath, "-workers", "16", "-wait", "1s",
		"-table", results, "-idem-table", idem, "-lease", "1500ms", "-backoff", "500ms"}

	began := time.Now()
	killedProcs := map[string]bool{}
	var killed []string
	for range kills {
		c := startChild(t, env, args...)
		// Kill once this process has handled this many: together less than
		// half the messages, so that every kill falls while messages flow.
		at := 50 + rng.IntN(n/(2*kills)-50)
		eventually(t, 60*time.Second, fmt.Sprintf("process %s handling %d messages", c.pid(), at), func() bool {
			ok, _ := count(readEvents(t, logPath), c.pid(), "OK")
			return ok >= at
		})
		c.signal(t, syscall.SIGKILL)
		assert.Equal(t, -1, c.wait(t, 10*time.Second), "killed by the signal, not exited by itself; stderr: %s", c.stderr.String())
		killedProcs[c.pid()] = true
		ok, _ := count(readEvents(t, logPath), c.pid(), "OK")
		killed = append(killed, fmt.Sprintf("%s after %d handled", c.pid(), ok))
	}
	last := startChild(t, env, args...)
	evs := readEvents(t, logPath)
	eventually(t, pick(120*time.Second, 600*time.Second), "queue drained by the last process", func() bool {
		if !b.empty(t, q) {
			return false
		}
		evs = readEvents(t, logPath)
		done := map[string]bool{}
		for _, e := range evs {
			if e.kind == "OK" {
				done[e.args[0]] = true
			}
		}
		return len(done) == n
	})
	elapsed := time.Since(began)
	last.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, last.wait(t, 30*time.Second), "stderr: %s", last.stderr.String())
	evs = readEvents(t, logPath)

	// Nothing lost: one result item per MessageId, every producer id once.
	items := scanTable(t, ddb, results)
	pids := make([]int, 0, len(items))
	ids := map[string]bool{}
	for _, it := range items {
		pid, err := strconv.Atoi(numberAttr(it, "pid"))
		require.NoError(t, err)
		pids = append(pids, pid)
		ids[stringValue(it, "pk")] = true
	}
	slices.Sort(pids)
	require.Len(t, pids, n, "one result item per message")
	for i, pid := range pids {
		require.Equal(t, i, pid, "producer ids 0..n-1, each once")
	}
	// Nothing applied twice: one COMPLETE record per MessageId.
	records := scanTable(t, ddb, idem)
	assert.Len(t, records, n)
	for _, rec := range records {
		id := stringValue(rec, sink.DefaultIdempotencyKeyAttribute)
		assert.Equal(t, sink.StatusComplete, stringValue(rec, sink.RecordStatusAttribute), "record %s", id)
		assert.True(t, ids[strings.TrimPrefix(id, results+"#")], "record %s has a result item", id)
	}
	assert.True(t, b.empty(t, q), "queue empty")
	// Writes per key, from the processes' logs: a second write only after a
	// killed process wrote the key and never completed it.
	writes, completes := map[string][]int{}, map[string][]int{}
	procIndex := map[string]int{}
	crashedIdx := map[int]bool{}
	for _, e := range evs {
		if _, ok := procIndex[e.proc]; !ok {
			procIndex[e.proc] = len(procIndex)
			crashedIdx[procIndex[e.proc]] = killedProcs[e.proc]
		}
		switch e.kind {
		case "W":
			writes[e.args[0]] = append(writes[e.args[0]], procIndex[e.proc])
		case "OK":
			completes[e.args[0]] = append(completes[e.args[0]], procIndex[e.proc])
		}
	}
	again, unexplained := rewrites(writes, completes, func(pk string) string { return pk }, func(p int) bool { return crashedIdx[p] })
	assert.Empty(t, unexplained, "keys written twice without a kill between write and COMPLETE")
	handlerCalls, _ := count(evs, "", "H")
	x := lastExit(t, evs, last.pid())
	figures(t, fmt.Sprintf("scenario 2 (emulators): %d messages, %d SIGKILLs + restarts, child with 16 workers", n, kills),
		fmt.Sprintf("wall %.1fs; killed: %s", elapsed.Seconds(), strings.Join(killed, ", ")),
		fmt.Sprintf("reconciliation: %d result items (producer ids 0..%d once each), %d records all COMPLETE, queue empty; %d handler calls for %d messages; re-writes after a kill between write and COMPLETE: %d",
			len(items), n-1, len(records), handlerCalls, n, again),
		fmt.Sprintf("last process: processed %d, failed %d, SQS requests %d",
			x.stats.Processed, x.stats.Failed, x.stats.Requests()),
	)
}

// TestCrashInMemory is scenario 2 on the fake: a consumer process is
// crashed several times, at a random call to SQS or DynamoDB, before the
// call takes effect or after it did and before its reply arrives, while
// messages flow under injected SQS faults; each time a new process takes
// over. At the end nothing is lost and nothing is applied twice: each
// MessageId has exactly one result item and one COMPLETE record, the queue
// is empty, and a key was written a second time only where a crash fell
// between its write and its COMPLETE update.
func TestCrashInMemory(t *testing.T) {
	n, kills := pick(3000, 20_000), pick(4, 10)
	rng := rand.New(rand.NewPCG(seed(t), 2))

	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	f := sqsfake.New(clock.Option[sqsfake.Option](clk), sqsfake.WithSeed(int64(rng.Uint64())))
	src := f.MustCreateQueue("crash", map[string]string{"VisibilityTimeout": "5"})
	for pid := range n {
		f.MustSendJSON(src, job{PID: pid})
	}
	ddbFake := dynamofake.New()
	ddbFake.CreateTable("results", "pk", "")
	ddbFake.CreateTable("idem", sink.DefaultIdempotencyKeyAttribute, "")
	writes := newLedger()
	f.SetFaults(floodFaults)

	var procs []*proc
	var live atomic.Pointer[proc]
	start := func(id int, killAt int64, killAfter bool) *proc {
		p := &proc{id: id, gate: newGate(killAt, killAfter)}
		store, err := sink.NewDynamoDB[jobResult](
			gatedDynamoDB{gate: p.gate, inner: recordingDynamoDB{DynamoDBAPI: ddbFake, ledger: writes, proc: id, pkAttr: "pk"}},
			"results",
			clock.Option[sink.DynamoDBOption](clk),
			sink.WithBackoff(10*time.Millisecond, time.Second),
			sink.WithIdempotency(sink.IdempotencyConfig{Table: "idem", Lease: 4 * time.Second}),
		)
		require.NoError(t, err)
		p.store = store
		process := func(ctx context.Context, j *job) (jobResult, error) {
			m, _ := sqspool.MessageFrom(ctx)
			return jobResult{PK: m.ID, PID: j.PID}, nil
		}
		pool, err := sqspool.StartPool(context.Background(), &sqspool.Consumer{Client: gatedSQS{gate: p.gate, inner: f}, Queue: src},
			sink.Pipe(process, p.store),
			clock.Option[sqspool.Option](clk),
			sqspool.WithWorkers(16),
			sqspool.WithRetryBackoff(sqspool.ExponentialBackoff(time.Second, 8*time.Second)),
			sqspool.WithLogger(quietLogger()),
		)
		require.NoError(t, err)
		p.pool = pool
		procs = append(procs, p)
		live.Store(p)
		return p
	}
	drained := func() bool {
		s := f.Stats(src)
		return s.Visible+s.InFlight+s.Delayed == 0
	}
	d := startDriver(t, clk, 10*time.Millisecond, 250*time.Millisecond, func() bool {
		return f.Stats(src).Visible > 0 || held(live.Load().pool.Stats()) > 0
	})
	// A cleanup that also runs when the test fails half-way: dead processes
	// are let go and every pool and sink stopped, while the clock still
	// moves (the driver's own cleanup runs after this one).
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, p := range procs {
			p.gate.release()
		}
		for _, p := range procs {
			_ = p.pool.Shutdown(ctx)
			_ = p.store.Close(ctx)
		}
	})

	began := time.Now()
	var killed []string
	for k := range kills {
		killAt, after := 100+rng.Int64N(1500), rng.IntN(2) == 1
		p := start(k, killAt, after)
		d.waitFor(t, 60*time.Second, fmt.Sprintf("process %d crashing at call %d", k, killAt), func() bool {
			select {
			case <-p.gate.killed:
				return true
			default:
				return drained()
			}
		})
		p.gate.kill() // if the queue ran dry first: a crash while idle
		phase := "before"
		if after {
			phase = "after"
		}
		killed = append(killed, fmt.Sprintf("#%d at call %d (%s its effect), %d handled", k, killAt, phase, p.pool.Stats().Processed))
	}
	final := start(kills, 0, false)
	d.waitFor(t, pick(60*time.Second, 600*time.Second), "queue drained by the last process", drained)
	elapsed := time.Since(began)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, final.pool.Shutdown(ctx))
	require.NoError(t, final.store.Close(ctx))
	f.ClearFaults()

	// Nothing lost: one result item per MessageId, every producer id once.
	items := ddbFake.Items("results")
	pids := make([]int, 0, len(items))
	for _, it := range items {
		pid, err := strconv.Atoi(numberAttr(it, "pid"))
		require.NoError(t, err)
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	require.Len(t, pids, n, "one result item per message")
	for i, pid := range pids {
		require.Equal(t, i, pid, "producer ids 0..n-1, each once")
	}
	// Nothing applied twice: one COMPLETE record per MessageId, ...
	records := ddbFake.Items("idem")
	assert.Len(t, records, n)
	for _, rec := range records {
		assert.Equal(t, sink.StatusComplete, stringValue(rec, sink.RecordStatusAttribute), "record %s", stringValue(rec, "id"))
	}
	for _, it := range items {
		_, ok := ddbFake.Get("idem", map[string]ddbAV{"id": sAV("results#" + stringValue(it, "pk"))})
		assert.True(t, ok, "COMPLETE record of %s", stringValue(it, "pk"))
	}
	// ... each marked COMPLETE once, and each written once unless a crash
	// fell between its write and its COMPLETE.
	written, completed := writes.snapshot()
	for id, ps := range completed {
		assert.Len(t, ps, 1, "COMPLETE updates of %s", id)
	}
	crashed := func(p int) bool { return p < kills }
	again, unexplained := rewrites(written, completed, func(pk string) string { return "results#" + pk }, crashed)
	assert.Empty(t, unexplained, "keys written twice without a crash between write and COMPLETE")
	fs := f.Stats(src)
	assert.EqualValues(t, n, fs.Deleted, "every message deleted")
	assert.True(t, drained())

	var handled []string
	for _, p := range procs {
		st := p.pool.Stats()
		handled = append(handled, fmt.Sprintf("#%d processed %d failed %d", p.id, st.Processed, st.Failed))
	}
	figures(t, fmt.Sprintf("scenario 2 (fake): %d messages, %d crashes + restarts", n, kills),
		fmt.Sprintf("wall %.2fs; crashes: %s", elapsed.Seconds(), strings.Join(killed, "; ")),
		"per process: "+strings.Join(handled, ", "),
		fmt.Sprintf("reconciliation: %d result items, %d COMPLETE records, queue empty, %d deleted; re-writes after a crash between write and COMPLETE: %d", len(items), len(records), fs.Deleted, again),
		fmt.Sprintf("fake: deliveries %d for %d messages, stale deletes %d, redundant deletes %d", fs.Received, n, fs.StaleDeletes, fs.RedundantDeletes),
	)
}
