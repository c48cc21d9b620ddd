package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
)

// svgDoc is what the tests read back from an SVG: every element's name and
// attributes, and the text of every text element.
type svgDoc struct {
	root    string
	circles []svgCircle
	texts   []string
	lines   int // polylines
}

type svgCircle struct {
	cx, cy float64
	title  string
}

// parseSVG decodes b with encoding/xml, failing the test if it is not
// well-formed XML with an svg root in the SVG namespace.
func parseSVG(t *testing.T, b []byte) svgDoc {
	t.Helper()
	var doc svgDoc
	d := xml.NewDecoder(bytes.NewReader(b))
	var stack []string
	var circle *svgCircle
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 {
				doc.root = tok.Name.Space + " " + tok.Name.Local
			}
			stack = append(stack, tok.Name.Local)
			attr := func(name string) string {
				for _, a := range tok.Attr {
					if a.Name.Local == name {
						return a.Value
					}
				}
				return ""
			}
			switch tok.Name.Local {
			case "circle":
				cx, err1 := strconv.ParseFloat(attr("cx"), 64)
				cy, err2 := strconv.ParseFloat(attr("cy"), 64)
				if err1 != nil || err2 != nil {
					t.Fatalf("circle with cx %q, cy %q", attr("cx"), attr("cy"))
				}
				circle = &svgCircle{cx: cx, cy: cy}
			case "polyline":
				doc.lines++
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
			if tok.Name.Local == "circle" {
				doc.circles = append(doc.circles, *circle)
				circle = nil
			}
		case xml.CharData:
			switch {
			case len(stack) > 0 && stack[len(stack)-1] == "text":
				doc.texts = append(doc.texts, string(tok))
			case circle != nil && len(stack) > 0 && stack[len(stack)-1] == "title":
				circle.title += string(tok)
			}
		}
	}
	if doc.root != "http://www.w3.org/2000/svg svg" {
		t.Fatalf("root element %q, want svg in the SVG namespace", doc.root)
	}
	return doc
}

func near(a, b float64) bool { return math.Abs(a-b) < 0.11 } // positions are written with one decimal

// TestSVGLogAxis checks that the SVG is valid XML, that points land where a
// logarithmic x axis puts them (equal ratios, equal distances; the middle
// decade in the middle), that a linear y axis starts at 0, and that the
// labels are there and escaped.
func TestSVGLogAxis(t *testing.T) {
	p := plot{
		title: "events/s vs keys <&>", subtitle: "one run", xLabel: "keys", yLabel: "events/s",
		series: []plotSeries{
			{name: "edgetables", points: []plotPoint{{1e3, 100}, {1e4, 50}, {1e5, 0}}},
			{name: "raw", points: []plotPoint{{1e3, 200}, {math.Sqrt(1e3 * 1e4), 150}}},
		},
	}
	var b bytes.Buffer
	if err := writeSVG(&b, p); err != nil {
		t.Fatal(err)
	}
	doc := parseSVG(t, b.Bytes())
	if len(doc.circles) != 5 || doc.lines != 2 {
		t.Fatalf("%d circles and %d lines, want 5 and 2:\n%s", len(doc.circles), doc.lines, b.String())
	}
	e := doc.circles[:3]
	left, right := float64(svgLeft), float64(svgWidth-svgRight)
	if !near(e[1].cx-e[0].cx, e[2].cx-e[1].cx) || e[1].cx-e[0].cx < 10 {
		t.Errorf("x of 1k, 10k, 100k at %v, %v, %v: not evenly spaced", e[0].cx, e[1].cx, e[2].cx)
	}
	if !near(e[1].cx, (left+right)/2) {
		t.Errorf("10k, the middle of 1k..100k, at x %v, want %v", e[1].cx, (left+right)/2)
	}
	if want := left + svgPad/(1+2*svgPad)*(right-left); !near(e[0].cx, want) {
		t.Errorf("1k, the smallest x, at %v, want %v (the padding)", e[0].cx, want)
	}
	if r := doc.circles[4]; !near(r.cx, (e[0].cx+e[1].cx)/2) {
		t.Errorf("√(1k·10k) at x %v, want halfway between 1k and 10k, %v", r.cx, (e[0].cx+e[1].cx)/2)
	}
	// y: linear from 0 at the bottom to 200 (a round maximum) at the top.
	bottom, top := float64(svgHeight-svgBottom), float64(svgTop)
	if !near(e[2].cy, bottom) || !near(doc.circles[3].cy, top) || !near(e[1].cy, (top+bottom)/2+(bottom-top)/4) {
		t.Errorf("y of 0, 200 and 50 at %v, %v, %v; want %v, %v and %v", e[2].cy, doc.circles[3].cy, e[1].cy,
			bottom, top, (top+bottom)/2+(bottom-top)/4)
	}
	if !strings.Contains(e[1].title, "edgetables: 50 at 10k") {
		t.Errorf("tooltip %q", e[1].title)
	}
	all := strings.Join(doc.texts, "|")
	for _, want := range []string{"events/s vs keys <&>", "one run", "keys (log scale)", "events/s", "1k", "10k", "100k", "edgetables", "raw", "|0|", "200"} {
		if !strings.Contains(all, want) {
			t.Errorf("no text %q in %q", want, all)
		}
	}
}

// TestSVGLogY checks a logarithmic y axis: decades evenly spaced, and the
// errors for points that cannot be drawn.
func TestSVGLogY(t *testing.T) {
	p := plot{title: "recovery", xLabel: "records", yLabel: "time (s)", logY: true,
		series: []plotSeries{{name: "edgetables", points: []plotPoint{{1e5, 0.1}, {1e6, 1}, {1e7, 10}}}}}
	var b bytes.Buffer
	if err := writeSVG(&b, p); err != nil {
		t.Fatal(err)
	}
	c := parseSVG(t, b.Bytes()).circles
	if len(c) != 3 || !near(c[0].cy-c[1].cy, c[1].cy-c[2].cy) || !near(c[0].cy, svgHeight-svgBottom) || !near(c[2].cy, svgTop) {
		t.Errorf("0.1, 1, 10 s on a log axis at y %+v: not evenly spaced from the bottom to the top", c)
	}
	for _, bad := range []plot{
		{title: "empty"},
		{title: "x 0", series: []plotSeries{{name: "s", points: []plotPoint{{0, 1}}}}},
		{title: "y 0 on log", logY: true, series: []plotSeries{{name: "s", points: []plotPoint{{1, 0}}}}},
		{title: "NaN", series: []plotSeries{{name: "s", points: []plotPoint{{1, math.NaN()}}}}},
	} {
		if err := writeSVG(io.Discard, bad); err == nil {
			t.Errorf("%s: no error", bad.title)
		}
	}
}

// TestSVGOnePoint: a single x still makes a valid plot, the point in the
// middle.
func TestSVGOnePoint(t *testing.T) {
	var b bytes.Buffer
	if err := writeSVG(&b, plot{title: "one", series: []plotSeries{{name: "s", points: []plotPoint{{8, 3}}}}}); err != nil {
		t.Fatal(err)
	}
	c := parseSVG(t, b.Bytes()).circles
	if len(c) != 1 || !near(c[0].cx, float64(svgLeft+svgWidth-svgRight)/2) {
		t.Errorf("one point at %+v, want the middle", c)
	}
}

func TestTicks(t *testing.T) {
	for _, c := range []struct {
		v, want float64
	}{{0.3, 0.5}, {1, 1}, {1.1, 2}, {2.2, 2.5}, {30_000, 50_000}, {99, 100}} {
		if got := niceStep(c.v); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("niceStep(%v) = %v, want %v", c.v, got, c.want)
		}
	}
	for v, want := range map[float64]string{8: "8", 0.5: "0.5", 2500: "2.5k", 1e4: "10k", 1e6: "1M", 1.25e7: "12.5M"} {
		if got := tickLabel(v); got != want {
			t.Errorf("tickLabel(%v) = %q, want %q", v, got, want)
		}
	}
}
