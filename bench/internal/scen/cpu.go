package scen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqspool/sqspool"
	"github.com/sqspool/sqspool/sqsfake"
)

// ServeFakeFlag makes sqsbench serve the HTTP fake for scenario 11 in a
// child process (see ServeFake) instead of running scenarios.
const ServeFakeFlag = "serve-fake"

// ServeFake is the child process of scenario 11: it preloads n messages in a
// fake queue, serves it over loopback HTTP with latency on every call,
// writes "endpoint queueURL" on a line to out, and serves until in ends.
func ServeFake(ctx context.Context, n int, latency time.Duration, in io.Reader, out io.Writer) error {
	h, err := newHTTPFake(ctx, n, latency)
	if err != nil {
		return err
	}
	defer h.close()
	if _, err := fmt.Fprintf(out, "%s %s\n", h.srv.URL, h.url); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, in)
	return err
}

// cpuCell is scenario 11's setting: the CPU-bound row of scenario 4.
var cpuCell = latencyCell

// CPU is scenario 11: CPU time per message of the consumer process alone,
// sqspool against gocloud.dev in scenario 4's CPU-bound cell (10 ms per
// call, 5 ms handler, 64 workers), with the fake in a child process, so
// that the figure leaves out the fake's own work (HTTP serving included).
// It needs Opts.Self, the sqsbench executable, to start the child.
func CPU(ctx context.Context, o Opts) ([]Result, error) {
	if o.Self == "" {
		return []Result{{Scenario: "11 cpu", Variant: "skipped", Note: "needs sqsbench to start the fake in a child process"}}, nil
	}
	n := o.size(30000, 2000)
	type run struct {
		name    string
		consume func(ctx context.Context, client *sqs.Client, url string, p *progress) error
	}
	runs := []run{
		{"sqspool", func(ctx context.Context, client *sqs.Client, url string, p *progress) error {
			return consumeSqspool(ctx, client, url, cpuCell, p)
		}},
		{"gocloud", func(ctx context.Context, client *sqs.Client, url string, p *progress) error {
			return consumeGocloud(ctx, client, url, cpuCell, p)
		}},
	}
	got := make([]Result, 0, len(runs))
	for _, r := range runs {
		o.logf("11 cpu: %s, %d messages, fake in a child process", r.name, n)
		res, err := cpuRun(ctx, o.Self, n, r.consume)
		if err != nil {
			return got, fmt.Errorf("%s: %w", r.name, err)
		}
		res.Variant = fmt.Sprintf("%s: consumer process alone, recv %v, handler %v, %d workers", r.name, cpuCell.latency, cpuCell.handler, cpuCell.workers)
		got = append(got, res)
	}
	ratio := got[0].CPUPerMsg / got[1].CPUPerMsg
	got[0].Target = "≤ 0.7× gocloud's CPU µs/msg"
	got[0].Verdict = verdict(ratio <= 0.7)
	got[0].Note = fmt.Sprintf("%.2f× gocloud's CPU per message; %.2f× its msgs/s", ratio, got[0].Rate/got[1].Rate)
	return got, nil
}

// cpuRun starts the fake in a child process, preloaded with n messages, and
// measures consume's CPU time (this process's: the child's is not counted)
// and rate until it has handled them all.
func cpuRun(ctx context.Context, self string, n int, consume func(ctx context.Context, client *sqs.Client, url string, p *progress) error) (Result, error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(cctx, self, "-"+ServeFakeFlag, "-fake-n", strconv.Itoa(n), "-fake-latency", cpuCell.latency.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return Result{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, err
	}
	if err := cmd.Start(); err != nil {
		return Result{}, err
	}
	ended := func() error {
		_ = stdin.Close() // the child serves until its stdin ends
		return cmd.Wait()
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return Result{}, errors.Join(fmt.Errorf("fake child: %w", err), ended())
	}
	endpoint, url, ok := strings.Cut(strings.TrimSpace(line), " ")
	if !ok {
		return Result{}, errors.Join(fmt.Errorf("fake child said %q", line), ended())
	}
	client := sqsfake.New().NewSDKClient(endpoint)
	p := newProgress(n, nil)
	a := startAllocs()
	cerr := consume(ctx, client, url, p)
	res := Result{Scenario: "11 cpu", Msgs: int64(n), CPUPerMsg: a.cpuPerMsg(int64(n))}
	if err := errors.Join(cerr, ended()); err != nil {
		return res, err
	}
	res.Rate, _ = p.window()
	return res, nil
}

// consumeSqspool consumes from url with a pool (defaults plus WithWorkers)
// until p counts every message, and shuts it down.
func consumeSqspool(ctx context.Context, client *sqs.Client, url string, c cell, p *progress) error {
	pool, err := sqspool.StartPool(ctx, &sqspool.Consumer{Client: client, Queue: url},
		func(ctx context.Context, b *Body) error { time.Sleep(c.handler); p.add(1); return nil },
		sqspool.WithWorkers(c.workers), sqspool.WithLogger(quiet))
	if err != nil {
		return err
	}
	werr := p.wait(ctx, 3*time.Minute)
	return errors.Join(werr, pool.Shutdown(ctx), pool.Wait())
}
