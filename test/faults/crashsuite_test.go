package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
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
// in the DLQ unless its own failures (at most two) and deliveries cut short
// by a kill spent its five receives (rare: at most two such messages pass);
// every poison message must be in the DLQ; no result is written
// twice; no record is left INPROGRESS. The short run (the default) sends
// 10,000 messages over 10 kills; SQSPOOL_LONG=1 sends 50,000 over 40.
func TestCrashSuite(t *testing.T) { crashSuite(t, 5, pick(10_000, 50_000), pick(10, 40)) }

// TestCrashSuiteRedrive3 is the crash suite with a redrive policy of 3
// receives: a healthy message may then reach the DLQ, but only when its own
// failures and deliveries cut short by a kill spent its receives, never
// because of ErrInProgress; explainDLQ checks that per message from the
// receives the proxies saw and the child processes' logs.
func TestCrashSuiteRedrive3(t *testing.T) { crashSuite(t, 3, pick(10_000, 50_000), pick(10, 40)) }

func crashSuite(t *testing.T, maxReceiveCount, n, kills int) {
	if testing.Short() {
		t.Skip("-short: the crash suites take minutes (they run in the -race step)")
	}
	client, ddb := awstest.SQS(t), ddbtest.DynamoDB(t)
	rng := rand.New(rand.NewPCG(seed(t), 12))
	q, dlq := awstest.NewQueueWithDLQ(t, client, maxReceiveCount, map[string]string{"VisibilityTimeout": "5"})
	results := ddbtest.NewTable(t, ddb, "pk")
	idem := ddbtest.NewTable(t, ddb, sink.DefaultIdempotencyKeyAttribute)
	b := &backend{client: client}
	jobs := crashJobs(n)
	logPath := filepath.Join(t.TempDir(), "events.log")
	args := []string{"-queue", q, "-log", logPath, "-workers", "16", "-wait", "5s",
		"-table", results, "-idem-table", idem, "-lease", "4s", "-backoff", "500ms"}
	if os.Getenv("SQSPOOL_CRASH_DEFECT") == "inprogress-now" {
		// The defect the oracle must catch (run by hand: the suite fails):
		// a lease longer than the visibility, so that redeliveries after a
		// kill meet INPROGRESS records, and ErrInProgress retried after the
		// backoff, so that each retry spends a receive.
		args = append(args, "-inprogress-now", "-lease", "12s")
	}
	// Each child reaches SQS through a proxy of its own that records the
	// receives, and DynamoDB through a shared one.
	rec := newReceiptRecorder()
	ddbEnv := "AWS_ENDPOINT_URL_DYNAMODB=" + wholeRequestProxy(t, os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"))
	start := func() *childProc {
		sqsEnv, named := rec.env(t)
		c := startChild(t, []string{sqsEnv, ddbEnv}, args...)
		named(c.pid())
		return c
	}

	// The messages arrive while the kills happen, ten at a time, spread
	// over the kill phase (its expected length: 3.5 s a kill).
	began := time.Now()
	sendPhase := time.Duration(kills) * 3500 * time.Millisecond
	// The sender stops, and is waited for, when the test ends early: a
	// failure must not leave it sending to a backend that is going away.
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := make(chan struct{})
	defer close(stop)
	wg.Go(func() {
		tick := time.NewTicker(sendPhase / time.Duration(n/10)) // pacing the load, not synchronisation
		defer tick.Stop()
		for i := 0; i < n; i += 10 {
			entries := make([]sqstypes.SendMessageBatchRequestEntry, 0, 10)
			for _, j := range jobs[i:min(i+10, n)] {
				body, _ := json.Marshal(j)
				entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j.PID)), MessageBody: aws.String(string(body))})
			}
			if err := b.trySendBatch(q, entries); err != nil {
				t.Error(err) // not Fatal: this is not the test's goroutine
				return
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	})

	c := start()
	var extra *childProc
	var killedAt []string
	killed := map[string]bool{}
	for k := range kills {
		<-time.After(2*time.Second + time.Duration(rng.Int64N(int64(3*time.Second)))) // the fault schedule: a kill every 2-5 s
		victim := c
		switch k {
		case 2: // a second consumer joins for four kills
			extra = start()
		case 6:
			victim, extra = extra, nil
		}
		victim.signal(t, syscall.SIGKILL)
		require.Equal(t, -1, victim.wait(t, 10*time.Second), "killed by the signal, not exited by itself; stderr: %s", victim.stderr.String())
		killed[victim.pid()] = true
		ok, _ := count(readEvents(t, logPath), victim.pid(), "OK")
		killedAt = append(killedAt, fmt.Sprintf("%.0fs:%d", time.Since(began).Seconds(), ok))
		if victim == c {
			c = start()
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
	// last consumer earlier would give back messages it holds). The bound
	// only guards against a hang: on a busy machine this phase took up to
	// 150 s.
	eventually(t, pick(300*time.Second, 900*time.Second), "every message with a result or in the DLQ", func() bool {
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
	receipts := rec.all()

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
	explained, unexplained := explainDLQ(receipts, evs, killed, maxReceiveCount, dlqHealthy)
	// With 5 receives a healthy message fails at most twice, so only three
	// deliveries cut by kills on top can spend its receives: rare (1 in
	// 10,000 messages once, with three CI runs sharing two cores at 87
	// msgs/s), and no consumer can prevent it, since SQS counts a receive
	// whose process dies. What the suite rules out is a receive spent for
	// any other reason, ErrInProgress above all, and more than a handful.
	assert.Empty(t, unexplained, "healthy messages in the DLQ for another reason than their own failures and kills")
	if maxReceiveCount >= 5 {
		assert.LessOrEqual(t, len(dlqHealthy), 2, "healthy messages in the DLQ (each cut by a kill three times or more)")
	}
	// A healthy message in the DLQ may have no result: it is not missing.
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

	// One COMPLETE record per healthy message outside the DLQ, and no
	// record left INPROGRESS for it. A healthy message in the DLQ (its own
	// failures and kills spent its receives) may have a record in either state (and
	// a result): a kill may have cut its last delivery after the write or
	// mid-Put, and nobody lives to release the record; its lease lapses, so
	// a redrive takes the key over. Record ids are prefix#key, the key the
	// source queue's MessageId (the DLQ may name the message otherwise):
	// the receipts give its producer's id.
	pidOf := map[string]int{}
	for _, r := range receipts {
		pidOf[r.id] = r.pid
	}
	inDLQ := func(record string) bool {
		pid, ok := pidOf[record[strings.LastIndex(record, "#")+1:]]
		return ok && slices.Contains(dlqHealthy, pid)
	}
	inProgress, complete, ofDLQ := 0, 0, 0
	for _, rec := range scanTable(t, ddb, idem) {
		switch {
		case inDLQ(stringValue(rec, sink.DefaultIdempotencyKeyAttribute)):
			ofDLQ++
		case stringValue(rec, sink.RecordStatusAttribute) == sink.StatusComplete:
			complete++
		default:
			inProgress++
		}
	}
	assert.Zero(t, inProgress, "records left INPROGRESS")
	assert.Equal(t, healthy-len(dlqHealthy), complete, "one COMPLETE record per healthy message outside the DLQ")

	handlerCalls, _ := count(evs, "", "H")
	errs, _ := count(evs, "", "E")
	figures(t, fmt.Sprintf("crash suite (emulators): %d messages (%d healthy, %d poison, %d failing 1-2 times), visibility 5s, maxReceiveCount %d",
		n, healthy, poison, n/20, maxReceiveCount),
		fmt.Sprintf("%d SIGKILLs (at s:handled %v), two consumers during kills 3-6, SIGTERM at the end (exit 0); wall %.1fs, %.0f msgs/s",
			kills, killedAt, elapsed.Seconds(), float64(n)/elapsed.Seconds()),
		fmt.Sprintf("results %d (missing %d, extra %d); applied twice %d; DLQ %d poison of %d, %d healthy (by their own failures and kills: %v; otherwise %d); records %d COMPLETE, %d INPROGRESS (+%d of healthy messages in the DLQ)",
			len(resultPIDs), len(missing), len(extraResults), twice, len(dlqPoison), poison, len(dlqHealthy), explained, len(unexplained), complete, inProgress, ofDLQ),
		fmt.Sprintf("handler calls %d for %d messages, handler errors %d; receives %d (from the proxies)", handlerCalls, n, errs, len(receipts)),
	)
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
