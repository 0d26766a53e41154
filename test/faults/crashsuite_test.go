package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/internal/awstest"
	"github.com/sqspool/sqspool/internal/ddbtest"
	"github.com/sqspool/sqspool/sink"
)

// crashJob is the body of a crash-suite message (see consumer/main.go).
type crashJob struct {
	PID    int  `json:"pid"`
	Poison bool `json:"poison,omitempty"`
	Fail   int  `json:"fail,omitempty"`
}

// crashJobs: 1 % poison, 5 % failing their first one or two attempts.
func crashJobs(n int) []crashJob {
	jobs := make([]crashJob, n)
	for i := range jobs {
		jobs[i] = crashJob{PID: i, Poison: i%100 == 7}
		if i%20 == 3 {
			jobs[i].Fail = 1 + (i/20)%2
		}
	}
	return jobs
}

// TestCrashSuite is the idempotent sink's crash suite on the (patched)
// emulators: messages flow into a queue with visibility 5 s and a redrive
// policy of 5 receives while the consumer (idempotent DynamoDB sink, key the
// MessageId, lease 4 s) is SIGKILLed every 2–5 s and restarted, with two
// consumers running at once for a while, and stopped with SIGTERM at the
// end. Every healthy message must have exactly one result and none may be
// in the DLQ; every poison message must be in the DLQ; no result is written
// twice; no record is left INPROGRESS. The short run (the default) sends
// 10,000 messages over 10 kills; SQSPOOL_LONG=1 sends 50,000 over 40.
func TestCrashSuite(t *testing.T) { crashSuite(t, 5, pick(10_000, 50_000), pick(10, 40)) }

// TestCrashSuiteRedrive3 is the crash suite with a redrive policy of 3
// receives: a healthy message may then reach the DLQ, but only when its own
// failures and deliveries cut short by a kill spent its receives, never
// because of ErrInProgress; the suite checks that per message from the
// child processes' logs.
//
// It runs only with SQSPOOL_LONG=1 for now: its per-message oracle cannot
// yet account for a receive taken by a consumer killed before it logged
// the receive, so it fails on some schedules (open in issue 12).
func TestCrashSuiteRedrive3(t *testing.T) {
	if !long() {
		t.Skip("SQSPOOL_LONG=1: the oracle does not yet count receives lost with a killed consumer (issue 12)")
	}
	crashSuite(t, 3, 10_000, 20)
}

func crashSuite(t *testing.T, maxReceiveCount, n, kills int) {
	client, ddb := awstest.SQS(t), ddbtest.DynamoDB(t)
	rng := rand.New(rand.NewPCG(seed(t), 12))
	q, dlq := awstest.NewQueueWithDLQ(t, client, maxReceiveCount, map[string]string{"VisibilityTimeout": "5"})
	results := ddbtest.NewTable(t, ddb, "pk")
	idem := ddbtest.NewTable(t, ddb, sink.DefaultIdempotencyKeyAttribute)
	b := &backend{client: client}
	jobs := crashJobs(n)
	logPath := filepath.Join(t.TempDir(), "events.log")
	env := proxiedEnv(t)
	args := []string{"-queue", q, "-log", logPath, "-workers", "16", "-wait", "5s",
		"-table", results, "-idem-table", idem, "-lease", "4s", "-backoff", "500ms"}

	// The messages arrive while the kills happen, ten at a time, spread
	// over the kill phase (its expected length: 3.5 s a kill).
	began := time.Now()
	sendPhase := time.Duration(kills) * 3500 * time.Millisecond
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(sendPhase / time.Duration(n/10)) // pacing the load, not synchronisation
		defer tick.Stop()
		for i := 0; i < n; i += 10 {
			entries := make([]sqstypes.SendMessageBatchRequestEntry, 0, 10)
			for _, j := range jobs[i:min(i+10, n)] {
				body, _ := json.Marshal(j)
				entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j.PID)), MessageBody: aws.String(string(body))})
			}
			b.sendBatch(t, q, entries)
			<-tick.C
		}
	})

	c := startChild(t, env, args...)
	var extra *childProc
	var killedAt []string
	for k := range kills {
		<-time.After(2*time.Second + time.Duration(rng.Int64N(int64(3*time.Second)))) // the fault schedule: a kill every 2-5 s
		victim := c
		switch k {
		case 2: // a second consumer joins for four kills
			extra = startChild(t, env, args...)
		case 6:
			victim, extra = extra, nil
		}
		victim.signal(t, syscall.SIGKILL)
		require.Equal(t, -1, victim.wait(t, 10*time.Second), "killed by the signal")
		ok, _ := count(readEvents(t, logPath), victim.pid(), "OK")
		killedAt = append(killedAt, fmt.Sprintf("%.0fs:%d", time.Since(began).Seconds(), ok))
		if victim == c {
			c = startChild(t, env, args...)
		}
	}
	wg.Wait()
	healthy, poison := 0, 0
	for _, j := range jobs {
		if j.Poison {
			poison++
		} else {
			healthy++
		}
	}
	// Done when every message has a result or is in the DLQ (stopping the
	// last consumer earlier would give back messages it holds).
	eventually(t, pick(150*time.Second, 600*time.Second), "every message with a result or in the DLQ", func() bool {
		if !b.empty(t, q) {
			return false
		}
		v, i, d := b.depth(t, dlq)
		return v+i+d+len(scanTable(t, ddb, results)) >= n
	})
	elapsed := time.Since(began)
	c.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, c.wait(t, 30*time.Second), "SIGTERM: exit 0; stderr: %s", c.stderr.String())
	evs := readEvents(t, logPath)

	// One result per healthy message, none for poison.
	resultPIDs := map[int]int{}
	for _, it := range scanTable(t, ddb, results) {
		pid, err := strconv.Atoi(numberAttr(it, "pid"))
		require.NoError(t, err)
		resultPIDs[pid]++
	}
	var missing, extraResults []int
	for _, j := range jobs {
		switch got := resultPIDs[j.PID]; {
		case j.Poison && got > 0, !j.Poison && got > 1:
			extraResults = append(extraResults, j.PID)
		case !j.Poison && got == 0:
			missing = append(missing, j.PID)
		}
	}
	assert.Empty(t, extraResults, "poison messages with a result, or results twice")

	// The DLQ holds every poison message and nothing else.
	var dlqPoison, dlqHealthy []int
	for _, m := range drain(t, client, dlq, n) {
		var j crashJob
		require.NoError(t, json.Unmarshal([]byte(aws.ToString(m.Body)), &j))
		if j.Poison {
			dlqPoison = append(dlqPoison, j.PID)
		} else {
			dlqHealthy = append(dlqHealthy, j.PID)
		}
	}
	slices.Sort(dlqHealthy)
	assert.Len(t, dlqPoison, poison, "every poison message in the DLQ")
	explained, unexplained := explainDLQ(evs, jobs, dlqHealthy)
	if maxReceiveCount >= 5 {
		assert.Empty(t, dlqHealthy, "healthy messages in the DLQ")
	} else {
		assert.Empty(t, unexplained, "healthy messages in the DLQ for another reason than their own failures and kills")
	}
	// A healthy message in the DLQ has no result: it is not missing.
	missing = slices.DeleteFunc(missing, func(pid int) bool { return slices.Contains(dlqHealthy, pid) })
	assert.Empty(t, missing, "healthy messages without a result, and not in the DLQ")

	// Nothing applied twice: no result key confirmed written twice.
	writes := map[string]int{}
	for _, e := range evs {
		if e.kind == "W" {
			writes[e.args[0]]++
		}
	}
	twice := 0
	for _, w := range writes {
		if w > 1 {
			twice++
		}
	}
	assert.Zero(t, twice, "results written twice")

	// No record left INPROGRESS, except that of a healthy message whose last
	// receive was cut short by a kill mid-Put and which then went to the DLQ
	// (possible only with maxReceiveCount 3): nobody lives to release it, and
	// its lease lapses, so a redrive of that message takes the key over.
	// Records are keyed by the source queue's MessageId, which the handler
	// logs with the producer's id (H events); the DLQ may name it otherwise.
	pidOf := map[string]string{}
	for _, e := range evs {
		if e.kind == "H" && len(e.args) >= 2 {
			pidOf[e.args[0]] = e.args[1]
		}
	}
	inDLQ := func(key string) bool {
		pid, err := strconv.Atoi(pidOf[key])
		return err == nil && slices.Contains(dlqHealthy, pid)
	}
	inProgress, complete, deadOwners := 0, 0, 0
	for _, rec := range scanTable(t, ddb, idem) {
		switch {
		case stringValue(rec, sink.RecordStatusAttribute) == sink.StatusComplete:
			complete++
		case inDLQ(stringValue(rec, sink.DefaultIdempotencyKeyAttribute)):
			deadOwners++
		default:
			inProgress++
		}
	}
	assert.Zero(t, inProgress, "records left INPROGRESS")
	assert.Equal(t, healthy-len(dlqHealthy), complete, "one COMPLETE record per healthy message with a result")

	handlerCalls, _ := count(evs, "", "H")
	errs, _ := count(evs, "", "E")
	figures(t, fmt.Sprintf("crash suite (emulators): %d messages (%d healthy, %d poison, %d failing 1-2 times), visibility 5s, maxReceiveCount %d",
		n, healthy, poison, n/20, maxReceiveCount),
		fmt.Sprintf("%d SIGKILLs (at s:handled %v), two consumers during kills 3-6, SIGTERM at the end (exit 0); wall %.1fs, %.0f msgs/s",
			kills, killedAt, elapsed.Seconds(), float64(n)/elapsed.Seconds()),
		fmt.Sprintf("results %d (missing %d, extra %d); applied twice %d; DLQ %d poison of %d, %d healthy (%d by their own failures and kills, %d otherwise); records %d COMPLETE, %d INPROGRESS (+%d of DLQ messages killed mid-Put)",
			len(resultPIDs), len(missing), len(extraResults), twice, len(dlqPoison), poison, len(dlqHealthy), explained, len(unexplained), complete, inProgress, deadOwners),
		fmt.Sprintf("handler calls %d for %d messages, handler errors %d", handlerCalls, n, errs),
	)
}

// explainDLQ checks, for each healthy message in the DLQ, that every
// receive of it (RM events) was spent by its own failure (an E event of the
// same process that is not ErrInProgress) or cut short by a kill (the
// process never logged OK or E for it afterwards, and was killed: it has no
// EXIT line). It returns how many were explained, and the others.
func explainDLQ(evs []logEvent, jobs []crashJob, dlqHealthy []int) (explained int, unexplained []string) {
	exited := map[string]bool{}
	for _, e := range evs {
		if e.kind == "EXIT" {
			exited[e.proc] = true
		}
	}
	// The MessageId of each pid, from the handler events ("H id pid rc").
	ids := map[int]string{}
	for _, e := range evs {
		if e.kind == "H" && len(e.args) >= 2 {
			if pid, err := strconv.Atoi(e.args[1]); err == nil {
				ids[pid] = e.args[0]
			}
		}
	}
	for _, pid := range dlqHealthy {
		id := ids[pid]
		ok := id != ""
		var why []string
		// Per process, the receives of id and the outcomes that followed.
		pending := map[string]int{}
		for _, e := range evs {
			if len(e.args) == 0 || e.args[0] != id {
				continue
			}
			switch e.kind {
			case "RM":
				pending[e.proc]++
			case "E":
				pending[e.proc]--
				msg := strings.Join(e.args[1:], " ")
				if strings.Contains(msg, "in progress") {
					ok = false
					why = append(why, "ErrInProgress")
				} else {
					why = append(why, "failed")
				}
			case "OK":
				ok = false // a success would have been deleted
			}
		}
		for proc, left := range pending {
			if left > 0 && exited[proc] {
				ok = false // received by a process that lived on, with no outcome
				why = append(why, fmt.Sprintf("%d by %s, which lived on, with no outcome", left, proc))
			}
			if left > 0 {
				why = append(why, fmt.Sprintf("%d cut by a kill", left))
			}
		}
		if ok {
			explained++
		} else {
			unexplained = append(unexplained, fmt.Sprintf("pid %d (%s): %v", pid, id, why))
		}
	}
	return explained, unexplained
}

// drain receives what a queue holds, up to want messages (or until a
// receive comes back empty), keeping them invisible.
func drain(t *testing.T, client *sqs.Client, url string, want int) []sqstypes.Message {
	t.Helper()
	var out []sqstypes.Message
	for len(out) < want {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		got, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 2, VisibilityTimeout: 300})
		cancel()
		require.NoError(t, err)
		if len(got.Messages) == 0 {
			break
		}
		out = append(out, got.Messages...)
	}
	return out
}
