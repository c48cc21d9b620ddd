package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
)

// TestBenchTiny runs every scenario of the bench with tiny sizes, so that
// the command keeps working: every result is present with a positive value
// and baseline. The failover scenario starts a cluster of three processes
// of the binary, kills a node twice (restarting it in between) with
// standbys, and fails if a key reads wrong after a kill
// or the restarted node does not rejoin. In -short
// mode nothing starts the binary: the footprint reports only its size and
// the failover is reported as not run.
func TestBenchTiny(t *testing.T) {
	b := benchCmd{
		Events: 2000, Keys: 100, Partitions: 2, Reads: 500,
		// Two kills with standbys, the second after the first victim's
		// restart and rejoin, and no cluster without standbys: as many
		// kills as before the scenario repeated them (CI time).
		FailoverKills: 2, FailoverBase: 0,
		Scenarios: []string{"pipeline", "recovery", "failover", "reads", "footprint"},
		JSON:      true, Dir: t.TempDir(),
		// No release build: TestReleaseBinary (package bench) makes one,
		// and a second, cold in CI, would cost it about a minute.
		ModuleDir: "-",
	}
	if testing.Short() {
		b.NoSpawn = true
	} else {
		b.Executable = buildBinary(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := b.run(ctx, &stdout, &stderr, slog.New(slog.NewTextHandler(&stderr, nil)))
	t.Logf("bench took %s", time.Since(start).Round(time.Millisecond))
	if testing.Verbose() {
		t.Logf("stderr:\n%s", stderr.String())
	}
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	var rep struct {
		Machine struct {
			NumCPU     int    `json:"num_cpu"`
			NATSServer string `json:"nats_server"`
		} `json:"machine"`
		Results []struct {
			Name          string  `json:"name"`
			Value         float64 `json:"value"`
			Unit          string  `json:"unit"`
			Baseline      string  `json:"baseline"`
			BaselineValue float64 `json:"baseline_value"`
			Ratio         float64 `json:"ratio"`
		} `json:"results"`
		NotRun []struct {
			Name   string `json:"name"`
			Reason string `json:"reason"`
		} `json:"not_run"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not the JSON report: %v\n%s", err, stdout.String())
	}
	if rep.Machine.NumCPU < 1 || rep.Machine.NATSServer == "" {
		t.Errorf("machine not described: %+v", rep.Machine)
	}
	want := []string{
		"pipeline, K=100 (at-least-once)", "pipeline, K=N=2,000 (at-least-once)",
		"pipeline, K=100 (exactly-once)", "recovery, ", "reads: Table.Lookup in process",
		"reads: Table.Lookup p50", "reads: HTTP GET /v1/tables", "reads: HTTP GET, net/http's Client", "footprint: binary size",
	}
	if !testing.Short() {
		want = append(want, "footprint: idle RSS", "footprint: peak RSS",
			"failover with standby: detection → serving, p90 of 2 kills", "failover with standby: longest recovery",
			"failover with standby: kill → every moved partition active, p90 of 2 kills")
	}
	for _, w := range want {
		found := false
		for _, r := range rep.Results {
			if !strings.HasPrefix(r.Name, w) {
				continue
			}
			found = true
			if r.Value <= 0 || r.Unit == "" {
				t.Errorf("%s: value %v %s", r.Name, r.Value, r.Unit)
			}
			if r.Baseline != "" && (r.BaselineValue <= 0 || r.Ratio <= 0) {
				t.Errorf("%s: baseline %q = %v, ratio %v", r.Name, r.Baseline, r.BaselineValue, r.Ratio)
			}
		}
		if !found {
			t.Errorf("no result %q in %s", w, stdout.String())
		}
	}
	switch {
	case !testing.Short() && len(rep.NotRun) != 0:
		t.Errorf("not run: %+v, want every scenario run", rep.NotRun)
	case testing.Short() && (len(rep.NotRun) != 1 || rep.NotRun[0].Name != "failover" || !strings.Contains(rep.NotRun[0].Reason, "no spawn")):
		t.Errorf("not run: %+v, want only failover (no spawn)", rep.NotRun)
	}
}

// TestBenchFlags checks the command's flags as kong parses them.
func TestBenchFlags(t *testing.T) {
	var c struct {
		Bench benchCmd `cmd:""`
	}
	parser, err := kong.New(&c, kong.Exit(func(int) {}), kong.Writers(io.Discard, io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse([]string{"bench"}); err != nil {
		t.Fatal(err)
	}
	b := c.Bench
	if b.Events != 1_000_000 || b.Keys != 10_000 || b.Partitions != 8 || b.Reads != 20_000 || len(b.Scenarios) != 5 || b.JSON {
		t.Errorf("defaults: %+v", b)
	}
	if _, err := parser.Parse([]string{"bench", "--events=5000", "--keys=50", "--scenarios=reads,pipeline", "--json"}); err != nil {
		t.Fatal(err)
	}
	if b := c.Bench; b.FailoverKills != 10 || b.FailoverBase != 3 {
		t.Errorf("failover kills by default: %d and %d, want 10 and 3", b.FailoverKills, b.FailoverBase)
	}
	if _, err := parser.Parse([]string{"bench", "--events=5000", "--keys=50", "--scenarios=reads,pipeline", "--json", "--failover-kills=4"}); err != nil {
		t.Fatal(err)
	}
	if b := c.Bench; b.FailoverKills != 4 {
		t.Errorf("--failover-kills=4 parsed as %d", b.FailoverKills)
	}
	if b := c.Bench; b.Events != 5000 || b.Keys != 50 || strings.Join(b.Scenarios, ",") != "reads,pipeline" || !b.JSON {
		t.Errorf("parsed: %+v", b)
	}
	for _, args := range [][]string{
		{"bench", "--scenarios=nope"},
		{"bench", "--events=10", "--keys=100"},
		{"bench", "--partitions=0"},
		{"bench", "--failover-kills=0"},
		{"bench", "--failover-baseline-kills=-1"},
		{"bench", "--failover-election-timeout=100ms"},
	} {
		if _, err := parser.Parse(args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
