// Package scen holds the sqspool benchmark scenarios shared by the sqsbench
// command and the bench module's go test benchmarks.
//
// Every scenario measures in one process, on this machine, against in-memory
// fakes: sqsfake (SQS, called directly or over loopback HTTP with the real
// SDK client) and the sink package's DynamoDB fake. Targets are printed with
// PASS or MISS; nothing here asserts a performance target.
package scen

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqspool/sqspool/sqsfake"
)

// Opts are the knobs every scenario takes.
type Opts struct {
	// Short runs the CI smoke sizes: every scenario, far fewer messages.
	Short bool
	// Log, when set, receives progress lines.
	Log func(format string, args ...any)
	// Self is the sqsbench executable, for scenarios that run the fake in a
	// child process (11); empty: they are skipped.
	Self string
	// SweepLatencies and SweepHandlers, when set, pick the sweep's cells
	// (scenario 10) instead of the whole grid.
	SweepLatencies, SweepHandlers []time.Duration
}

func (o Opts) logf(format string, args ...any) {
	if o.Log != nil {
		o.Log(format, args...)
	}
}

// size picks the full or the short value.
func (o Opts) size(full, short int) int {
	if o.Short {
		return short
	}
	return full
}

// Verdict of a row against its target.
type Verdict int

// Verdicts. Info rows have no target.
const (
	Info Verdict = iota
	Pass
	Miss
)

func (v Verdict) String() string {
	switch v {
	case Pass:
		return "PASS"
	case Miss:
		return "MISS"
	}
	return "-"
}

func verdict(ok bool) Verdict {
	if ok {
		return Pass
	}
	return Miss
}

// Result is one row of the table. Zero numeric fields print as "-".
type Result struct {
	Scenario string // "1 overhead", ...
	Variant  string
	// Msgs is how many messages (or requests, or items) the row counts.
	Msgs int64
	// Rate is messages (requests, items) per second, over the steady window
	// where there is one.
	Rate float64
	// ReqPer1000 is API requests per 1000 messages (SQS, or DynamoDB for the
	// sink rows).
	ReqPer1000 float64
	// AllocsPerMsg and BytesPerMsg are process-wide heap allocations (the
	// fakes' included) divided by Msgs.
	AllocsPerMsg, BytesPerMsg float64
	// CPUPerMsg is process CPU time (user+sys, fakes included) per
	// message, in microseconds.
	CPUPerMsg float64
	// PeakHeap is the highest sampled heap (live and not yet collected
	// objects) during the run.
	PeakHeap uint64
	// Goroutines at the start, peak and end of the run (0: not measured).
	GStart, GPeak, GEnd int
	Target              string
	Verdict             Verdict
	Note                string
	// Sweep places the rows of scenario 10; nil elsewhere.
	Sweep *SweepPoint
}

// Scenario is one named scenario.
type Scenario struct {
	Num  int
	Name string
	Run  func(ctx context.Context, o Opts) ([]Result, error)
}

// All lists the scenarios in order.
func All() []Scenario {
	return []Scenario{
		{1, "overhead", Overhead},
		{2, "latency", Latency},
		{3, "cost", Cost},
		{4, "gocloud", SideBySide},
		{5, "memory", Memory},
		{6, "catcher", Catcher},
		{7, "sink", Sink},
		{8, "adaptive", Adaptive},
		{9, "fifo", FIFO},
		{10, "sweep", Sweep},
		{11, "cpu", CPU},
		{12, "lambda", Lambda},
		{13, "producer", Producer},
	}
}

// Find returns the scenarios named by a comma-separated list of names or
// numbers; "" or "all" is every scenario.
func Find(list string) ([]Scenario, error) {
	if list == "" || list == "all" {
		return All(), nil
	}
	var out []Scenario
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, s := range All() {
			if name == s.Name || name == strconv.Itoa(s.Num) {
				out = append(out, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("no scenario %q (have 1-13 or %s)", name, names())
		}
	}
	return out, nil
}

func names() string {
	var n []string
	for _, s := range All() {
		n = append(n, s.Name)
	}
	return strings.Join(n, ", ")
}

// Table formats results as a Markdown table.
func Table(rs []Result) string {
	var b strings.Builder
	b.WriteString("| scenario | variant | msgs | msgs/s | req/1000 msgs | allocs/msg | B/msg | CPU µs/msg | peak heap | goroutines start/peak/end | target | verdict | notes |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|\n")
	for _, r := range rs {
		g := "-"
		if r.GStart+r.GPeak+r.GEnd > 0 {
			g = fmt.Sprintf("%d/%d/%d", r.GStart, r.GPeak, r.GEnd)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Scenario, r.Variant, num(float64(r.Msgs), 0), num(r.Rate, 0), num(r.ReqPer1000, 1),
			num(r.AllocsPerMsg, 1), num(r.BytesPerMsg, 0), num(r.CPUPerMsg, 1), mib(r.PeakHeap), g, dash(r.Target), r.Verdict, r.Note)
	}
	return b.String()
}

func num(v float64, prec int) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func mib(b uint64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// quiet is the logger every pool in the scenarios gets: sqspool logs at
// info level on start and stop, which would interleave with the table.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Body is the message every scenario sends: about 200 bytes of JSON.
type Body struct {
	ID       int      `json:"id"`
	Kind     string   `json:"kind"`
	Customer string   `json:"customer"`
	SKU      string   `json:"sku"`
	Quantity int      `json:"quantity"`
	Amount   float64  `json:"amount"`
	Currency string   `json:"currency"`
	Tags     []string `json:"tags"`
	Note     string   `json:"note"`
}

// MakeBody returns the JSON body of message i, 200 bytes long.
func MakeBody(i int) string {
	s := fmt.Sprintf(`{"id":%d,"kind":"order.created","customer":"cust-%06d","sku":"SKU-%05d","quantity":%d,"amount":%d.%02d,"currency":"EUR","tags":["bench","sqspool"],"note":"`,
		i, i%1000000, i%100000, 1+i%7, 10+i%90, i%100)
	pad := 200 - len(s) - 2
	if pad < 0 {
		pad = 0
	}
	return s + strings.Repeat("x", pad) + `"}`
}

// preload sends n messages to url with SendMessageBatch, 10 at a time, on
// the fake directly (before any fault is set).
func preload(ctx context.Context, f *sqsfake.Fake, url string, n int) error {
	return preloadEntries(ctx, f, url, n, func(i int) types.SendMessageBatchRequestEntry {
		return types.SendMessageBatchRequestEntry{MessageBody: aws.String(MakeBody(i))}
	})
}

// preloadEntries is preload with entry(i) as the i-th message; it sets the
// entry ids.
func preloadEntries(ctx context.Context, f *sqsfake.Fake, url string, n int, entry func(i int) types.SendMessageBatchRequestEntry) error {
	ids := [10]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	for i := 0; i < n; i += 10 {
		k := min(10, n-i)
		entries := make([]types.SendMessageBatchRequestEntry, k)
		for j := range k {
			entries[j] = entry(i + j)
			entries[j].Id = &ids[j]
		}
		out, err := f.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
		if err != nil {
			return fmt.Errorf("preload: %w", err)
		}
		if len(out.Failed) > 0 {
			return fmt.Errorf("preload: %d entries failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
	}
	return nil
}

// progress counts handled messages and marks the steady window: the times
// and request counts when 10% and 90% of the total were handled.
type progress struct {
	n      atomic.Int64
	total  int64
	lo, hi int64
	calls  func() int64 // request count now

	mu             sync.Mutex
	loT, hiT       time.Time
	loReq, hiReq   int64
	loDone, hiDone chan struct{}
	done           chan struct{}
}

func newProgress(total int, calls func() int64) *progress {
	return &progress{
		total: int64(total), lo: int64(total) / 10, hi: int64(total) * 9 / 10, calls: calls,
		loDone: make(chan struct{}), hiDone: make(chan struct{}), done: make(chan struct{}),
	}
}

// add counts k handled messages.
func (p *progress) add(k int) {
	n := p.n.Add(int64(k))
	old := n - int64(k)
	if old < p.lo && n >= p.lo {
		p.mark(&p.loT, &p.loReq, p.loDone)
	}
	if old < p.hi && n >= p.hi {
		p.mark(&p.hiT, &p.hiReq, p.hiDone)
	}
	if old < p.total && n >= p.total {
		close(p.done)
	}
}

func (p *progress) mark(t *time.Time, req *int64, ch chan struct{}) {
	p.mu.Lock()
	*t = time.Now()
	if p.calls != nil {
		*req = p.calls()
	}
	p.mu.Unlock()
	close(ch)
}

// window waits for both marks and returns the steady rate and requests per
// 1000 messages between them.
func (p *progress) window() (rate, reqPer1000 float64) {
	<-p.loDone
	<-p.hiDone
	p.mu.Lock()
	defer p.mu.Unlock()
	msgs := float64(p.hi - p.lo)
	d := p.hiT.Sub(p.loT).Seconds()
	if d <= 0 {
		d = 1e-9
	}
	return msgs / d, float64(p.hiReq-p.loReq) * 1000 / msgs
}

// wait waits until the total is reached, ctx ends, or limit passes.
func (p *progress) wait(ctx context.Context, limit time.Duration) error {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("timed out after %v with %d of %d messages handled", limit, p.n.Load(), p.total)
	}
}

// sqsRequests returns a function counting the consumer-side SQS requests a
// fake has served (sends, made by the benchmark itself, are left out).
func sqsRequests(f *sqsfake.Fake) func() int64 {
	return func() int64 {
		var n int64
		for api, c := range f.CallCounts() {
			switch api {
			case sqsfake.OpSendMessage, sqsfake.OpSendMessageBatch, sqsfake.OpCreateQueue:
				continue
			}
			n += int64(c)
		}
		return n
	}
}

// allocs measures process-wide heap allocations and CPU time (user and
// system, of the whole process) between start and stop. CPU time per
// message is the figure least disturbed by other processes on the machine.
type allocs struct {
	before runtime.MemStats
	cpu    time.Duration
}

func startAllocs() *allocs {
	a := &allocs{cpu: cpuTime()}
	runtime.ReadMemStats(&a.before)
	return a
}

func (a *allocs) perMsg(msgs int64) (objs, bytes float64) {
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if msgs <= 0 {
		return 0, 0
	}
	return float64(after.Mallocs-a.before.Mallocs) / float64(msgs), float64(after.TotalAlloc-a.before.TotalAlloc) / float64(msgs)
}

// cpuPerMsg returns the process CPU time since start per message, in µs.
func (a *allocs) cpuPerMsg(msgs int64) float64 {
	if msgs <= 0 {
		return 0
	}
	return float64(cpuTime()-a.cpu) / float64(time.Microsecond) / float64(msgs)
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// LoadAvg returns the first line of /proc/loadavg, to show how busy the
// machine was (other processes share its cores).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// sampler records the peak heap and goroutine count, read every 10 ms
// through runtime/metrics (which does not stop the world).
type sampler struct {
	stop     chan struct{}
	done     chan struct{}
	peakHeap uint64
	peakG    int
}

func startSampler() *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/sched/goroutines:goroutines"}}
	read := func() {
		metrics.Read(samples)
		if v := samples[0].Value; v.Kind() == metrics.KindUint64 {
			s.peakHeap = max(s.peakHeap, v.Uint64())
		}
		if v := samples[1].Value; v.Kind() == metrics.KindUint64 {
			s.peakG = max(s.peakG, int(v.Uint64()))
		}
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			read()
			select {
			case <-t.C:
			case <-s.stop:
				read()
				return
			}
		}
	}()
	return s
}

// end stops the sampler and returns the peaks.
func (s *sampler) end() (heap uint64, goroutines int) {
	close(s.stop)
	<-s.done
	return s.peakHeap, s.peakG
}

// liveHeap collects garbage and returns the bytes of live heap objects.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// percentile returns the p-th percentile (0..100) of ds (ds is reordered).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// measured is what every pool run reports: rate and requests over the
// steady window, CPU, allocations and bytes per message, peak heap, and
// goroutines at start, peak and end (g1 is set by the caller once the run
// has fully stopped).
type measured struct {
	rate, reqPer1000, allocs, bytes, cpu float64
	peakHeap                             uint64
	g0, gPeak, g1                        int
}

// measuring is a measurement under way.
type measuring struct {
	g0 int
	a  *allocs
	s  *sampler
}

// startMeasuring starts counting CPU, allocations, heap and goroutines.
func startMeasuring() measuring {
	g0 := runtime.NumGoroutine()
	_ = liveHeap()
	return measuring{g0: g0, a: startAllocs(), s: startSampler()}
}

// stop ends the measurement of a run that handled n messages.
func (m measuring) stop(n int, p *progress) measured {
	r := measured{g0: m.g0}
	r.cpu = m.a.cpuPerMsg(int64(n))
	r.allocs, r.bytes = m.a.perMsg(int64(n))
	r.peakHeap, r.gPeak = m.s.end()
	r.rate, r.reqPer1000 = p.window()
	return r
}
