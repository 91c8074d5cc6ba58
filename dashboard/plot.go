package dashboard

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// The size of a plot, in SVG user units (the page scales it).
const (
	plotWidth  = 240
	plotHeight = 48
)

// plot is one small time series, drawn server-side as SVG polylines: one
// per series and per stretch of samples without a gap (no sampler ran
// while no page was open, and a line across that time would be made up).
type plot struct {
	Title  string
	Last   string // the newest value, as text
	Max    string // the top of the scale, as text
	Series []series
}

type series struct {
	Class    string   // "a" or "b": the first or second line's colour
	Segments []string // SVG polyline points, "x,y x,y …"
}

// plotSpec says what one plot draws: its lines' values at a point (false:
// none there) and how its figures are written.
type plotSpec struct {
	title string
	text  func(float64) string
	lines []func(point) (float64, bool)
}

// plotsLocked draws the plots of the samples within the window ending at now.
func (d *Dashboard) plotsLocked(now time.Time) []plot {
	from := now.Add(-d.opts.Window)
	gap := 3 * d.opts.Interval
	num := func(v float64) string { return rateText(v) }
	count := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
	bytes := func(v float64) string { return bytesText(v) }
	perSec := func(v float64) string { return bytesText(v) + "/s" }
	rated := func(get func(point) float64) func(point) (float64, bool) {
		return func(p point) (float64, bool) { return get(p), p.hasRates }
	}
	// measured is a latency where the interval had deliveries, in seconds.
	measured := func(get func(point) time.Duration) func(point) (float64, bool) {
		return func(p point) (float64, bool) { return get(p).Seconds(), p.hasRates && p.r.latencies > 0 }
	}
	latency := func(v float64) string { return durationText(time.Duration(v * float64(time.Second))) }
	always := func(get func(point) float64) func(point) (float64, bool) {
		return func(p point) (float64, bool) { return get(p), true }
	}
	specs := []plotSpec{
		{"streams", count, []func(point) (float64, bool){always(func(p point) float64 { return float64(p.streams) })}},
		{"opens / ends per s", num, []func(point) (float64, bool){
			rated(func(p point) float64 { return p.r.opens }),
			rated(func(p point) float64 { return p.r.ends }),
		}},
		{"deliveries per s", num, []func(point) (float64, bool){rated(func(p point) float64 { return p.r.delivered })}},
		{"delivery latency p50 / p99", latency, []func(point) (float64, bool){
			measured(func(p point) time.Duration { return p.r.p50 }),
			measured(func(p point) time.Duration { return p.r.p99 }),
		}},
		{"bytes out", perSec, []func(point) (float64, bool){rated(func(p point) float64 { return p.r.bytes })}},
		{"goroutines", count, []func(point) (float64, bool){always(func(p point) float64 { return float64(p.goroutines) })}},
		{"heap", bytes, []func(point) (float64, bool){always(func(p point) float64 { return float64(p.heap) })}},
	}
	if len(d.opts.Trackers) > 0 {
		specs = slices.Insert(specs, 1, plotSpec{"people", count,
			[]func(point) (float64, bool){always(func(p point) float64 { return float64(p.people) })}})
	}
	plots := make([]plot, 0, len(specs))
	for _, sp := range specs {
		top := 0.0
		last, hasLast := 0.0, false
		for _, p := range d.points {
			if p.at.Before(from) {
				continue
			}
			if v, ok := sp.lines[0](p); ok {
				last, hasLast = v, true
			}
			for _, line := range sp.lines {
				if v, ok := line(p); ok {
					top = max(top, v)
				}
			}
		}
		pl := plot{Title: sp.title, Last: "–", Max: sp.text(top)}
		if hasLast {
			pl.Last = sp.text(last)
		}
		for i, line := range sp.lines {
			s := series{Class: string(rune('a' + i))}
			s.Segments = segments(d.points, from, now, gap, top, line)
			pl.Series = append(pl.Series, s)
		}
		plots = append(plots, pl)
	}
	return plots
}

// segments returns the polylines of one series: x is the time within
// [from, to], y the value scaled to top (zero at the bottom); a gap
// longer than gap between samples starts a new polyline.
func segments(points []point, from, to time.Time, gap time.Duration, top float64, value func(point) (float64, bool)) []string {
	span := to.Sub(from).Seconds()
	if span <= 0 {
		return nil
	}
	var out []string
	var b strings.Builder
	var prev time.Time
	n := 0
	flush := func() {
		if n > 1 {
			out = append(out, b.String())
		}
		b.Reset()
		n = 0
	}
	for _, p := range points {
		v, ok := value(p)
		if p.at.Before(from) || !ok {
			continue
		}
		if n > 0 && p.at.Sub(prev) > gap {
			flush()
		}
		prev = p.at
		x := p.at.Sub(from).Seconds() / span * plotWidth
		y := float64(plotHeight)
		if top > 0 {
			y = plotHeight - v/top*(plotHeight-2) // 2 units of headroom
		}
		if n > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(x, 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
		n++
	}
	flush()
	return out
}
