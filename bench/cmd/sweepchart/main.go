// Command sweepchart draws sqsbench's sweep (scenario 10) as an SVG: one
// panel per handler time, msgs/s against receive latency for each consumer,
// with the workers/handler bound dashed.
//
//	cd bench && go run ./cmd/sqsbench -scenario sweep -csv sweep.csv
//	cd bench && go run ./cmd/sweepchart -in sweep.csv -out ../docs/sweep.svg
//
// -before adds an earlier run's sqspool line, labelled "sqspool before".
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/sqspool/sqspool/bench/internal/scen"
)

// point is one CSV row.
type point struct {
	consumer               string
	latency, handler, rate float64
	bound                  float64
}

func main() {
	in := flag.String("in", "sweep.csv", "sweep CSV written by sqsbench -csv")
	before := flag.String("before", "", "optional earlier sweep CSV: its sqspool line is drawn as \"sqspool before\"")
	out := flag.String("out", "sweep.svg", "SVG to write")
	flag.Parse()
	pts, err := read(*in, "")
	if err == nil && *before != "" {
		var old []point
		old, err = read(*before, "before")
		pts = append(pts, old...)
	}
	if err == nil {
		err = write(*out, pts)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sweepchart:", err)
		os.Exit(1)
	}
}

// read loads a sweep CSV; with a tag, only its sqspool rows, renamed.
func read(path, tag string) ([]point, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) == 0 || !slices.Equal(rows[0], scen.SweepCSVHeader) {
		return nil, fmt.Errorf("%s: not a sweep CSV (header %v)", path, scen.SweepCSVHeader)
	}
	var pts []point
	for i, r := range rows[1:] {
		p := point{consumer: r[0]}
		for j, dst := range []*float64{&p.latency, &p.handler, &p.rate, &p.bound} {
			if *dst, err = strconv.ParseFloat(r[j+1], 64); err != nil {
				return nil, fmt.Errorf("%s row %d: %w", path, i+2, err)
			}
		}
		if tag != "" {
			if p.consumer != scen.ConsumerSqspool {
				continue
			}
			p.consumer += " " + tag
		}
		pts = append(pts, p)
	}
	return pts, nil
}

var colors = map[string]string{
	scen.ConsumerSqspool:             "#1f77b4",
	scen.ConsumerSqspool + " before": "#9ecae1",
	scen.ConsumerGocloud:             "#ff7f0e",
	scen.ConsumerHand:                "#7f7f7f",
}

const (
	panelW, panelH = 420, 260
	margin         = 60
	cols           = 2
)

func write(path string, pts []point) error {
	var handlers, latencies []float64
	var consumers []string
	for _, p := range pts {
		handlers = appendNew(handlers, p.handler)
		latencies = appendNew(latencies, p.latency)
		if !slices.Contains(consumers, p.consumer) {
			consumers = append(consumers, p.consumer)
		}
	}
	slices.Sort(handlers)
	slices.Sort(latencies)
	slices.Sort(consumers)
	if len(handlers) == 0 {
		return fmt.Errorf("no sweep rows")
	}
	rows := (len(handlers) + cols - 1) / cols
	w, h := cols*(panelW+margin)+margin, rows*(panelH+margin)+margin+30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	// Legend.
	for i, c := range append(consumers, "workers/handler bound") {
		x := margin + i*170
		dash, color := "", colors[c]
		if color == "" {
			dash, color = ` stroke-dasharray="5,4"`, "black"
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="20" x2="%d" y2="20" stroke="%s" stroke-width="2"%s/><text x="%d" y="24">%s</text>`+"\n", x, x+24, color, dash, x+30, c)
	}
	for i, hd := range handlers {
		ox := margin + (i%cols)*(panelW+margin)
		oy := margin + 30 + (i/cols)*(panelH+margin)
		panel(&b, pts, hd, latencies, consumers, ox, oy)
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// panel draws one handler time's lines with its top-left corner at ox, oy.
func panel(b io.StringWriter, pts []point, hd float64, latencies []float64, consumers []string, ox, oy int) {
	var top, bound float64
	for _, p := range pts {
		if p.handler == hd {
			top = math.Max(top, p.rate)
			bound = p.bound
		}
	}
	// The bound is drawn when it is near the rates; far above them (the CPU
	// is the limit) it would flatten every line, and the title gives it.
	onScale := bound <= 2*top
	if onScale {
		top = math.Max(top, bound)
	}
	top = niceCeil(top)
	x := func(lat float64) float64 {
		i := slices.Index(latencies, lat)
		return float64(ox) + float64(i)*float64(panelW)/float64(max(len(latencies)-1, 1))
	}
	y := func(v float64) float64 { return float64(oy+panelH) - v/top*panelH }
	title := fmt.Sprintf("handler %g ms, 64 workers: bound %.0f/s", hd, bound)
	if !onScale {
		title += " (off scale)"
	}
	_, _ = b.WriteString(fmt.Sprintf(`<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", ox, oy-10, title))
	_, _ = b.WriteString(fmt.Sprintf(`<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#ccc"/>`+"\n", ox, oy, panelW, panelH))
	for k := 0; k <= 4; k++ {
		v := top * float64(k) / 4
		_, _ = b.WriteString(fmt.Sprintf(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%.0f</text>`+"\n",
			ox, y(v), ox+panelW, y(v), ox-4, y(v)+4, v))
	}
	for _, lat := range latencies {
		_, _ = b.WriteString(fmt.Sprintf(`<text x="%.1f" y="%d" text-anchor="middle">%g ms</text>`+"\n", x(lat), oy+panelH+16, lat))
	}
	_, _ = b.WriteString(fmt.Sprintf(`<text x="%d" y="%d" text-anchor="middle">receive latency (every SQS call)</text>`+"\n", ox+panelW/2, oy+panelH+32))
	_, _ = b.WriteString(fmt.Sprintf(`<text x="%d" y="%d" transform="rotate(-90 %d %d)" text-anchor="middle">msgs/s</text>`+"\n", ox-46, oy+panelH/2, ox-46, oy+panelH/2))
	if onScale {
		_, _ = b.WriteString(fmt.Sprintf(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black" stroke-dasharray="5,4"/>`+"\n", ox, y(bound), ox+panelW, y(bound)))
	}
	for _, c := range consumers {
		var line []string
		for _, lat := range latencies {
			for _, p := range pts {
				if p.consumer == c && p.handler == hd && p.latency == lat {
					line = append(line, fmt.Sprintf("%.1f,%.1f", x(lat), y(p.rate)))
				}
			}
		}
		_, _ = b.WriteString(fmt.Sprintf(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(line, " "), colors[c]))
	}
}

func appendNew(s []float64, v float64) []float64 {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
