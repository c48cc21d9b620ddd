package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestDistribution(t *testing.T) {
	for _, c := range []struct {
		name    string
		samples []float64
		limit   float64
		want    Distribution
	}{
		{"one", []float64{5}, 10, Distribution{Samples: 1, Min: 5, Median: 5, P90: 5, Max: 5, Limit: 10, Within: 1}},
		{"three, p90 is the largest", []float64{3, 1, 2}, 2,
			Distribution{Samples: 3, Min: 1, Median: 2, P90: 3, Max: 3, Limit: 2, Within: 1}},
		{"ten, p90 is the ninth", []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, 9.5,
			Distribution{Samples: 10, Min: 1, Median: 5.5, P90: 9, Max: 10, Limit: 9.5, Within: 9}},
		{"eleven, p90 is the tenth", []float64{11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0,
			Distribution{Samples: 11, Min: 1, Median: 6, P90: 10, Max: 11}},
		{"twenty, p90 is the eighteenth", seq(20), 18,
			Distribution{Samples: 20, Min: 1, Median: 10.5, P90: 18, Max: 20, Limit: 18, Within: 17}},
		{"the limit itself is not within", []float64{1, 1, 1}, 1,
			Distribution{Samples: 3, Min: 1, Median: 1, P90: 1, Max: 1, Limit: 1}},
	} {
		in := append([]float64(nil), c.samples...)
		got := distribution(in, c.limit)
		if got == nil || *got != c.want {
			t.Errorf("%s: distribution(%v, %v) = %+v, want %+v", c.name, c.samples, c.limit, got, c.want)
		}
		for i := range in {
			if in[i] != c.samples[i] {
				t.Errorf("%s: the samples were changed: %v", c.name, in)
				break
			}
		}
	}
	if distribution(nil, 1) != nil {
		t.Error("distribution of no samples is not nil")
	}
}

func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(i + 1)
	}
	return out
}

// TestWithinShare checks "< 1 s in ≥ 9 of 10 kills": met from the count of
// samples within the limit, judged only over at least 10 samples.
func TestWithinShare(t *testing.T) {
	for _, c := range []struct {
		samples, within int
		met, judged     bool
	}{
		{10, 10, true, true},
		{10, 9, true, true},
		{10, 8, false, true},
		{20, 18, true, true},
		{20, 17, false, true},
		{11, 10, true, true},
		{11, 9, false, true},
		{9, 9, false, false},
		{3, 3, false, false},
	} {
		d := &Distribution{Samples: c.samples, Within: c.within}
		if met, judged := d.withinShare(9, 10); met != c.met || judged != c.judged {
			t.Errorf("%d of %d within: met %v judged %v, want %v %v", c.within, c.samples, met, judged, c.met, c.judged)
		}
	}
	if _, judged := (*Distribution)(nil).withinShare(9, 10); judged {
		t.Error("no distribution judged")
	}
}

func TestInUnit(t *testing.T) {
	got := inUnit([]time.Duration{1500 * time.Millisecond, 250 * time.Microsecond}, time.Millisecond)
	if len(got) != 2 || got[0] != 1500 || got[1] != 0.25 {
		t.Errorf("inUnit = %v", got)
	}
}

// TestMarkdownDistribution checks the table of distributions under the
// results.
func TestMarkdownDistribution(t *testing.T) {
	rep := Report{Results: []Result{
		{Name: "failover: detection → serving, p90 of 10 kills", Unit: "ms", Value: 900, Target: "< 1 s in ≥ 9 of 10 kills", Met: ptr(true),
			Distribution: distribution([]float64{100, 200, 300, 400, 500, 600, 700, 800, 900, 1200}, 1000)},
		{Name: "failover: kill → active, p90 of 3 kills", Unit: "s", Value: 3.5,
			Distribution: distribution([]float64{2.5, 3.5, 3}, 0)},
		{Name: "reads p50", Unit: "µs", Value: 1.25},
	}}
	var b bytes.Buffer
	if err := rep.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| scenario | samples | min | median | p90 | max | within the limit |",
		"| failover: detection → serving, p90 of 10 kills | 10 | 100.0 ms | 550.0 ms | 900.0 ms | 1200.0 ms | 9 of 10 < 1000.0 ms |",
		"| failover: kill → active, p90 of 3 kills | 3 | 2.5 s | 3.0 s | 3.5 s | 3.5 s | — |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out[strings.Index(out, "| scenario | samples"):], "reads p50") {
		t.Errorf("a row without a distribution is in the distributions table:\n%s", out)
	}
}
