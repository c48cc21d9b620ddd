package bench

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSweepConfig checks the sweep's defaults and that every invalid
// setting is refused, naming the field, before anything starts.
func TestSweepConfig(t *testing.T) {
	cfg := Config{Events: 50_000, Sweep: &SweepConfig{}}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	s := cfg.Sweep
	if !slices.Equal(s.Keys, []int{1000, 10_000}) || s.Events != 50_000 || !slices.Equal(s.Curves, SweepCurves) ||
		!slices.Equal(s.Partitions, DefaultSweepPartitions) || !slices.Equal(s.RecoveryRecords, DefaultSweepRecoveryRecords) ||
		!slices.Equal(s.Tables, DefaultSweepTables) {
		t.Errorf("defaults: %+v", *s)
	}
	for events, want := range map[int][]int{500: {500}, 1000: {1000}, 10_000_000: {1000, 10_000, 100_000, 1_000_000}} {
		if got := DefaultSweepKeys(events); !slices.Equal(got, want) {
			t.Errorf("DefaultSweepKeys(%d) = %v, want %v", events, got, want)
		}
	}
	for _, c := range []struct {
		name    string
		sweep   SweepConfig
		mention string
	}{
		{"unknown curve", SweepConfig{Curves: []string{"nope"}}, "Sweep.Curves"},
		{"negative events", SweepConfig{Events: -1}, "Sweep.Events"},
		{"keys over events", SweepConfig{Events: 20_000, Keys: []int{100, 30_000}}, "Sweep.Keys: 30000: must be at most 20000"},
		{"zero keys", SweepConfig{Keys: []int{0}}, "Sweep.Keys: 0"},
		{"keys twice", SweepConfig{Keys: []int{10, 10}}, "Sweep.Keys: 10: given twice"},
		{"partitions", SweepConfig{Partitions: []int{8, 2048}}, "Sweep.Partitions: 2048"},
		{"records", SweepConfig{RecoveryRecords: []int{-5}}, "Sweep.RecoveryRecords: -5"},
		{"tables", SweepConfig{Tables: []int{1, 101}}, "Sweep.Tables: 101"},
		{"config keys over sweep events", SweepConfig{Events: 100}, "Keys 10000 exceeds Sweep.Events 100"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sweep := c.sweep
			_, err := Run(context.Background(), Config{Sweep: &sweep})
			if err == nil || !strings.Contains(err.Error(), c.mention) {
				t.Errorf("error %v, want one naming %q", err, c.mention)
			}
		})
	}
	// The caller's lists are not changed by the defaults.
	in := SweepConfig{}
	cfg = Config{Sweep: &in}
	if err := cfg.setDefaults(); err != nil || in.Keys != nil || cfg.Sweep == &in {
		t.Errorf("setDefaults changed the caller's SweepConfig: %+v, %v", in, err)
	}
}

// TestCurvesMarkdown checks a curve's Markdown: the table with a column per
// series, the ratio and other CPU, the plot and the notes.
func TestCurvesMarkdown(t *testing.T) {
	rep := Report{
		Machine: Machine{Date: "2026-12-05T00:00:00Z", NumCPU: 2},
		Curves: []Curve{{
			Name: CurvePipelineKeys, Title: "Pipeline throughput vs keys", X: "keys", Unit: "events/s", Fixed: "10 events",
			Series: []string{"edgetables", "raw loop"}, Ratio: "edgetables ÷ raw loop", Plot: "docs/scaling-pipeline-keys.svg",
			Rows:  []Row{{X: 1000, Y: []float64{150_000, 100_000}, Ratio: 1.5, OtherCPU: ptr(0.02), Note: "fast"}},
			Notes: []string{"10,000 keys: failed: boom"},
		}, {
			Name: CurveRecoveryRecords, Title: "Recovery", X: "records", Unit: "s", Series: []string{"edgetables"},
			Rows: []Row{{X: 1e7, Y: []float64{12.345}}, {X: 1e5, Y: []float64{0.01234}}},
		}},
	}
	var b strings.Builder
	if err := rep.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"## Scaling sweep (each point measured once)",
		"### Pipeline throughput vs keys\n\n10 events.",
		"| keys | edgetables (events/s) | raw loop (events/s) | edgetables ÷ raw loop | other CPU |",
		"| 1,000 | 150k | 100k | 1.50× | 2% |",
		"Plot: docs/scaling-pipeline-keys.svg",
		"- 10,000 keys: failed: boom",
		"- 1,000 keys: fast",
		"| records | edgetables (s) |\n|---:|---:|\n", // no other CPU known: no column
		"| 10,000,000 | 12.3 |\n",
		"| 100,000 | 0.012 |\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "| scenario |") {
		t.Errorf("a sweep's Markdown has the scenarios' table:\n%s", out)
	}
}

// TestSweepDiskShort runs the recovery curve with a point just too big for
// the free disk: it is skipped with a note saying why, and the other point
// is measured. (Should the check not work, the point would start writing
// its records, and the timeout ends it.)
func TestSweepDiskShort(t *testing.T) {
	dir := t.TempDir()
	free, err := freeDisk(dir)
	if err != nil {
		t.Skip(err)
	}
	huge := free/diskPerRecord + 1_000_000
	if huge > math.MaxInt32 {
		t.Skipf("%d bytes free: the disk is not short", free)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Events: 1000, Keys: 10, Partitions: 2, Dir: dir,
		Sweep: &SweepConfig{Curves: []string{CurveRecoveryRecords}, RecoveryRecords: []int{200, int(huge)}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Curves) != 1 {
		t.Fatalf("curves: %+v", rep.Curves)
	}
	c := rep.Curves[0]
	if len(c.Rows) != 1 || c.Rows[0].X != 200 || c.Rows[0].Y[0] <= 0 || c.Rows[0].Y[1] <= 0 {
		t.Errorf("rows %+v, want the 200-record point measured", c.Rows)
	}
	if want := count(int(huge)) + " records: skipped: needs about "; len(c.Notes) != 1 || !strings.Contains(c.Notes[0], want) ||
		!strings.Contains(c.Notes[0], "GiB free in "+dir) {
		t.Errorf("notes %q, want the %s-record point skipped for the disk", c.Notes, count(int(huge)))
	}
}
