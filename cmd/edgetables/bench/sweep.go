package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Curve names of the sweep, in the order it measures them.
const (
	// CurvePipelineKeys is the pipeline's events/s against the number of
	// distinct keys.
	CurvePipelineKeys = "pipeline-keys"
	// CurvePipelinePartitions is the pipeline's events/s against the
	// number of partitions.
	CurvePipelinePartitions = "pipeline-partitions"
	// CurveRecoveryRecords is the time to recover a fresh store against
	// the number of records written to the changelog.
	CurveRecoveryRecords = "recovery-records"
	// CurveIdleRSS is an idle node's resident memory against its
	// partitions, one line per number of tables.
	CurveIdleRSS = "idle-rss"
)

// SweepCurves lists every curve of the sweep in run order.
var SweepCurves = []string{CurvePipelineKeys, CurvePipelinePartitions, CurveRecoveryRecords, CurveIdleRSS}

// Defaults of SweepConfig: with Config's defaults, the sweep takes about
// ten minutes on a 2-core machine.
var (
	DefaultSweepPartitions      = []int{8, 32, 128}
	DefaultSweepRecoveryRecords = []int{100_000, 1_000_000, 10_000_000}
	DefaultSweepTables          = []int{1, 4, 16}
)

// Sweep settings.
const (
	// sweepRecordsPerKey is the number of changelog records per key of a
	// recovery point: N records go over N/10 keys, as the recovery
	// scenario's default (1,000,000 over 100,000).
	sweepRecordsPerKey = 10
	// diskPerRecord is the disk space a recovery point needs per record
	// written, with room to spare: the changelog before the server
	// compacts it and the store took 1.2 GB at 10,000,000 records.
	diskPerRecord = 400
	// maxSweepTables bounds SweepConfig.Tables.
	maxSweepTables = 100
)

// SweepConfig selects and sizes the curves of the scaling sweep. Each
// point of a curve is measured once. Zero fields take the defaults named.
type SweepConfig struct {
	// Curves selects curves by name (default: all, see SweepCurves).
	Curves []string
	// Events is the number of source events of every pipeline point
	// (default Config.Events).
	Events int
	// Keys are the key counts of the pipeline-keys curve, on
	// Config.Partitions partitions (default: the powers of ten from 1,000
	// to Events, at most 1,000,000). Each at most Events.
	Keys []int
	// Partitions are the partition counts of the pipeline-partitions
	// curve, at Config.Keys keys, and of the idle-rss curve (default 8,
	// 32, 128). Each 1 to 1024.
	Partitions []int
	// RecoveryRecords are the changelog sizes of the recovery-records
	// curve, on Config.Partitions partitions: N records over N/10 keys
	// (default 100,000, 1,000,000, 10,000,000). A point whose changelog
	// would not fit the free disk space is skipped with a note.
	RecoveryRecords []int
	// Tables are the table counts of the idle-rss curve, one line each
	// (default 1, 4, 16). Each 1 to 100.
	Tables []int
	// PlotDir, if set, receives one SVG plot per curve:
	// scaling-<curve>.svg.
	PlotDir string
}

// Curve is one curve of the sweep: a row per point, a column per series.
type Curve struct {
	// Name is the curve's name (see SweepCurves).
	Name  string `json:"name"`
	Title string `json:"title"`
	// X names the quantity on the x axis; Unit is the unit of every
	// series' values.
	X    string `json:"x"`
	Unit string `json:"unit"`
	// Fixed says what the points share (sizes, mode).
	Fixed string `json:"fixed"`
	// Series names the columns of Row.Y, the first one edgetables.
	Series []string `json:"series"`
	// Ratio, when not empty, says what Row.Ratio is.
	Ratio string `json:"ratio,omitempty"`
	Rows  []Row  `json:"rows"`
	// Notes tell of points skipped or failed.
	Notes []string `json:"notes,omitempty"`
	// Plot is the path of the SVG written ("" when none).
	Plot string `json:"plot,omitempty"`
	logY bool
	// brief is Fixed in a few words, for the plot's subtitle.
	brief string
}

// Row is one point of a curve.
type Row struct {
	X float64 `json:"x"`
	// Y holds the value of each series at X, in the order of
	// Curve.Series.
	Y     []float64 `json:"y"`
	Ratio float64   `json:"ratio,omitempty"`
	// OtherCPU is the largest share of the CPUs that other processes used
	// during the point's measured phases (nil: unknown or not measured).
	OtherCPU *float64 `json:"other_cpu,omitempty"`
	Note     string   `json:"note,omitempty"`
}

// setDefaults fills in the defaults from cfg (already defaulted) and
// validates s; errors name the field.
func (s *SweepConfig) setDefaults(cfg *Config) error {
	if len(s.Curves) == 0 {
		s.Curves = SweepCurves
	}
	if s.Events == 0 {
		s.Events = cfg.Events
	}
	if len(s.Keys) == 0 {
		s.Keys = DefaultSweepKeys(s.Events)
	}
	if len(s.Partitions) == 0 {
		s.Partitions = DefaultSweepPartitions
	}
	if len(s.RecoveryRecords) == 0 {
		s.RecoveryRecords = DefaultSweepRecoveryRecords
	}
	if len(s.Tables) == 0 {
		s.Tables = DefaultSweepTables
	}
	for _, c := range s.Curves {
		if !slices.Contains(SweepCurves, c) {
			return fmt.Errorf("bench config: Sweep.Curves: unknown curve %q (want %s)", c, strings.Join(SweepCurves, ", "))
		}
	}
	if s.Events < 1 {
		return fmt.Errorf("bench config: Sweep.Events %d: must be positive", s.Events)
	}
	if cfg.Keys > s.Events && slices.Contains(s.Curves, CurvePipelinePartitions) {
		return fmt.Errorf("bench config: Keys %d exceeds Sweep.Events %d", cfg.Keys, s.Events)
	}
	for _, l := range []struct {
		name     string
		v        []int
		min, max int
	}{{"Keys", s.Keys, 1, s.Events}, {"Partitions", s.Partitions, 1, 1024},
		{"RecoveryRecords", s.RecoveryRecords, 1, math.MaxInt32}, {"Tables", s.Tables, 1, maxSweepTables}} {
		if err := CheckPoints(l.v, l.min, l.max); err != nil {
			return fmt.Errorf("bench config: Sweep.%s: %w", l.name, err)
		}
	}
	return nil
}

// DefaultSweepKeys returns the default key counts of the pipeline-keys
// curve for events events: the powers of ten from 1,000 to events, at
// most 1,000,000 (events itself when it is below 1,000).
func DefaultSweepKeys(events int) []int {
	if events < 1000 {
		return []int{events}
	}
	var ks []int
	for k := 1000; k <= min(events, 1_000_000); k *= 10 {
		ks = append(ks, k)
	}
	return ks
}

// CheckPoints returns an error if the points of a curve are not distinct
// values from lo to hi.
func CheckPoints(points []int, lo, hi int) error {
	for i, v := range points {
		switch {
		case v < lo:
			return fmt.Errorf("%d: must be at least %d", v, lo)
		case v > hi:
			return fmt.Errorf("%d: must be at most %d", v, hi)
		case slices.Contains(points[:i], v):
			return fmt.Errorf("%d: given twice", v)
		}
	}
	return nil
}

// sweep measures the selected curves and writes their plots. A point that
// fails is noted in its curve and its error returned (joined with the
// others'); the other points still run.
func (e *env) sweep(ctx context.Context) ([]Curve, error) {
	s := e.cfg.Sweep
	var curves []Curve
	var errs []error
	for _, name := range SweepCurves {
		if !slices.Contains(s.Curves, name) {
			continue
		}
		e.log.Info("bench: sweep: curve starts", "curve", name)
		t0 := time.Now()
		var c Curve
		var err error
		switch name {
		case CurvePipelineKeys, CurvePipelinePartitions:
			c, err = e.sweepPipeline(ctx, name)
		case CurveRecoveryRecords:
			c, err = e.sweepRecovery(ctx)
		case CurveIdleRSS:
			c, err = e.sweepIdle(ctx)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("curve %s: %w", name, err))
		}
		if s.PlotDir != "" && len(c.Rows) > 0 {
			when := fmt.Sprintf("each point once, %s, %d CPUs", time.Now().UTC().Format(time.DateOnly), runtime.NumCPU())
			if perr := writeCurvePlot(s.PlotDir, &c, when); perr != nil {
				errs = append(errs, perr)
			}
		}
		curves = append(curves, c)
		e.log.Info("bench: sweep: curve done", "curve", name, "points", len(c.Rows), "took", time.Since(t0).Round(time.Millisecond))
		if ctx.Err() != nil {
			break
		}
	}
	return curves, errors.Join(errs...)
}

// pointFailed notes in c that the point at x failed, and returns the error.
func (c *Curve) pointFailed(x int, err error) error {
	c.Notes = append(c.Notes, fmt.Sprintf("%s %s: failed: %v", count(x), c.X, err))
	return fmt.Errorf("%s %s: %w", count(x), c.X, err)
}

// sweepPipeline measures the pipeline (at least once, with its raw
// baseline) at each key count or each partition count, reusing the
// pipeline-keys curve's point where both curves have the same sizes.
func (e *env) sweepPipeline(ctx context.Context, name string) (Curve, error) {
	s := e.cfg.Sweep
	c := Curve{Name: name, Unit: "events/s", Series: []string{"edgetables", "raw loop"},
		Ratio: "edgetables ÷ raw loop"}
	var sizes []pipeSize
	if name == CurvePipelineKeys {
		c.Title, c.X = "Pipeline throughput vs keys", "keys"
		c.brief = fmt.Sprintf("%s events, %d partitions, at least once", count(s.Events), e.cfg.Partitions)
		c.Fixed = fmt.Sprintf("%s events of %d B over K keys, %d partitions, a count table, at least once", count(s.Events), payloadSize, e.cfg.Partitions)
		for _, k := range s.Keys {
			sizes = append(sizes, pipeSize{events: s.Events, keys: k, partitions: e.cfg.Partitions})
		}
	} else {
		c.Title, c.X = "Pipeline throughput vs partitions", "partitions"
		c.brief = fmt.Sprintf("%s events over %s keys, at least once", count(s.Events), count(e.cfg.Keys))
		c.Fixed = fmt.Sprintf("%s events of %d B over %s keys, P partitions, a count table, at least once", count(s.Events), payloadSize, count(e.cfg.Keys))
		for _, p := range s.Partitions {
			sizes = append(sizes, pipeSize{events: s.Events, keys: e.cfg.Keys, partitions: p})
		}
	}
	c.Fixed += "; the raw loop (AckAll consume + async publish per event) runs on the same events"
	var errs []error
	for _, sz := range sizes {
		x := sz.keys
		if name == CurvePipelinePartitions {
			x = sz.partitions
		}
		if row, ok := e.sweepRows[sz]; ok {
			row.X, row.Note = float64(x), "the pipeline-keys curve's point: "+row.Note
			c.Rows = append(c.Rows, row)
			continue
		}
		e.log.Info("bench: sweep: pipeline point", "curve", name, "events", sz.events, "keys", sz.keys, "partitions", sz.partitions)
		res, _, err := e.pipelineRun(ctx, atLeastOnce, sz, 0, nil, false)
		if err != nil {
			errs = append(errs, c.pointFailed(x, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		r := res[0]
		row := Row{X: float64(x), Y: []float64{r.Value, r.BaselineValue}, Ratio: r.Ratio, OtherCPU: r.OtherCPU, Note: r.Note}
		e.sweepRows[sz] = row
		c.Rows = append(c.Rows, row)
	}
	return c, errors.Join(errs...)
}

// sweepRecovery measures, at each changelog size, one recovery of a fresh
// store and one raw replay, skipping the sizes the free disk space cannot
// hold.
func (e *env) sweepRecovery(ctx context.Context) (Curve, error) {
	s := e.cfg.Sweep
	c := Curve{Name: CurveRecoveryRecords, Title: "Recovery time vs changelog records", X: "records", Unit: "s",
		Fixed: fmt.Sprintf("N records of %d B over N/%d keys in %d partitions, compacted by the server to the last record per key; edgetables: Run to the last partition recovered into a fresh store; raw: ordered-consumer replay of the same streams, concurrently",
			payloadSize, sweepRecordsPerKey, e.cfg.Partitions),
		Series: []string{"edgetables", "raw replay"}, Ratio: "raw replay time ÷ edgetables time", logY: true,
		brief: fmt.Sprintf("N records over N/%d keys, %d partitions, into a fresh store", sweepRecordsPerKey, e.cfg.Partitions)}
	var errs []error
	for _, n := range s.RecoveryRecords {
		keys := max(1, n/sweepRecordsPerKey)
		need := int64(n) * diskPerRecord
		if free, err := freeDisk(e.dir); err != nil {
			e.log.Warn("bench: sweep: cannot tell the free disk space; the point runs", "dir", e.dir, "err", err)
		} else if free < need {
			c.Notes = append(c.Notes, fmt.Sprintf("%s records: skipped: needs about %.1f GiB of disk, %.1f GiB free in %s",
				count(n), gib(need), gib(free), e.dir))
			e.log.Warn("bench: sweep: recovery point skipped: disk too small", "records", n, "need", need, "free", free)
			continue
		}
		e.log.Info("bench: sweep: recovery point", "records", n, "keys", keys)
		m, err := e.recoveryCase(ctx, recoverySize{records: n, keys: keys, partitions: e.cfg.Partitions, reps: 1,
			phase: "sweep-recovery-" + strconv.Itoa(n)})
		if err != nil {
			errs = append(errs, c.pointFailed(n, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		took, raw := m.edge[0], m.raw[0]
		c.Rows = append(c.Rows, Row{X: float64(n), Y: []float64{took.Seconds(), raw.Seconds()}, Ratio: raw.Seconds() / took.Seconds(),
			OtherCPU: otherMax(m.otherEdge, m.otherRaw),
			Note: fmt.Sprintf("%s keys; written in %s (%s records/s), compacted to %s live messages, all replayed: edgetables %s records/s (%s to Ready), raw %s records/s",
				count(keys), m.appendTook.Round(time.Millisecond), short(float64(n)/m.appendTook.Seconds()), count(m.live),
				short(float64(m.live)/took.Seconds()), m.ready[0].Round(time.Millisecond), short(float64(m.live)/raw.Seconds()))})
	}
	return c, errors.Join(errs...)
}

// sweepIdle measures the idle resident memory of the binary the footprint
// scenario measures (`edgetables run`, as that scenario starts it) at
// every partition count and table count, on a fresh data directory each.
func (e *env) sweepIdle(ctx context.Context) (Curve, error) {
	s := e.cfg.Sweep
	c := Curve{Name: CurveIdleRSS, Title: "Idle RSS vs partitions and tables", X: "partitions", Unit: "MiB",
		Fixed: fmt.Sprintf("VmRSS of `edgetables run` %s after /readyz, nothing loaded, a fresh data directory per point; tables: a count table, a max table, then count tables", idleSettle),
		brief: fmt.Sprintf("VmRSS of edgetables run %s after ready, nothing loaded", idleSettle)}
	for _, t := range s.Tables {
		c.Series = append(c.Series, fmt.Sprintf("%d table%s", t, map[bool]string{true: "", false: "s"}[t == 1]))
	}
	if e.cfg.NoSpawn {
		c.Notes = append(c.Notes, "not run (no spawn): it starts the edgetables binary")
		return c, nil
	}
	var release string
	if e.cfg.Executable == "" {
		var err error
		if release, err = e.releaseBinary(ctx); err != nil {
			return c, err
		}
	}
	exe, what, err := e.footprintExecutable(release)
	if err != nil {
		return c, err
	}
	c.Fixed += "; the binary: " + what
	var errs []error
points:
	for _, p := range s.Partitions {
		row := Row{X: float64(p)}
		for _, t := range s.Tables {
			port, err := freePort()
			if err != nil {
				return c, err
			}
			httpAddr := "127.0.0.1:" + strconv.Itoa(port)
			dir := filepath.Join(e.dir, fmt.Sprintf("sweep-idle-p%d-t%d", p, t))
			e.log.Info("bench: sweep: idle node", "partitions", p, "tables", t)
			rss, err := idleRSS(ctx, exe, httpAddr, nodeArgs(dir, httpAddr, p, t))
			if err != nil {
				errs = append(errs, c.pointFailed(p, fmt.Errorf("%d tables: %w", t, err)))
				if ctx.Err() != nil {
					break points
				}
				continue points
			}
			row.Y = append(row.Y, mib(rss))
		}
		c.Rows = append(c.Rows, row)
	}
	return c, errors.Join(errs...)
}

// writeCurvePlot writes c's plot to dir/scaling-<name>.svg, when (the
// run's date and machine) in its subtitle, and records its path in c.
func writeCurvePlot(dir string, c *Curve, when string) error {
	p := plot{title: c.Title, subtitle: c.brief + "; " + when, xLabel: c.X, yLabel: c.Unit, logY: c.logY}
	switch c.Unit {
	case "s":
		p.yLabel = "time (s)"
	case "MiB":
		p.yLabel = "RSS (MiB)"
	}
	for i, name := range c.Series {
		ps := plotSeries{name: name}
		for _, r := range c.Rows {
			ps.points = append(ps.points, plotPoint{x: r.X, y: r.Y[i]})
		}
		p.series = append(p.series, ps)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("plot dir: %w", err)
	}
	path := filepath.Join(dir, "scaling-"+c.Name+".svg")
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	err = writeSVG(f, p)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	c.Plot = path
	return nil
}

// writeCurves writes each curve as a Markdown section: what the points
// share, a table with a row per point, the plot, the notes.
func writeCurves(b *strings.Builder, curves []Curve) {
	if len(curves) == 0 {
		return
	}
	b.WriteString("\n## Scaling sweep (each point measured once)\n")
	for _, c := range curves {
		fmt.Fprintf(b, "\n### %s\n\n%s.\n\n", c.Title, c.Fixed)
		if len(c.Rows) > 0 {
			b.WriteString("| " + c.X)
			align := "|---:"
			for _, s := range c.Series {
				fmt.Fprintf(b, " | %s (%s)", cell(s), c.Unit)
				align += "|---:"
			}
			if c.Ratio != "" {
				fmt.Fprintf(b, " | %s", cell(c.Ratio))
				align += "|---:"
			}
			other := slices.ContainsFunc(c.Rows, func(r Row) bool { return r.OtherCPU != nil })
			if other {
				b.WriteString(" | other CPU")
				align += "|---:"
			}
			b.WriteString(" |\n" + align + "|\n")
			for _, r := range c.Rows {
				fmt.Fprintf(b, "| %s", count(int(r.X)))
				for _, y := range r.Y {
					fmt.Fprintf(b, " | %s", curveValue(y, c.Unit))
				}
				if c.Ratio != "" {
					fmt.Fprintf(b, " | %.2f×", r.Ratio)
				}
				switch {
				case r.OtherCPU != nil:
					fmt.Fprintf(b, " | %s", otherNote(*r.OtherCPU))
				case other:
					b.WriteString(" | —")
				}
				b.WriteString(" |\n")
			}
		}
		if c.Plot != "" {
			fmt.Fprintf(b, "\nPlot: %s\n", c.Plot)
		}
		if len(c.Notes) > 0 || slices.ContainsFunc(c.Rows, func(r Row) bool { return r.Note != "" }) {
			b.WriteString("\n")
		}
		for _, n := range c.Notes {
			fmt.Fprintf(b, "- %s\n", n)
		}
		for _, r := range c.Rows {
			if r.Note != "" {
				fmt.Fprintf(b, "- %s %s: %s\n", count(int(r.X)), c.X, r.Note)
			}
		}
	}
}

// curveValue formats a value of a curve's table: rates with k and M,
// times in seconds with three significant digits, sizes with one decimal.
func curveValue(v float64, unit string) string {
	switch unit {
	case "s":
		decimals := 0
		if v > 0 {
			decimals = min(3, max(0, 2-int(math.Floor(math.Log10(v)))))
		}
		return strconv.FormatFloat(v, 'f', decimals, 64)
	case "MiB":
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return short(v)
	}
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }
