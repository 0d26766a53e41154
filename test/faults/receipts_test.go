package faults

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

// receipt is one message handed out by one ReceiveMessage answer: a
// receive as SQS counts it, whether or not the child lived to see it.
type receipt struct {
	proc string // the receiving child's pid
	id   string // the MessageId
	pid  int    // the producer's id (crashJob.PID)
}

// receiptRecorder puts a whole-request proxy of its own in front of SQS
// for each child, and records every message the emulator's answers to
// that child's ReceiveMessage calls hand out. The proxy sees an answer
// through even when the child was SIGKILLed mid-call, so the record holds
// the receives that a killed child never logged.
type receiptRecorder struct {
	target string

	mu      sync.Mutex
	proxies []*httptest.Server
	procs   []string         // per proxy, the pid of its child
	got     [][]receiptEntry // per proxy
}

type receiptEntry struct {
	id  string
	pid int
}

func newReceiptRecorder() *receiptRecorder {
	return &receiptRecorder{target: os.Getenv("AWS_ENDPOINT_URL_SQS")}
}

// env returns the environment entry for one child's SQS endpoint, and the
// function that names the child once it runs.
func (r *receiptRecorder) env(t *testing.T) (string, func(proc string)) {
	t.Helper()
	r.mu.Lock()
	i := len(r.proxies)
	r.procs = append(r.procs, "")
	r.got = append(r.got, nil)
	r.mu.Unlock()
	srv := newWholeRequestProxy(t, r.target, func(h http.Header, status int, reply []byte) {
		if status != http.StatusOK || h.Get("X-Amz-Target") != "AmazonSQS.ReceiveMessage" {
			return
		}
		var out struct {
			Messages []struct{ MessageId, Body string }
		}
		if json.Unmarshal(reply, &out) != nil {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, m := range out.Messages {
			var j crashJob
			_ = json.Unmarshal([]byte(m.Body), &j)
			r.got[i] = append(r.got[i], receiptEntry{id: m.MessageId, pid: j.PID})
		}
	})
	r.mu.Lock()
	r.proxies = append(r.proxies, srv)
	r.mu.Unlock()
	return "AWS_ENDPOINT_URL_SQS=" + srv.URL, func(proc string) {
		r.mu.Lock()
		r.procs[i] = proc
		r.mu.Unlock()
	}
}

// all closes the proxies, which waits for the answers still in flight
// (long polls of killed children), and returns every receipt.
func (r *receiptRecorder) all() []receipt {
	r.mu.Lock()
	proxies := slices.Clone(r.proxies)
	r.mu.Unlock()
	for _, srv := range proxies {
		srv.Close()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []receipt
	for i, got := range r.got {
		for _, e := range got {
			out = append(out, receipt{proc: r.procs[i], id: e.id, pid: e.pid})
		}
	}
	return out
}

// explainDLQ checks, for each healthy message in the DLQ, that every one of
// its receives (from the proxies' record) was spent by the message's own
// failure ("failing attempt", logged as an E event by the receiving
// process) or cut short by a kill (the receiving process was SIGKILLed and
// logged no outcome for that receive, or logged OK and died before the
// delete). Anything else leaves it unexplained: a receive ending in
// ErrInProgress, another error, a receive by a process that lived on
// without an outcome, or fewer receives than maxReceiveCount (SQS moves a
// message after exactly that many). It returns how many were explained with
// a tally of their reasons, and the others with theirs.
func explainDLQ(receipts []receipt, evs []logEvent, killed map[string]bool, maxReceiveCount int, dlqHealthy []int) (explained map[string]int, unexplained []string) {
	type outcome struct{ failed, inProgress, ok int }
	outcomes := map[string]map[string]*outcome{} // MessageId -> proc -> outcome
	var other []string                           // "id proc error", errors of no known kind
	for _, e := range evs {
		if (e.kind != "E" && e.kind != "OK") || len(e.args) == 0 {
			continue
		}
		id := e.args[0]
		if outcomes[id] == nil {
			outcomes[id] = map[string]*outcome{}
		}
		o := outcomes[id][e.proc]
		if o == nil {
			o = &outcome{}
			outcomes[id][e.proc] = o
		}
		msg := strings.Join(e.args[1:], " ")
		switch {
		case e.kind == "OK":
			o.ok++
		case strings.Contains(msg, "in progress"):
			o.inProgress++
		case strings.Contains(msg, "failing attempt"):
			o.failed++
		default:
			other = append(other, id+" "+e.proc+" "+msg)
		}
	}
	explained = map[string]int{}
	for _, pid := range dlqHealthy {
		received := map[string]int{} // proc -> receives
		var id string
		total := 0
		for _, r := range receipts {
			if r.pid == pid {
				received[r.proc]++
				id = r.id
				total++
			}
		}
		ok := total == maxReceiveCount
		why := []string{fmt.Sprintf("%d receives", total)}
		failed, cut := 0, 0
		for _, s := range other {
			if strings.HasPrefix(s, id+" ") {
				ok = false
				why = append(why, "error: "+s)
			}
		}
		for proc, n := range received {
			o := outcomes[id][proc]
			if o == nil {
				o = &outcome{}
			}
			left := n - o.failed - o.inProgress - o.ok
			failed += o.failed
			switch {
			case o.inProgress > 0:
				ok = false
				why = append(why, fmt.Sprintf("%d ErrInProgress by %s", o.inProgress, proc))
			case left < 0:
				ok = false
				why = append(why, fmt.Sprintf("%d outcomes more than receives by %s", -left, proc))
			case killed[proc]:
				cut += left + o.ok
			case left+o.ok > 0:
				ok = false
				why = append(why, fmt.Sprintf("%d by %s, which lived on, without a failure", left+o.ok, proc))
			}
		}
		if ok {
			explained[fmt.Sprintf("failed %d + cut by a kill %d", failed, cut)]++
		} else {
			unexplained = append(unexplained, fmt.Sprintf("pid %d (%s): %v", pid, id, why))
		}
	}
	return explained, unexplained
}
