package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/internal/awstest"
	"github.com/sqspool/sqspool/sqsfake"
)

// The child consumer (./consumer) is built once per test run, into a
// temporary directory that TestMain removes. It is built with -race when
// the tests are, which also reuses the race-built packages of the test
// binary from the build cache.
var child struct {
	once sync.Once
	dir  string
	path string
	err  error
	took time.Duration
}

func childBinary(t *testing.T) string {
	t.Helper()
	child.once.Do(func() {
		began := time.Now()
		child.dir, child.err = os.MkdirTemp("", "sqspool-faults-")
		if child.err != nil {
			return
		}
		child.path = filepath.Join(child.dir, "consumer")
		args := []string{"build", "-o", child.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/sqspool/sqspool/test/faults/consumer")
		// go test puts its own GOROOT/bin first in PATH.
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			child.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		child.took = time.Since(began)
		if child.err == nil {
			t.Logf("child consumer built in %v (-race %v)", child.took.Round(time.Millisecond), raceEnabled)
		}
	})
	if child.err != nil {
		t.Fatalf("building the child consumer: %v", child.err)
	}
	return child.path
}

func removeChildBuild() {
	if child.dir != "" {
		_ = os.RemoveAll(child.dir)
	}
}

// childProc is one run of the child consumer.
type childProc struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan struct{}
	err    error     // cmd.Wait's, once done is closed
	exited time.Time // when cmd.Wait returned
}

// startChild runs the child consumer with env (added to this process's
// environment) and args; it is killed if the test ends first.
func startChild(t *testing.T, env []string, args ...string) *childProc {
	t.Helper()
	c := &childProc{cmd: exec.Command(childBinary(t), args...), done: make(chan struct{})}
	// GORACE: a -race binary otherwise sleeps a second at exit, which
	// would count against its shutdown time.
	c.cmd.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=0"), env...)
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting the child consumer: %v", err)
	}
	go func() {
		c.err = c.cmd.Wait()
		c.exited = time.Now()
		close(c.done)
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill() // harmless once it has exited
		<-c.done
	})
	return c
}

func (c *childProc) signal(t *testing.T, sig syscall.Signal) time.Time {
	t.Helper()
	at := time.Now()
	if err := c.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("signal %v: %v", sig, err)
	}
	return at
}

// wait waits for the child to exit and returns its exit code; the timeout
// only guards against a hang.
func (c *childProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		<-c.done
		t.Fatalf("hang guard: the child did not exit within %v; stderr:\n%s", timeout, c.stderr.String())
	}
	var ee *exec.ExitError
	switch {
	case c.err == nil:
		return 0
	case errors.As(c.err, &ee):
		return ee.ExitCode() // -1 when killed by a signal
	default:
		t.Fatalf("child: %v", c.err)
		return -1
	}
}

// logEvent is one line of the child's event log (see consumer/main.go).
type logEvent struct {
	proc string
	kind string
	args []string
}

func readEvents(t *testing.T, path string) []logEvent {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []logEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue // a line cut short by SIGKILL cannot happen (one write each), but be lenient
		}
		evs = append(evs, logEvent{proc: fields[0], kind: fields[1], args: fields[2:]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return evs
}

// count returns how many events of kind the log holds (of process proc, or
// of all when proc is empty), and the sum of their first argument as a
// number where it is one.
func count(evs []logEvent, proc, kind string) (n, sum int) {
	for _, e := range evs {
		if e.kind == kind && (proc == "" || e.proc == proc) {
			n++
			if len(e.args) > 0 {
				v, _ := strconv.Atoi(e.args[0])
				sum += v
			}
		}
	}
	return n, sum
}

// exitLine is what a child logged when it stopped.
type exitLine struct {
	millis int64
	err    string
	stats  sqspool.Stats
}

func lastExit(t *testing.T, evs []logEvent, proc string) exitLine {
	t.Helper()
	for i := len(evs) - 1; i >= 0; i-- {
		e := evs[i]
		if e.kind != "EXIT" || e.proc != proc || len(e.args) < 3 {
			continue
		}
		var x exitLine
		x.millis, _ = strconv.ParseInt(e.args[0], 10, 64)
		x.err = e.args[1]
		if err := json.Unmarshal([]byte(e.args[2]), &x.stats); err != nil {
			t.Fatalf("EXIT line stats: %v", err)
		}
		return x
	}
	t.Fatalf("no EXIT line from process %s", proc)
	return exitLine{}
}

func (c *childProc) pid() string { return strconv.Itoa(c.cmd.Process.Pid) }

// backend is an SQS the child consumer and the test both reach over HTTP:
// the fake served by httptest, or the emulator.
type backend struct {
	name   string
	client *sqs.Client
	env    []string // for the child
	fake   *sqsfake.Fake
	// newQueue creates a queue and returns its URL.
	newQueue func(t *testing.T, name string, attrs map[string]string) string
}

// fakeBackend serves a fake (on the wall clock) over HTTP.
func fakeBackend(t *testing.T) *backend {
	f := sqsfake.New(sqsfake.WithSeed(7))
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(srv.Close)
	return &backend{
		name:   "fake",
		client: f.NewSDKClient(srv.URL),
		env: []string{
			"AWS_ENDPOINT_URL_SQS=" + srv.URL, "AWS_REGION=" + sqsfake.DefaultRegion,
			"AWS_ACCESS_KEY_ID=sqsfake", "AWS_SECRET_ACCESS_KEY=sqsfake", "AWS_SESSION_TOKEN=",
			"AWS_EC2_METADATA_DISABLED=true", "AWS_MAX_ATTEMPTS=1", // faults reach the pool, not the SDK's retryer "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		},
		fake: f,
		newQueue: func(t *testing.T, name string, attrs map[string]string) string {
			if attrs["FifoQueue"] == "true" {
				name += ".fifo"
			}
			return f.MustCreateQueue(name, attrs)
		},
	}
}

// emulatorBackend is the emulators' SQS; it skips the test unless
// SQSPOOL_INTEGRATION=1.
func emulatorBackend(t *testing.T) *backend {
	client := awstest.SQS(t)
	return &backend{
		name:   "emulator",
		client: client,
		newQueue: func(t *testing.T, name string, attrs map[string]string) string {
			return awstest.NewQueue(t, client, name, attrs)
		},
	}
}

// backends runs body once per backend, as subtests: the fake always, the
// emulator when integration tests are on.
func backends(t *testing.T, body func(t *testing.T, b *backend)) {
	t.Run("fake", func(t *testing.T) { body(t, fakeBackend(t)) })
	t.Run("emulator", func(t *testing.T) { body(t, emulatorBackend(t)) })
}

// depth returns a queue's visible, in-flight and delayed message counts.
func (b *backend) depth(t *testing.T, url string) (visible, inFlight, delayed int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := b.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	if err != nil {
		t.Fatalf("queue depth: %v", err)
	}
	a := out.Attributes
	visible, _ = strconv.Atoi(a[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(a[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	delayed, _ = strconv.Atoi(a[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed)])
	return visible, inFlight, delayed
}

func (b *backend) empty(t *testing.T, url string) bool {
	v, i, d := b.depth(t, url)
	return v+i+d == 0
}

// sendBatch sends the entries in batches of ten.
func (b *backend) sendBatch(t *testing.T, url string, entries []sqstypes.SendMessageBatchRequestEntry) {
	t.Helper()
	if err := b.trySendBatch(url, entries); err != nil {
		t.Fatal(err)
	}
}

// trySendBatch is sendBatch for goroutines other than the test's.
func (b *backend) trySendBatch(url string, entries []sqstypes.SendMessageBatchRequestEntry) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(entries) > 0 {
		k := min(10, len(entries))
		out, err := b.client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries[:k]})
		if err != nil {
			return fmt.Errorf("SendMessageBatch: %w", err)
		}
		if len(out.Failed) > 0 {
			return fmt.Errorf("SendMessageBatch failed entries: %+v", out.Failed)
		}
		entries = entries[k:]
	}
	return nil
}

// jobEntries are n messages {"pid": i}; with groups > 0 they are FIFO
// messages, interleaved over the groups (g0, g1, ..., g0, g1, ...).
func jobEntries(n, groups int) []sqstypes.SendMessageBatchRequestEntry {
	entries := make([]sqstypes.SendMessageBatchRequestEntry, n)
	for i := range entries {
		entries[i] = sqstypes.SendMessageBatchRequestEntry{
			Id:          aws.String(strconv.Itoa(i % 10)),
			MessageBody: aws.String(fmt.Sprintf(`{"pid":%d}`, i)),
		}
		if groups > 0 {
			entries[i].MessageGroupId = aws.String(fmt.Sprintf("g%d", i%groups))
			entries[i].MessageDeduplicationId = aws.String(strconv.Itoa(i))
		}
	}
	return entries
}

// scanTable reads a whole table with consistent reads.
func scanTable(t *testing.T, ddb *dynamodb.Client, table string) []map[string]ddbtypes.AttributeValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var items []map[string]ddbtypes.AttributeValue
	var start map[string]ddbtypes.AttributeValue
	for {
		out, err := ddb.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true), ExclusiveStartKey: start})
		if err != nil {
			t.Fatalf("scan %s: %v", table, err)
		}
		items = append(items, out.Items...)
		if len(out.LastEvaluatedKey) == 0 {
			return items
		}
		start = out.LastEvaluatedKey
	}
}

// proxiedEnv is the environment that points a child consumer at the
// emulators through whole-request proxies (see wholeRequestProxy).
func proxiedEnv(t *testing.T) []string {
	return []string{
		"AWS_ENDPOINT_URL_SQS=" + wholeRequestProxy(t, os.Getenv("AWS_ENDPOINT_URL_SQS")),
		"AWS_ENDPOINT_URL_DYNAMODB=" + wholeRequestProxy(t, os.Getenv("AWS_ENDPOINT_URL_DYNAMODB")),
	}
}

// wholeRequestProxy serves a reverse proxy to target that forwards a
// request only once it has read all of it, and then sees it through to the
// end whatever happens to the client. A client SIGKILLed mid-request thus
// never leaves a half-sent request at the emulator, which is what real AWS
// gets too: a request is either whole (and may take effect although its
// sender died) or never seen. It also keeps dynalite alive: its server
// (test/emulators/serve.js) exits on the "aborted" error of a request cut
// off mid-body.
func wholeRequestProxy(t *testing.T, target string) string {
	t.Helper()
	return newWholeRequestProxy(t, target, nil).URL
}

// newWholeRequestProxy is wholeRequestProxy, returning the server, and
// calling observe (if not nil) with each request's headers and the
// target's answer before the answer goes to the client (which may be dead
// by then).
func newWholeRequestProxy(t *testing.T, target string, observe func(req http.Header, status int, reply []byte)) *httptest.Server {
	t.Helper()
	transport := &http.Transport{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // the client went away mid-request: nothing reaches the emulator
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
		defer cancel()
		out, err := http.NewRequestWithContext(ctx, r.Method, target+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out.Header = r.Header.Clone()
		resp, err := transport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		reply, err := io.ReadAll(resp.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if observe != nil {
			observe(r.Header, resp.StatusCode, reply)
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(reply)
	}))
	t.Cleanup(func() {
		srv.Close()
		transport.CloseIdleConnections()
	})
	return srv
}
