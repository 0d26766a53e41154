package scen

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Consumers compared in the sweep, in the order they run in each cell.
const (
	ConsumerSqspool = "sqspool"
	ConsumerGocloud = "gocloud"
	ConsumerHand    = "hand loop"
)

// SweepPoint places a sweep row: which consumer, at which receive latency
// and handler time, against which bound (workers / handler time).
type SweepPoint struct {
	Consumer         string
	Latency, Handler time.Duration
	Bound            float64 // msgs/s
}

// Parameters of the sweep (scenario 10).
var (
	sweepLatencies = []time.Duration{5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}
	sweepHandlers  = []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond}
)

const (
	sweepWorkers = 64
	sweepSeconds = 2.5 // about how long each run lasts at the bound
)

// runLatencyHand consumes with HandLoop over the HTTP fake: c.workers
// goroutines each receive 10, handle them one after the other and delete
// them with one DeleteMessageBatch.
func runLatencyHand(ctx context.Context, n int, c cell) (latencyRun, error) {
	return overHTTP(ctx, n, c, "hand loop", func(h *httpFake, p *progress) error {
		return HandLoop(ctx, h.client, h.url, c.workers, true, func() { time.Sleep(c.handler) }, p)
	})
}

// Sweep is scenario 10: receive latency (every SQS call) x handler time, 64
// workers, sqspool with defaults plus WithWorkers beside gocloud.dev's
// awssnssqs (64 handler goroutines) and a hand-written SDK loop (64
// goroutines), one run each per cell, over the HTTP fake.
func Sweep(ctx context.Context, o Opts) ([]Result, error) {
	lats, hands := sweepLatencies, sweepHandlers
	if len(o.SweepLatencies) > 0 {
		lats = o.SweepLatencies
	}
	if len(o.SweepHandlers) > 0 {
		hands = o.SweepHandlers
	}
	if o.Short {
		lats, hands = []time.Duration{20 * time.Millisecond}, []time.Duration{10 * time.Millisecond}
	}
	var out []Result
	for _, hd := range hands {
		for _, lat := range lats {
			c := cell{latency: lat, handler: hd, workers: sweepWorkers}
			// At least two full receives per worker, so that every hand
			// loop goroutine has work for the whole window.
			n := min(max(int(c.bound()*sweepSeconds), 2*sweepWorkers*10), 6000)
			if o.Short {
				n = 300
			}
			runs := []struct {
				consumer string
				run      func() (latencyRun, error)
			}{
				{ConsumerSqspool, func() (latencyRun, error) { return runLatencyPoolSDK(ctx, n, c, nil) }},
				{ConsumerGocloud, func() (latencyRun, error) { return runLatencyGocloud(ctx, n, c) }},
				{ConsumerHand, func() (latencyRun, error) { return runLatencyHand(ctx, n, c) }},
			}
			got := make(map[string]latencyRun, len(runs))
			for _, r := range runs {
				lr, err := r.run()
				if err != nil {
					return out, fmt.Errorf("sweep %v/%v %s: %w", lat, hd, r.consumer, err)
				}
				got[r.consumer] = lr
				o.logf("sweep: recv %v, handler %v, %s: %.0f msgs/s (%.0f%% of %.0f), %.1f req/1000, calls %v", lat, hd, r.consumer, lr.rate, 100*lr.rate/c.bound(), c.bound(), lr.reqPer1000, lr.calls)
			}
			g := got[ConsumerGocloud]
			for _, r := range runs {
				lr := got[r.consumer]
				res := lr.result("9 sweep", fmt.Sprintf("recv %v, handler %v: %s", lat, hd, r.consumer))
				res.Msgs = int64(n)
				res.Sweep = &SweepPoint{Consumer: r.consumer, Latency: lat, Handler: hd, Bound: c.bound()}
				res.Note = fmt.Sprintf("%.0f%% of workers/handler %.0f/s; %.2fx gocloud; most concurrent receives %d", 100*lr.rate/c.bound(), c.bound(), lr.rate/g.rate, lr.maxReceives)
				if r.consumer == ConsumerSqspool {
					res.Target = ">= gocloud msgs/s, <= 210 req/1000"
					res.Verdict = verdict(lr.rate >= g.rate && lr.reqPer1000 <= 210)
				}
				out = append(out, res)
			}
		}
	}
	return out, nil
}

// SweepTable formats the sweep rows of rs as one line per cell: each
// consumer's msgs/s, % of the workers/handler bound and requests per 1000.
func SweepTable(rs []Result) string {
	type key struct{ lat, hd time.Duration }
	cells := map[key]map[string]Result{}
	var order []key
	for _, r := range rs {
		if r.Sweep == nil {
			continue
		}
		k := key{r.Sweep.Latency, r.Sweep.Handler}
		if cells[k] == nil {
			cells[k] = map[string]Result{}
			order = append(order, k)
		}
		cells[k][r.Sweep.Consumer] = r
	}
	if len(order) == 0 {
		return ""
	}
	consumers := []string{ConsumerSqspool, ConsumerGocloud, ConsumerHand}
	var b strings.Builder
	b.WriteString("| receive latency | handler | bound (64 workers / handler) |")
	for _, c := range consumers {
		fmt.Fprintf(&b, " %s msgs/s (%% of bound), req/1000 |", c)
	}
	b.WriteString(" sqspool / gocloud |\n|---:|---:|---:|")
	b.WriteString(strings.Repeat("---:|", len(consumers)+1) + "\n")
	for _, k := range order {
		row := cells[k]
		bound := row[ConsumerSqspool].Sweep.Bound
		fmt.Fprintf(&b, "| %v | %v | %.0f/s |", k.lat, k.hd, bound)
		for _, c := range consumers {
			r := row[c]
			fmt.Fprintf(&b, " %.0f (%.0f%%), %.0f |", r.Rate, 100*r.Rate/bound, r.ReqPer1000)
		}
		fmt.Fprintf(&b, " %.2fx |\n", row[ConsumerSqspool].Rate/row[ConsumerGocloud].Rate)
	}
	return b.String()
}

// WriteSweepCSV writes the sweep rows of rs, for cmd/sweepchart.
func WriteSweepCSV(w io.Writer, rs []Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(SweepCSVHeader); err != nil {
		return err
	}
	for _, r := range rs {
		if r.Sweep == nil {
			continue
		}
		s := r.Sweep
		if err := cw.Write([]string{
			s.Consumer, strconv.FormatFloat(ms64(s.Latency), 'f', -1, 64), strconv.FormatFloat(ms64(s.Handler), 'f', -1, 64),
			strconv.FormatFloat(r.Rate, 'f', 1, 64), strconv.FormatFloat(s.Bound, 'f', 1, 64), strconv.FormatFloat(r.ReqPer1000, 'f', 1, 64),
		}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// SweepCSVHeader names WriteSweepCSV's columns.
var SweepCSVHeader = []string{"consumer", "latency_ms", "handler_ms", "msgs_per_s", "bound_per_s", "req_per_1000"}

func ms64(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
