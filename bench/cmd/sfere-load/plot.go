package main

import (
	"fmt"
	"image/color"
	"io"
	"os"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

var modeColors = map[string]color.RGBA{
	"sfere":         {R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	"raw":           {R: 0x44, G: 0x44, B: 0x44, A: 0xff},
	"centrifuge":    {R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	"naive":         {R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	"sfere-serve":   {R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	"sfere-nethttp": {R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
}

// plotResults draws (SVG, or PNG for a .png path) three panels against N: the time one broadcast takes
// to reach every stream, sustained deliveries per second, and sustained p99.
func plotResults(path string, sums []*Summary, modes []string, size int) error {
	panels := []struct {
		title, y  string
		val       func(*Summary) float64
		log, down bool // log scale; legend at the bottom
	}{
		{fmt.Sprintf("One %d-byte broadcast reaches all (max)", size), "ms", func(s *Summary) float64 { return s.SingleMax }, false, false},
		{"Sustained broadcasts: throughput", "deliveries / s", func(s *Summary) float64 { return s.PerSec }, false, true},
		{"Sustained broadcasts: p99 latency (log)", "ms", func(s *Summary) float64 { return s.SustP99 }, true, false},
	}
	plots := make([][]*plot.Plot, 1)
	for _, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title
		p.X.Label.Text = "streams (N)"
		p.Y.Label.Text = pn.y
		p.Y.Min = 0
		if pn.log {
			p.Y.Scale = plot.LogScale{}
			p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
			p.Y.Min = 1
		}
		p.Legend.Top = !pn.down
		p.Legend.Left = true
		p.Add(plotter.NewGrid())
		for _, mode := range modes {
			var pts plotter.XYs
			for _, s := range sums {
				if s.Mode == mode && s.Held > 0 && (!pn.log || pn.val(s) > 0) {
					pts = append(pts, plotter.XY{X: float64(s.N), Y: pn.val(s)})
				}
			}
			if len(pts) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			c, ok := modeColors[mode]
			if !ok { // e.g. sfere/3n: a darker shade of its base mode
				base, _, _ := strings.Cut(mode, "/")
				c = modeColors[base]
				c.R, c.G, c.B, c.A = c.R/2, c.G/2, c.B/2+0x40, 0xff
			}
			line.Color, points.Color = c, c
			line.Width = vg.Points(1.5)
			p.Add(line, points)
			p.Legend.Add(mode, line, points)
		}
		plots[0] = append(plots[0], p)
	}
	const w, h = 15 * vg.Inch, 4.5 * vg.Inch
	var canvas interface {
		vg.CanvasSizer
		io.WriterTo
	}
	if strings.HasSuffix(path, ".png") {
		canvas = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(96))}
	} else {
		canvas = vgsvg.New(w, h)
	}
	dc := draw.New(canvas)
	tiles := draw.Tiles{Rows: 1, Cols: len(panels), PadX: vg.Millimeter * 6, PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	canvases := plot.Align(plots, tiles, dc)
	for j := range plots[0] {
		plots[0][j].Draw(canvases[0][j])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := canvas.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
