package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgetables/edgetables/cmd/edgetables/bench"
	"github.com/edgetables/edgetables/jetstream"
)

// benchCmd is `edgetables bench`: it measures this build against raw
// JetStream operations on an embedded server of its own and prints a
// Markdown table (or JSON).
type benchCmd struct {
	Events          int           `help:"Source events of the pipeline and of the footprint's load." default:"1000000"`
	Keys            int           `help:"Distinct keys of the pipeline's and the reads' tables (the pipeline runs them at least once and exactly once, and also at least once with one key per event)." default:"10000"`
	Partitions      int           `help:"Partitions of every table." default:"8"`
	RecoveryRecords int           `name:"recovery-records" help:"Records written to the recovery changelog (0: --events)." default:"0"`
	RecoveryKeys    int           `name:"recovery-keys" help:"Keys of the recovery changelog (0: 10 × --keys, at most the records)." default:"0"`
	Reads           int           `help:"Reads of each kind (in process, HTTP, NATS KV)." default:"20000"`
	FailoverKills   int           `name:"failover-kills" help:"Nodes the failover scenario kills (each restarted before the next kill) with one standby per partition." default:"10"`
	FailoverBase    int           `name:"failover-baseline-kills" help:"Nodes the failover scenario kills without standbys (the baseline of the longest recovery; 0: none)." default:"3"`
	FailoverElect   time.Duration `name:"failover-election-timeout" help:"--election-timeout of the failover scenario's nodes (0: nats-server's own, 4s)." default:"1s"`
	Scenarios       []string      `help:"Scenarios to run, comma-separated." default:"pipeline,recovery,failover,reads,footprint" enum:"pipeline,recovery,failover,reads,footprint"`
	JSON            bool          `name:"json" help:"Print JSON instead of Markdown."`
	Dir             string        `help:"Directory for the bench's data, kept afterwards (default: a temporary directory, removed)."`
	ProfileDir      string        `name:"profile-dir" help:"Write one CPU profile per measured phase into this directory."`
	NodeLogDir      string        `name:"node-log-dir" help:"Write the output of every node the failover scenario starts, at log level info, into this directory (<case>-<node>-<start>.log)."`
	Executable      string        `help:"edgetables binary the footprint and failover scenarios start (default: the failover scenario this one; the footprint scenario a release build of the module in the working directory, or this one without it)."`
	NoSpawn         bool          `name:"no-spawn" hidden:"" help:"Skip what starts the binary: the footprint's RSS and the failover scenario."`
	ModuleDir       string        `name:"module-dir" hidden:"" help:"edgetables module to build the release binary from ('-': do not build)."`

	Sweep                bool     `help:"Measure the scaling sweep's curves instead of the scenarios (--scenarios is ignored; 8 to 13 minutes on 2 cores): each point once, a table and with --sweep-plot an SVG per curve; --sweep-* choose the points."`
	SweepCurves          []string `placeholder:"CURVE" name:"sweep-curves" help:"Curves of the sweep, comma-separated: pipeline events/s vs keys and vs partitions, recovery time vs changelog records, idle RSS vs partitions and tables." default:"pipeline-keys,pipeline-partitions,recovery-records,idle-rss" enum:"pipeline-keys,pipeline-partitions,recovery-records,idle-rss"`
	SweepEvents          int      `name:"sweep-events" help:"Source events of every pipeline point of the sweep (0: --events)." default:"0"`
	SweepKeys            []int    `placeholder:"N" name:"sweep-keys" help:"Key counts of the pipeline-keys curve, on --partitions partitions (default: powers of ten from 1000 to --sweep-events, at most 1000000)."`
	SweepPartitions      []int    `placeholder:"N" name:"sweep-partitions" help:"Partition counts of the pipeline-partitions curve (at --keys keys) and of the idle-rss curve." default:"8,32,128"`
	SweepRecoveryRecords []int    `placeholder:"N" name:"sweep-recovery-records" help:"Changelog sizes of the recovery-records curve: N records over N/10 keys on --partitions partitions; a size the free disk cannot hold is skipped with a note." default:"100000,1000000,10000000"`
	SweepTables          []int    `placeholder:"N" name:"sweep-tables" help:"Table counts of the idle-rss curve, one line each." default:"1,4,16"`
	SweepPlot            string   `placeholder:"DIR" name:"sweep-plot" help:"Write one SVG plot per curve of the sweep into this directory (scaling-<curve>.svg)."`
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
	case b.FailoverElect != 0 && b.FailoverElect < jetstream.MinElectionTimeout:
		return fmt.Errorf("--failover-election-timeout %s: want 0 (nats-server's own) or at least %s", b.FailoverElect, jetstream.MinElectionTimeout)
	}
	return b.validateSweep()
}

// validateSweep checks the sweep's flags; errors name the flag.
func (b *benchCmd) validateSweep() error {
	events := b.sweepEvents()
	switch {
	case b.SweepEvents < 0:
		return fmt.Errorf("--sweep-events %d: must be at least 0", b.SweepEvents)
	case b.Keys > events:
		return fmt.Errorf("--keys %d: must not exceed --sweep-events %d (the pipeline-partitions curve's keys)", b.Keys, events)
	}
	for _, l := range []struct {
		name     string
		points   []int
		min, max int
	}{{"--sweep-keys", b.SweepKeys, 1, events}, {"--sweep-partitions", b.SweepPartitions, 1, 1024},
		{"--sweep-recovery-records", b.SweepRecoveryRecords, 1, math.MaxInt32}, {"--sweep-tables", b.SweepTables, 1, 100}} {
		if err := bench.CheckPoints(l.points, l.min, l.max); err != nil {
			return fmt.Errorf("%s %s: %w", l.name, joinInts(l.points), err)
		}
	}
	return nil
}

// sweepEvents is the events of the sweep's pipeline points.
func (b *benchCmd) sweepEvents() int {
	if b.SweepEvents == 0 {
		return b.Events
	}
	return b.SweepEvents
}

func joinInts(vs []int) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (b *benchCmd) config(log *slog.Logger) bench.Config {
	base := b.FailoverBase
	if base == 0 {
		base = -1 // none; 0 is the default in bench.Config
	}
	return bench.Config{
		Events: b.Events, Keys: b.Keys, Partitions: b.Partitions,
		RecoveryRecords: b.RecoveryRecords, RecoveryKeys: b.RecoveryKeys, Reads: b.Reads,
		FailoverKills: b.FailoverKills, FailoverBaselineKills: base, FailoverElectionTimeout: b.FailoverElect,
		Scenarios: b.Scenarios, Logger: log, Dir: b.Dir, ProfileDir: b.ProfileDir, NodeLogDir: b.NodeLogDir,
		Executable: b.Executable, NoSpawn: b.NoSpawn, ModuleDir: b.ModuleDir,
		Sweep: b.sweepConfig(),
	}
}

// sweepConfig is the sweep's configuration, nil without --sweep.
func (b *benchCmd) sweepConfig() *bench.SweepConfig {
	if !b.Sweep {
		return nil
	}
	return &bench.SweepConfig{
		Curves: b.SweepCurves, Events: b.SweepEvents, Keys: b.SweepKeys, Partitions: b.SweepPartitions,
		RecoveryRecords: b.SweepRecoveryRecords, Tables: b.SweepTables, PlotDir: b.SweepPlot,
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
	if err != nil && len(rep.Results) == 0 && len(rep.NotRun) == 0 && len(rep.Curves) == 0 {
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
