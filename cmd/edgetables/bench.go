package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/edgetables/edgetables/cmd/edgetables/bench"
)

// benchCmd is `edgetables bench`: it measures this build against raw
// JetStream operations on an embedded server of its own and prints a
// Markdown table (or JSON).
type benchCmd struct {
	Events          int      `help:"Source events of the pipeline and of the footprint's load." default:"1000000"`
	Keys            int      `help:"Distinct keys of the pipeline's and the reads' tables (the pipeline runs them at least once and exactly once, and also at least once with one key per event)." default:"10000"`
	Partitions      int      `help:"Partitions of every table." default:"8"`
	RecoveryRecords int      `name:"recovery-records" help:"Records written to the recovery changelog (0: --events)." default:"0"`
	RecoveryKeys    int      `name:"recovery-keys" help:"Keys of the recovery changelog (0: 10 × --keys, at most the records)." default:"0"`
	Reads           int      `help:"Reads of each kind (in process, HTTP, NATS KV)." default:"20000"`
	FailoverKills   int      `name:"failover-kills" help:"Nodes the failover scenario kills (each restarted before the next kill) with one standby per partition." default:"10"`
	FailoverBase    int      `name:"failover-baseline-kills" help:"Nodes the failover scenario kills without standbys (the baseline of the longest recovery; 0: none)." default:"3"`
	Scenarios       []string `help:"Scenarios to run, comma-separated." default:"pipeline,recovery,failover,reads,footprint" enum:"pipeline,recovery,failover,reads,footprint"`
	JSON            bool     `name:"json" help:"Print JSON instead of Markdown."`
	Dir             string   `help:"Directory for the bench's data, kept afterwards (default: a temporary directory, removed)."`
	ProfileDir      string   `name:"profile-dir" help:"Write one CPU profile per measured phase into this directory."`
	Executable      string   `help:"edgetables binary the footprint and failover scenarios start (default: this one)."`
	NoSpawn         bool     `name:"no-spawn" hidden:"" help:"Skip what starts the binary: the footprint's RSS and the failover scenario."`
	ModuleDir       string   `name:"module-dir" hidden:"" help:"edgetables module to build the stripped binary from ('-': do not build)."`
}

// Validate checks the sizes; errors name the flag.
func (b *benchCmd) Validate() error {
	for _, f := range []struct {
		name string
		v    int
		min  int
	}{{"--events", b.Events, 1}, {"--keys", b.Keys, 1}, {"--partitions", b.Partitions, 1},
		{"--recovery-records", b.RecoveryRecords, 0}, {"--recovery-keys", b.RecoveryKeys, 0}, {"--reads", b.Reads, 1},
		{"--failover-kills", b.FailoverKills, 1}, {"--failover-baseline-kills", b.FailoverBase, 0}} {
		if f.v < f.min {
			return fmt.Errorf("%s %d: must be at least %d", f.name, f.v, f.min)
		}
	}
	switch {
	case b.Partitions > 1024:
		return fmt.Errorf("--partitions %d: want 1 to 1024", b.Partitions)
	case b.Keys > b.Events:
		return fmt.Errorf("--keys %d: must not exceed --events %d", b.Keys, b.Events)
	}
	return nil
}

func (b *benchCmd) config(log *slog.Logger) bench.Config {
	base := b.FailoverBase
	if base == 0 {
		base = -1 // none; 0 is the default in bench.Config
	}
	return bench.Config{
		Events: b.Events, Keys: b.Keys, Partitions: b.Partitions,
		RecoveryRecords: b.RecoveryRecords, RecoveryKeys: b.RecoveryKeys, Reads: b.Reads,
		FailoverKills: b.FailoverKills, FailoverBaselineKills: base,
		Scenarios: b.Scenarios, Logger: log, Dir: b.Dir, ProfileDir: b.ProfileDir,
		Executable: b.Executable, NoSpawn: b.NoSpawn, ModuleDir: b.ModuleDir,
	}
}

// run runs the bench and prints the report on stdout; progress and errors
// go to log and stderr. It returns 0, 1 when a scenario failed (the report
// of the others is still printed), or 2 for invalid flags.
func (b *benchCmd) run(ctx context.Context, stdout, stderr io.Writer, log *slog.Logger) int {
	if err := b.Validate(); err != nil {
		fmt.Fprintf(stderr, "edgetables: error: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, b.config(log))
	if err != nil && len(rep.Results) == 0 && len(rep.NotRun) == 0 {
		fmt.Fprintf(stderr, "edgetables: bench: %v\n", err)
		return 1
	}
	if b.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if werr := enc.Encode(rep); werr != nil {
			err = errors.Join(err, werr)
		}
	} else if werr := rep.Markdown(stdout); werr != nil {
		err = errors.Join(err, werr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgetables: bench: %v\n", err)
		return 1
	}
	return 0
}
