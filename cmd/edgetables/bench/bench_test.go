package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPayload(t *testing.T) {
	for _, v := range []int{0, 7, 999_999, 1<<31 - 1} { // the largest value of a 32-bit int
		p := payload(v)
		if len(p) != payloadSize {
			t.Errorf("payload(%d) has %d bytes", v, len(p))
		}
		var got struct{ Value int }
		if err := json.Unmarshal(p, &got); err != nil || got.Value != v {
			t.Errorf("payload(%d) = %s: %v, value %d", v, p, err, got.Value)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		n    int
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {1_000_000, "1,000,000"}, {-12345, "-12,345"}} {
		if got := count(c.n); got != c.want {
			t.Errorf("count(%d) = %q, want %q", c.n, got, c.want)
		}
	}
	for _, c := range []struct {
		v    float64
		want string
	}{{12, "12"}, {1234, "1.2k"}, {123456, "123k"}, {2_500_000, "2.50M"}} {
		if got := short(c.v); got != c.want {
			t.Errorf("short(%v) = %q, want %q", c.v, got, c.want)
		}
	}
}

func TestMarkdown(t *testing.T) {
	rep := Report{
		Machine: Machine{Date: "2026-11-25T00:00:00Z", GOOS: "linux", GOARCH: "amd64", NumCPU: 2, GOMAXPROCS: 2, Go: "go1.26", NATSServer: "2.15.2"},
		Sizes:   Sizes{Events: 1000, Keys: 10, Partitions: 8, RecoveryRecords: 1000, RecoveryKeys: 100, Reads: 10},
		Results: []Result{
			{Name: "pipeline, K=10", Unit: "events/s", Value: 150_000, Baseline: "raw | loop", BaselineValue: 100_000, Ratio: 1.5, Target: "≥ 1.0× raw", Met: ptr(true), Note: "fast", OtherCPU: ptr(0.031)},
			{Name: "reads p50", Unit: "µs", Value: 1.25, Target: "< 5 µs", Met: ptr(false)},
			{Name: "idle RSS", Unit: "MiB", Value: 21.04},
		},
		NotRun: []NotRun{{Name: "failover", Reason: "not run (no spawn)"}},
		Took:   "1s",
	}
	var b bytes.Buffer
	if err := rep.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| pipeline, K=10 | 150k events/s | raw \\| loop | 100k events/s | 1.50× | ≥ 1.0× raw | met | 3% |",
		"| reads p50 | 1.25 µs | — | — | — | < 5 µs | **missed** | — |",
		"| idle RSS | 21.0 MiB | — | — | — | — | — | — |",
		"| failover | not run (no spawn) |",
		"- pipeline, K=10: fast",
		"2 CPUs (GOMAXPROCS 2)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, out)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Events: 10, Keys: 100},
		{Scenarios: []string{"nope"}},
		{Partitions: 2000},
		{Reads: -1},
		{FailoverKills: -2},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

func TestOtherCPU(t *testing.T) {
	a := sampleCPU()
	if !a.ok {
		t.Skip("no /proc")
	}
	for time.Since(a.at) < minSampled { // burn some CPU of our own
		_ = count(int(time.Now().UnixNano()))
	}
	b := sampleCPU()
	if b.self < a.self || b.busy < a.busy {
		t.Errorf("CPU times went back: %+v then %+v", a, b)
	}
	if share := otherCPU(a, b); share < 0 || share > 1 {
		t.Errorf("other processes' share %v, want 0 to 1", share)
	}
	if otherCPU(cpuSample{}, b) != -1 || otherNote(-1) != "unknown" || otherNote(0.254) != "25%" {
		t.Error("unknown samples are not reported as unknown")
	}
}
