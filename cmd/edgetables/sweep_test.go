package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchSweepFlags: invalid sweep flags exit 2 with a message naming
// the flag, before anything starts.
func TestBenchSweepFlags(t *testing.T) {
	for _, c := range []struct {
		name    string
		args    []string
		mention string
	}{
		{"keys not a number", []string{"--sweep-keys=1000,lots"}, "--sweep-keys"},
		{"keys zero", []string{"--sweep-keys=0,1000"}, "--sweep-keys 0,1000: 0: must be at least 1"},
		{"keys twice", []string{"--sweep-keys=1000,1000"}, "--sweep-keys 1000,1000: 1000: given twice"},
		{"keys over events", []string{"--sweep-events=5000", "--keys=100", "--sweep-keys=100,10000"}, "--sweep-keys 100,10000: 10000: must be at most 5000"},
		{"keys over sweep events", []string{"--sweep-events=5000"}, "--keys 10000: must not exceed --sweep-events 5000"},
		{"negative events", []string{"--sweep-events=-1"}, "--sweep-events"},
		{"partitions", []string{"--sweep-partitions=8,2048"}, "--sweep-partitions 8,2048: 2048: must be at most 1024"},
		{"partitions empty item", []string{"--sweep-partitions=8,,32"}, "--sweep-partitions"},
		{"records", []string{"--sweep-recovery-records=-1"}, "--sweep-recovery-records"},
		{"tables", []string{"--sweep-tables=0"}, "--sweep-tables 0: 0: must be at least 1"},
		{"curve", []string{"--sweep-curves=pipeline-keys,nope"}, "--sweep-curves"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := realMain(context.Background(), append([]string{"bench", "--sweep"}, c.args...), &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.mention) {
				t.Errorf("stderr does not mention %q:\n%s", c.mention, stderr.String())
			}
		})
	}
}

// TestBenchSweepTiny runs a tiny sweep end to end through the command's
// flags: two points on every curve, a JSON report whose rows hold positive
// values, and an SVG plot per curve that is well-formed XML with a marker
// per value. In -short mode the idle-rss curve, which starts the binary,
// is reported as not run.
func TestBenchSweepTiny(t *testing.T) {
	plots := t.TempDir()
	b := benchCmd{
		Events: 2000, Keys: 100, Partitions: 2, Reads: 1, FailoverKills: 1,
		Sweep:       true,
		SweepCurves: []string{"pipeline-keys", "pipeline-partitions", "recovery-records", "idle-rss"},
		SweepKeys:   []int{10, 1000}, SweepPartitions: []int{1, 2}, SweepRecoveryRecords: []int{200, 2000},
		SweepTables: []int{1, 3}, SweepPlot: plots,
		JSON: true, Dir: t.TempDir(),
	}
	if testing.Short() {
		b.NoSpawn = true
	} else {
		b.Executable = buildBinary(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := b.run(ctx, &stdout, &stderr, slog.New(slog.NewTextHandler(&stderr, nil)))
	t.Logf("sweep took %s", time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	var rep struct {
		Results []json.RawMessage `json:"results"`
		Curves  []struct {
			Name   string   `json:"name"`
			Series []string `json:"series"`
			Rows   []struct {
				X     float64   `json:"x"`
				Y     []float64 `json:"y"`
				Ratio float64   `json:"ratio"`
			} `json:"rows"`
			Notes []string `json:"notes"`
			Plot  string   `json:"plot"`
		} `json:"curves"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not the JSON report: %v\n%s", err, stdout.String())
	}
	if len(rep.Results) != 0 {
		t.Errorf("a sweep ran scenarios: %d results", len(rep.Results))
	}
	want := map[string][]float64{
		"pipeline-keys": {10, 1000}, "pipeline-partitions": {1, 2}, "recovery-records": {200, 2000}, "idle-rss": {1, 2},
	}
	if len(rep.Curves) != len(want) {
		t.Fatalf("%d curves, want %d:\n%s", len(rep.Curves), len(want), stdout.String())
	}
	for _, c := range rep.Curves {
		if c.Name == "idle-rss" && testing.Short() {
			if len(c.Rows) != 0 || len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "no spawn") {
				t.Errorf("idle-rss in -short mode: %+v, want not run (no spawn)", c)
			}
			continue
		}
		xs := want[c.Name]
		if len(c.Rows) != len(xs) || len(c.Notes) != 0 {
			t.Errorf("%s: %d rows, notes %q; want %d rows", c.Name, len(c.Rows), c.Notes, len(xs))
			continue
		}
		values := 0
		for i, r := range c.Rows {
			if r.X != xs[i] || len(r.Y) != len(c.Series) {
				t.Errorf("%s: row %d at x %v with %d values, want x %v and %d", c.Name, i, r.X, len(r.Y), xs[i], len(c.Series))
			}
			for _, y := range r.Y {
				if y <= 0 {
					t.Errorf("%s: row %d: value %v", c.Name, i, y)
				}
			}
			if c.Name != "idle-rss" && r.Ratio <= 0 {
				t.Errorf("%s: row %d: ratio %v", c.Name, i, r.Ratio)
			}
			values += len(r.Y)
		}
		if c.Plot != filepath.Join(plots, "scaling-"+c.Name+".svg") {
			t.Errorf("%s: plot %q", c.Name, c.Plot)
			continue
		}
		if got := svgMarkers(t, c.Plot); got != values {
			t.Errorf("%s: %d markers in %s, want one per value, %d", c.Name, got, c.Plot, values)
		}
	}
}

// svgMarkers checks that path is well-formed XML with an svg root and
// returns its number of circles.
func svgMarkers(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := xml.NewDecoder(f)
	n, root := 0, ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: not well-formed XML: %v", path, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "circle" {
				n++
			}
		}
	}
	if root != "svg" {
		t.Errorf("%s: root element %q", path, root)
	}
	return n
}
