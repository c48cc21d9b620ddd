// Package bench measures edgetables against the raw NATS JetStream
// operations it is built from, in one run on one machine: the pipeline
// (events in, committed table out), recovery from the changelog, the
// failover of a cluster, reads, and the footprint of a node. Every scenario
// checks the table contents it produced, so a fast wrong run fails instead
// of reporting a number.
//
// Run starts one embedded nats-server (JetStream, file storage in a temporary
// directory) and uses it for the measured side and the baseline of every
// scenario, each run on fresh streams of its own app name. The measured side
// is the product: jetstream's Changelog and Source, the table manager, bbolt
// stores, edge's built-in tables and HTTP API, and for the footprint and the
// failover the edgetables binary itself (the failover's cluster of three
// processes has servers of its own).
package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
)

// Scenario names, in the order Run runs them.
const (
	ScenarioPipeline  = "pipeline"
	ScenarioRecovery  = "recovery"
	ScenarioFailover  = "failover"
	ScenarioReads     = "reads"
	ScenarioFootprint = "footprint"
)

// Scenarios lists every scenario in run order.
var Scenarios = []string{ScenarioPipeline, ScenarioRecovery, ScenarioFailover, ScenarioReads, ScenarioFootprint}

// Defaults of Config. They finish in under three minutes on a 2-core machine.
const (
	DefaultEvents     = 1_000_000
	DefaultKeys       = 10_000
	DefaultPartitions = 8
	DefaultReads      = 20_000
	// DefaultFailoverKills is the number of kills of the failover with
	// standbys; DefaultFailoverBaselineKills of the one without, which
	// only gives the longest recovery its baseline.
	DefaultFailoverKills         = 10
	DefaultFailoverBaselineKills = 3
)

// phaseTimeout bounds any single wait of the bench (a pipeline to commit,
// a node to become ready), so a stuck product fails the run instead of
// hanging it.
const phaseTimeout = 10 * time.Minute

// Config sizes and selects the scenarios. Zero fields take the defaults
// named.
type Config struct {
	// Events is the number of source events of the pipeline and of the
	// footprint's load (default 1,000,000).
	Events int
	// Keys is the number of distinct keys of the pipeline's count table and
	// of the reads' table (default 10,000). The pipeline also runs with
	// every event on its own key (K = Events).
	Keys int
	// Partitions is the number of partitions of every table (default 8).
	Partitions int
	// RecoveryRecords is the number of records written to the recovery
	// changelog (default Events); RecoveryKeys the keys they spread over
	// (default 10 × Keys, at most RecoveryRecords). The changelog is
	// compacted, so recovery replays about RecoveryKeys records.
	RecoveryRecords int
	RecoveryKeys    int
	// Reads is the number of reads of each kind (in process, HTTP, NATS
	// KV) (default 20,000).
	Reads int
	// FailoverKills is the number of nodes the failover scenario kills
	// (and restarts) in its cluster with one standby per partition
	// (default 10); FailoverBaselineKills in its cluster without standbys
	// (default 3; negative: that cluster is not run, and the longest
	// recovery has no baseline).
	FailoverKills         int
	FailoverBaselineKills int
	// FailoverElectionTimeout is the --election-timeout of the failover
	// scenario's nodes (0: nats-server's own, 4 s; the CLI's default is
	// 1 s). After a kill, the streams the victim led accept writes only
	// after an election, the group bucket's included.
	FailoverElectionTimeout time.Duration
	// Scenarios selects scenarios by name (default: all, see Scenarios).
	Scenarios []string
	// Logger receives progress (default slog.Default()). The product's own
	// components log at warning level and above only, unless it is
	// enabled for debug.
	Logger *slog.Logger
	// Dir holds every file of the run (default: a new temporary directory,
	// removed at the end). A given Dir is used as is and kept.
	Dir string
	// ProfileDir, if set, receives one CPU profile per measured phase
	// (<scenario>-<phase>.pprof), for go tool pprof.
	ProfileDir string
	// NodeLogDir, if set, receives the output of every node the failover
	// scenario starts, logging at info level (<case>-<node>-<start>.log),
	// to see where a slow failover's time went.
	NodeLogDir string
	// Executable is the edgetables binary the footprint and failover
	// scenarios start (default: the failover scenario os.Executable(),
	// this program; the footprint scenario the release build of ModuleDir,
	// or this program without one).
	Executable string
	// ModuleDir is the edgetables module the footprint scenario builds a
	// static, stripped binary from with the go command, as
	// deploy/release.sh does (default: the module of the working
	// directory, if it is edgetables). "-" skips the build: the size of
	// Executable is reported instead.
	ModuleDir string
	// NoSpawn skips what starts Executable: the footprint's idle and
	// loaded RSS (the binary size is still reported), the failover
	// scenario (reported as not run) and the sweep's idle-rss curve.
	NoSpawn bool
	// Sweep, if set, makes Run measure the scaling sweep's curves instead
	// of the scenarios (Scenarios is then ignored).
	Sweep *SweepConfig
}

func (c *Config) setDefaults() error {
	if c.Events == 0 {
		c.Events = DefaultEvents
	}
	if c.Keys == 0 {
		c.Keys = DefaultKeys
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.RecoveryRecords == 0 {
		c.RecoveryRecords = c.Events
	}
	if c.RecoveryKeys == 0 {
		c.RecoveryKeys = min(10*c.Keys, c.RecoveryRecords)
	}
	if c.Reads == 0 {
		c.Reads = DefaultReads
	}
	if c.FailoverKills == 0 {
		c.FailoverKills = DefaultFailoverKills
	}
	if c.FailoverBaselineKills == 0 {
		c.FailoverBaselineKills = DefaultFailoverBaselineKills
	}
	if len(c.Scenarios) == 0 {
		c.Scenarios = Scenarios
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.Events < 1, c.Keys < 1, c.RecoveryRecords < 1, c.RecoveryKeys < 1, c.Reads < 1:
		return errors.New("bench config: Events, Keys, RecoveryRecords, RecoveryKeys and Reads must be positive")
	case c.FailoverKills < 1:
		return errors.New("bench config: FailoverKills must be positive")
	case c.Keys > c.Events:
		return fmt.Errorf("bench config: Keys %d exceeds Events %d", c.Keys, c.Events)
	case c.RecoveryKeys > c.RecoveryRecords:
		return fmt.Errorf("bench config: RecoveryKeys %d exceeds RecoveryRecords %d", c.RecoveryKeys, c.RecoveryRecords)
	case c.Partitions < 1 || c.Partitions > 1024:
		return fmt.Errorf("bench config: Partitions %d: want 1 to 1024", c.Partitions)
	}
	for _, s := range c.Scenarios {
		if !slices.Contains(Scenarios, s) {
			return fmt.Errorf("bench config: unknown scenario %q (want %s)", s, strings.Join(Scenarios, ", "))
		}
	}
	if c.Sweep != nil {
		s := *c.Sweep // the caller's slices are not changed
		if err := s.setDefaults(c); err != nil {
			return err
		}
		c.Sweep = &s
	}
	return nil
}

// env is what the scenarios of one run share: the embedded server, a client
// connection and JetStream contexts, the directories and loggers.
type env struct {
	cfg  Config
	log  *slog.Logger // the bench's progress
	plog *slog.Logger // the product's components: warnings and above
	dir  string

	srv *jetstream.Server
	// pub loads data (source events, changelogs, the KV bucket) on its own
	// connection; measured and baseline runs each get a fresh connection
	// (see connect), as a node has one.
	pub     *publisher
	nextApp int
	// sweepRows holds the sweep's pipeline points by size, for a curve
	// that has a point of the same size as an earlier one.
	sweepRows map[pipeSize]Row
}

// Run runs the selected scenarios and returns their results. A scenario
// that fails (an error, or table contents that are not the expected ones)
// has no results: it is listed in Report.NotRun with the reason, and Run's
// error names it; the other scenarios still run.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return Report{}, err
	}
	start := time.Now()
	e := &env{cfg: cfg, log: cfg.Logger, sweepRows: make(map[pipeSize]Row)}
	e.plog = slog.New(minLevel{h: cfg.Logger.Handler(), min: slog.LevelWarn})
	if cfg.Logger.Enabled(ctx, slog.LevelDebug) {
		e.plog = cfg.Logger
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "edgetables-bench-")
		if err != nil {
			return Report{}, fmt.Errorf("bench: temp dir: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	e.dir = dir
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o750); err != nil {
			return Report{}, fmt.Errorf("bench: profile dir: %w", err)
		}
	}
	if cfg.NodeLogDir != "" {
		if err := os.MkdirAll(cfg.NodeLogDir, 0o750); err != nil {
			return Report{}, fmt.Errorf("bench: node log dir: %w", err)
		}
	}
	if err := e.start(ctx); err != nil {
		return Report{}, err
	}
	defer e.close()

	rep := Report{Machine: machine(), Sizes: Sizes{Events: cfg.Events, Keys: cfg.Keys, Partitions: cfg.Partitions,
		RecoveryRecords: cfg.RecoveryRecords, RecoveryKeys: cfg.RecoveryKeys, Reads: cfg.Reads}}
	var errs []error
	if cfg.Sweep != nil {
		curves, err := e.sweep(ctx)
		rep.Curves = curves
		rep.Took = time.Since(start).Round(time.Second).String()
		return rep, err
	}
	for _, name := range Scenarios {
		if !slices.Contains(cfg.Scenarios, name) {
			continue
		}
		if name == ScenarioFailover && cfg.NoSpawn {
			rep.NotRun = append(rep.NotRun, NotRun{Name: name, Reason: "not run (no spawn): it starts a cluster of three edgetables processes"})
			continue
		}
		e.log.Info("bench: scenario starts", "scenario", name)
		t0 := time.Now()
		res, err := e.scenario(ctx, name)
		if err != nil {
			rep.NotRun = append(rep.NotRun, NotRun{Name: name, Reason: "failed: " + err.Error()})
			errs = append(errs, fmt.Errorf("scenario %s: %w", name, err))
			e.log.Error("bench: scenario failed", "scenario", name, "err", err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		rep.Results = append(rep.Results, res...)
		e.log.Info("bench: scenario done", "scenario", name, "took", time.Since(t0).Round(time.Millisecond))
	}
	rep.Took = time.Since(start).Round(time.Second).String()
	return rep, errors.Join(errs...)
}

func (e *env) scenario(ctx context.Context, name string) ([]Result, error) {
	switch name {
	case ScenarioPipeline:
		return e.pipeline(ctx)
	case ScenarioRecovery:
		return e.recovery(ctx)
	case ScenarioFailover:
		return e.failover(ctx)
	case ScenarioReads:
		return e.reads(ctx)
	case ScenarioFootprint:
		return e.footprint(ctx)
	}
	return nil, fmt.Errorf("unknown scenario %q", name)
}

// start starts the embedded server and connects to it.
func (e *env) start(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	srv, err := jetstream.StartServer(sctx, jetstream.ServerConfig{
		Name: "bench", Listen: "127.0.0.1:0", StoreDir: filepath.Join(e.dir, "jetstream"),
		MaxMemory: 64 << 20, MaxStore: 64 << 30, Logger: e.plog,
	})
	if err != nil {
		return fmt.Errorf("bench: start server: %w", err)
	}
	e.srv = srv
	nc, err := srv.Connect("edgetables-bench-loader")
	if err != nil {
		srv.Shutdown()
		return fmt.Errorf("bench: %w", err)
	}
	if e.pub, err = newPublisher(nc); err != nil {
		nc.Close()
		srv.Shutdown()
		return err
	}
	return nil
}

func (e *env) close() {
	if e.pub != nil {
		e.pub.nc.Close()
	}
	if e.srv != nil {
		e.srv.Shutdown()
	}
}

// productWindow is the async publish window of edge.Node's JetStream
// context, which the measured side uses too.
const productWindow = 8192

// connect opens a connection named name with a JetStream context as
// edge.Node makes it. The caller closes the connection.
func (e *env) connect(name string) (*nats.Conn, natsjs.JetStream, error) {
	nc, err := e.srv.Connect(name)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	js, err := natsjs.New(nc, natsjs.WithPublishAsyncMaxPending(productWindow))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("bench: JetStream context: %w", err)
	}
	return nc, js, nil
}

// app returns a fresh app name: every run of every scenario gets its own
// streams.
func (e *env) app(kind string) string {
	e.nextApp++
	return fmt.Sprintf("bench_%s_%d", kind, e.nextApp)
}

// phase runs fn, one measured phase, and returns the share of the
// machine's CPUs other processes used meanwhile (-1: unknown), which tells
// how noisy the measurement was. With a ProfileDir, the CPU profile of the
// phase goes to ProfileDir/<name>.pprof.
func (e *env) phase(name string, fn func() error) (float64, error) {
	if e.cfg.ProfileDir == "" {
		a := sampleCPU()
		err := fn()
		return otherCPU(a, sampleCPU()), err
	}
	path := filepath.Join(e.cfg.ProfileDir, name+".pprof")
	f, err := os.Create(path)
	if err != nil {
		return -1, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return -1, fmt.Errorf("cpu profile %s: %w", path, err)
	}
	a := sampleCPU()
	ferr := fn()
	other := otherCPU(a, sampleCPU())
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil && ferr == nil {
		ferr = fmt.Errorf("cpu profile %s: %w", path, err)
	}
	return other, ferr
}

// waitUntil calls cond every interval until it returns true or an error,
// ctx ends or phaseTimeout passes.
func waitUntil(ctx context.Context, what string, interval time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, phaseTimeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// minLevel is a slog handler that drops records below min.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

// Enabled implements slog.Handler.
func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }

// WithAttrs implements slog.Handler.
func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h: m.h.WithAttrs(as), min: m.min}
}

// WithGroup implements slog.Handler.
func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h: m.h.WithGroup(name), min: m.min}
}

// median returns the median of ds (the upper one of an even count); ds is
// sorted in place.
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}
