package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
)

// plot is a line chart over a logarithmic x axis: one line per series,
// each point marked.
type plot struct {
	title    string
	subtitle string // conditions, in small type under the title ("": none)
	xLabel   string // the quantity on the x axis, with its unit
	yLabel   string // the quantity on the y axis, with its unit
	// logY makes the y axis logarithmic too; otherwise it is linear
	// from 0.
	logY   bool
	series []plotSeries
}

// plotSeries is one line of a plot.
type plotSeries struct {
	name   string
	points []plotPoint // in x order; x > 0 (and y > 0 with logY)
}

// plotPoint is one point of a series, in the units of the axes.
type plotPoint struct{ x, y float64 }

// The plot's layout in SVG user units: the plotting area is the rectangle
// from (svgLeft, svgTop) to (svgWidth-svgRight, svgHeight-svgBottom); the
// legend sits to its right.
const (
	svgWidth  = 640
	svgHeight = 400
	svgLeft   = 72
	svgRight  = 150
	svgTop    = 56
	svgBottom = 56
	// svgPad is the share of the x range left free at each end, so that
	// the first and last points do not sit on the frame.
	svgPad = 0.06
)

// palette holds the series' colours (Okabe–Ito, readable for the
// colour-blind).
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"}

var errEmptyPlot = errors.New("plot: no points")

// axis maps values to positions between the pixels lo and hi.
type axis struct {
	log     bool
	min     float64 // the value at lo (its log10 on a log axis)
	max     float64 // the value at hi (its log10 on a log axis)
	lo, hi  float64
	ticks   []float64
	reverse bool // y grows downwards in SVG
}

// pos returns the position of v.
func (a axis) pos(v float64) float64 {
	if a.log {
		v = math.Log10(v)
	}
	f := (v - a.min) / (a.max - a.min)
	if a.reverse {
		return a.hi - f*(a.hi-a.lo)
	}
	return a.lo + f*(a.hi-a.lo)
}

// xAxis is the logarithmic x axis over xs (sorted), padded by svgPad at
// both ends (half a decade when all xs are equal), with a tick at every x.
func xAxis(xs []float64) axis {
	lmin, lmax := math.Log10(xs[0]), math.Log10(xs[len(xs)-1])
	pad := svgPad * (lmax - lmin)
	if lmax == lmin {
		pad = 0.5
	}
	return axis{log: true, min: lmin - pad, max: lmax + pad, lo: svgLeft, hi: svgWidth - svgRight, ticks: xs}
}

// yAxis is the y axis over the values ys: linear from 0 to a round value
// at or above their maximum, or logarithmic from the decade at or below
// their minimum to the one at or above their maximum.
func yAxis(ys []float64, logY bool) axis {
	a := axis{lo: svgTop, hi: svgHeight - svgBottom, reverse: true, log: logY}
	lo, hi := slices.Min(ys), slices.Max(ys)
	if logY {
		a.min, a.max = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if a.max == a.min {
			a.max++
		}
		decades := a.max - a.min
		for d := a.min; d <= a.max; d++ {
			for _, m := range []float64{1, 2, 5} {
				if m != 1 && (decades > 2 || d == a.max) {
					continue
				}
				a.ticks = append(a.ticks, m*math.Pow(10, d))
			}
		}
		return a
	}
	if hi <= 0 {
		hi = 1
	}
	step := niceStep(hi / 5)
	a.max = math.Ceil(hi/step) * step
	for v := 0.0; v <= a.max+step/2; v += step {
		a.ticks = append(a.ticks, v)
	}
	return a
}

// niceStep returns the smallest of 1, 2, 2.5 and 5 times a power of ten
// that is at least v (v > 0).
func niceStep(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// tickLabel formats an axis value briefly: 8, 0.5, 2.5k, 10k, 1M.
func tickLabel(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 4, 64) + "M"
	case a >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 4, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}

// writeSVG writes p as a standalone SVG document: the title and
// subtitle, the frame
// with the axes' ticks, grid lines and labels, one line with a marker per
// point for each series, and a legend. A marker's tooltip gives its
// values.
func writeSVG(w io.Writer, p plot) error {
	var xs, ys []float64
	for _, s := range p.series {
		for _, pt := range s.points {
			if pt.x <= 0 || math.IsNaN(pt.y) || math.IsInf(pt.y, 0) || (p.logY && pt.y <= 0) {
				return fmt.Errorf("plot %q: series %q: point (%v, %v) off the axes", p.title, s.name, pt.x, pt.y)
			}
			xs, ys = append(xs, pt.x), append(ys, pt.y)
		}
	}
	if len(xs) == 0 {
		return fmt.Errorf("%w: %q", errEmptyPlot, p.title)
	}
	slices.Sort(xs)
	xs = slices.Compact(xs)
	xa, ya := xAxis(xs), yAxis(ys, p.logY)

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, svgHeight, svgWidth, svgHeight)
	fmt.Fprintf(&b, `<title>%s</title>`+"\n", esc(p.title))
	b.WriteString(`<rect width="100%" height="100%" fill="#ffffff"/>` + "\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" text-anchor="middle" font-size="15" font-weight="bold">%s</text>`+"\n",
		(svgLeft+svgWidth-svgRight)/2, esc(p.title))
	if p.subtitle != "" {
		fmt.Fprintf(&b, `<text x="%d" y="40" text-anchor="middle" font-size="11" fill="#555555">%s</text>`+"\n",
			(svgLeft+svgWidth-svgRight)/2, esc(p.subtitle))
	}

	left, right, top, bottom := float64(svgLeft), float64(svgWidth-svgRight), float64(svgTop), float64(svgHeight-svgBottom)
	b.WriteString(`<g stroke="#dddddd" stroke-width="1">` + "\n")
	for _, t := range xa.ticks {
		x := xa.pos(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`+"\n", x, top, x, bottom)
	}
	for _, t := range ya.ticks {
		y := ya.pos(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`+"\n", left, y, right, y)
	}
	b.WriteString("</g>\n")
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333333"/>`+"\n", left, top, right-left, bottom-top)
	b.WriteString(`<g fill="#333333">` + "\n")
	for _, t := range xa.ticks {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", xa.pos(t), bottom+16, esc(tickLabel(t)))
	}
	for _, t := range ya.ticks {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-6, ya.pos(t), esc(tickLabel(t)))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", (left+right)/2, svgHeight-14, esc(p.xLabel+" (log scale)"))
	yLabel := p.yLabel
	if p.logY {
		yLabel += " (log scale)"
	}
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", (top+bottom)/2, esc(yLabel))
	b.WriteString("</g>\n")

	for i, s := range p.series {
		colour := palette[i%len(palette)]
		fmt.Fprintf(&b, `<g class="series" stroke="%s" fill="%s">`+"\n", colour, colour)
		if len(s.points) > 1 {
			b.WriteString(`<polyline fill="none" stroke-width="2" points="`)
			for j, pt := range s.points {
				if j > 0 {
					b.WriteByte(' ')
				}
				fmt.Fprintf(&b, "%.1f,%.1f", xa.pos(pt.x), ya.pos(pt.y))
			}
			b.WriteString(`"/>` + "\n")
		}
		for _, pt := range s.points {
			fmt.Fprintf(&b, `<circle class="point" cx="%.1f" cy="%.1f" r="3.5"><title>%s: %s at %s</title></circle>`+"\n",
				xa.pos(pt.x), ya.pos(pt.y), esc(s.name), esc(tickLabel(pt.y)), esc(tickLabel(pt.x)))
		}
		ly := top + 10 + 20*float64(i)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke-width="2"/>`+"\n", right+12, ly, right+34, ly)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" stroke="none" dominant-baseline="middle">%s</text>`+"\n", right+40, ly, esc(s.name))
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// esc escapes s for XML text and attributes.
func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s)) // writes to a buffer: no error
	return b.String()
}
