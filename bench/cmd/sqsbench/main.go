// Command sqsbench runs the sqspool benchmark scenarios in one process and
// prints a table: messages per second, SQS requests per 1000 messages,
// allocations and bytes per message, peak heap and goroutines, each row with
// its target and PASS or MISS.
//
//	cd bench && go run ./cmd/sqsbench                 # every scenario, < 5 min
//	cd bench && go run ./cmd/sqsbench -short          # CI smoke, < 30 s
//	cd bench && go run ./cmd/sqsbench -scenario cost  # one (or a list: 1,3,memory)
//
// Targets are reported, never enforced: the exit status is non-zero only
// when a scenario is broken (an error, lost or undeleted messages, a
// timeout), in -short mode and in full mode alike.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/sqspool/sqspool/bench/internal/scen"
)

func main() {
	short := flag.Bool("short", false, "CI smoke: every scenario at small sizes (< 30 s); fails only if something is broken")
	which := flag.String("scenario", "all", "scenarios to run: names or numbers, comma-separated (1 overhead, 2 latency, 3 cost, 4 gocloud, 5 memory, 6 catcher, 7 sink, 8 adaptive, 9 fifo, 10 sweep, 11 cpu, 12 lambda, 13 producer)")
	csvPath := flag.String("csv", "", "also write the sweep's rows (scenario 10) as CSV to this file, for cmd/sweepchart")
	quiet := flag.Bool("q", false, "no progress lines on stderr")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	var lats, hands durations
	flag.Var(&lats, "latencies", "the sweep's receive latencies, comma-separated (default: 5ms,20ms,50ms,100ms)")
	flag.Var(&hands, "handlers", "the sweep's handler times, comma-separated (default: 1ms,10ms,100ms,500ms)")
	serveFake := flag.Bool(scen.ServeFakeFlag, false, "internal: serve the fake for scenario 11 (the child process)")
	fakeN := flag.Int("fake-n", 0, "internal: messages the child's fake holds")
	fakeLatency := flag.Duration("fake-latency", 0, "internal: latency of every call on the child's fake")
	flag.Parse()
	if *serveFake {
		if err := scen.ServeFake(context.Background(), *fakeN, *fakeLatency, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "sqsbench fake:", err)
			os.Exit(1)
		}
		return
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sqsbench:", err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "sqsbench:", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}

	list, err := scen.Find(*which)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sqsbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	o := scen.Opts{Short: *short, SweepLatencies: lats, SweepHandlers: hands}
	if self, err := os.Executable(); err == nil {
		o.Self = self
	}
	if !*quiet {
		o.Log = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	fmt.Printf("sqsbench: %s, GOMAXPROCS=%d, NumCPU=%d, %s, short=%v\n", runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339), *short)
	fmt.Printf("load average at start: %s\n", scen.LoadAvg())
	var all []scen.Result
	failed := 0
	began := time.Now()
	for _, s := range list {
		t0 := time.Now()
		rs, err := s.Run(ctx, o)
		all = append(all, rs...)
		if err != nil {
			failed++
			fmt.Fprintf(os.Stderr, "sqsbench: scenario %d %s BROKEN: %v\n", s.Num, s.Name, err)
			all = append(all, scen.Result{Scenario: fmt.Sprintf("%d %s", s.Num, s.Name), Variant: "BROKEN", Note: err.Error()})
		}
		if o.Log != nil {
			o.Log("scenario %d %s done in %v (load average %s)", s.Num, s.Name, time.Since(t0).Round(time.Millisecond), scen.LoadAvg())
		}
	}
	fmt.Println()
	fmt.Print(scen.Table(all))
	if t := scen.SweepTable(all); t != "" {
		fmt.Printf("\nsweep (scenario 10):\n\n%s", t)
	}
	if *csvPath != "" {
		if err := writeCSV(*csvPath, all); err != nil {
			fmt.Fprintln(os.Stderr, "sqsbench:", err)
			failed++
		}
	}
	fmt.Printf("\ntotal time %v; load average at end: %s\n", time.Since(began).Round(time.Second), scen.LoadAvg())
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "sqsbench: %d scenario(s) broken\n", failed)
		os.Exit(1)
	}
}

func writeCSV(path string, rs []scen.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := scen.WriteSweepCSV(f, rs); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// durations is a flag of comma-separated durations.
type durations []time.Duration

func (d *durations) String() string {
	var parts []string
	for _, v := range *d {
		parts = append(parts, v.String())
	}
	return strings.Join(parts, ",")
}

func (d *durations) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		v, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil {
			return err
		}
		*d = append(*d, v)
	}
	return nil
}
