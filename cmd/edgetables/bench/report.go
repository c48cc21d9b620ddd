package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Result is one measurement next to its baseline and target.
type Result struct {
	// Name says what was measured, with the sizes that matter.
	Name string `json:"name"`
	// Value is the measurement in Unit: a rate ("events/s", "ops/s",
	// "records/s"), a latency ("µs") or a size ("MiB").
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Baseline names the raw operation measured in the same run for
	// comparison ("" when there is none); BaselineValue is its result in
	// Unit.
	Baseline      string  `json:"baseline"`
	BaselineValue float64 `json:"baseline_value"`
	// Ratio is edgetables against the baseline, higher is better:
	// Value/BaselineValue for rates, BaselineValue/Value for latencies. 0
	// when there is no baseline.
	Ratio float64 `json:"ratio"`
	// Target is the goal, in words ("≥ 1.0× raw", "< 30 MiB"); Met says
	// whether it was reached (nil when there is no target or it cannot be
	// judged).
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
	// Note gives the details behind the figure: times, counts, conditions.
	Note string `json:"note,omitempty"`
	// OtherCPU is the largest share (0 to 1) of the machine's CPUs that
	// other processes and interrupts used during a measured phase behind
	// the figure: above a few percent, the figure is noisy. Nil when not
	// known.
	OtherCPU *float64 `json:"other_cpu,omitempty"`
	// Distribution, for a figure measured more than once in the run (the
	// failover's kills), is the spread of its samples in Unit; Value is
	// then one of its statistics, which Name says.
	Distribution *Distribution `json:"distribution,omitempty"`
}

// NotRun is a scenario that was selected but produced no results: not
// implemented yet, or failed.
type NotRun struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Sizes are the sizes a run used.
type Sizes struct {
	Events          int `json:"events"`
	Keys            int `json:"keys"`
	Partitions      int `json:"partitions"`
	RecoveryRecords int `json:"recovery_records"`
	RecoveryKeys    int `json:"recovery_keys"`
	Reads           int `json:"reads"`
}

// Report is the outcome of a run.
type Report struct {
	Machine Machine  `json:"machine"`
	Sizes   Sizes    `json:"sizes"`
	Results []Result `json:"results"`
	NotRun  []NotRun `json:"not_run,omitempty"`
	// Curves are the scaling sweep's curves (Config.Sweep).
	Curves []Curve `json:"curves,omitempty"`
	// Took is the run's wall time.
	Took string `json:"took"`
}

// Machine describes where a run happened.
type Machine struct {
	Date       string `json:"date"`
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// CPU is the model name from /proc/cpuinfo ("" elsewhere).
	CPU string `json:"cpu"`
	// Memory is MemTotal from /proc/meminfo.
	Memory string `json:"memory,omitempty"`
	// Kernel is the kernel release.
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	// NATSServer is the embedded nats-server's version; NATSClient and
	// Bbolt the linked nats.go and bbolt modules.
	NATSServer string `json:"nats_server"`
	NATSClient string `json:"nats_go,omitempty"`
	Bbolt      string `json:"bbolt,omitempty"`
}

func machine() Machine {
	m := Machine{
		Date: time.Now().UTC().Format(time.RFC3339), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version(),
		NATSServer: server.VERSION,
		CPU:        procField("/proc/cpuinfo", "model name"),
	}
	if kb, err := strconv.ParseFloat(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 64); err == nil {
		m.Memory = fmt.Sprintf("%.1f GiB", kb/(1<<20))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/nats-io/nats.go":
				m.NATSClient = d.Version
			case "go.etcd.io/bbolt":
				m.Bbolt = d.Version
			}
		}
	}
	return m
}

// procField returns the value of the first "name: value" line of a /proc
// file, or "".
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Markdown writes the report as Markdown: the machine, the sizes, a table
// of results (and of scenarios not run), and the notes.
func (r Report) Markdown(w io.Writer) error {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "edgetables bench, %s (took %s)\n\n", m.Date, r.Took)
	fmt.Fprintf(&b, "- machine: %s/%s, %d CPUs (GOMAXPROCS %d), %s, %s RAM, kernel %s\n",
		m.GOOS, m.GOARCH, m.NumCPU, m.GOMAXPROCS, orDash(m.CPU), orDash(m.Memory), orDash(m.Kernel))
	fmt.Fprintf(&b, "- software: %s, nats-server v%s, nats.go %s, bbolt %s\n", m.Go, m.NATSServer, orDash(m.NATSClient), orDash(m.Bbolt))
	if len(r.Results) == 0 && len(r.NotRun) == 0 && len(r.Curves) > 0 {
		writeCurves(&b, r.Curves)
		_, err := io.WriteString(w, b.String())
		return err
	}
	s := r.Sizes
	fmt.Fprintf(&b, "- sizes: %s events, %s keys, %d partitions; recovery %s records over %s keys; %s reads of each kind\n\n",
		count(s.Events), count(s.Keys), s.Partitions, count(s.RecoveryRecords), count(s.RecoveryKeys), count(s.Reads))
	b.WriteString("| scenario | value | baseline | baseline value | ratio | target | met | other CPU |\n")
	b.WriteString("|---|---:|---|---:|---:|---|---|---:|\n")
	for _, x := range r.Results {
		base, ratio := "—", "—"
		if x.Baseline != "" {
			base, ratio = formatValue(x.BaselineValue, x.Unit), fmt.Sprintf("%.2f×", x.Ratio)
		}
		met := "—"
		if x.Met != nil {
			met = map[bool]string{true: "met", false: "**missed**"}[*x.Met]
		}
		other := "—"
		if x.OtherCPU != nil {
			other = otherNote(*x.OtherCPU)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n",
			cell(x.Name), formatValue(x.Value, x.Unit), cell(orDash(x.Baseline)), base, ratio, cell(orDash(x.Target)), met, other)
	}
	for _, x := range r.NotRun {
		fmt.Fprintf(&b, "| %s | %s | | | | | | |\n", cell(x.Name), cell(x.Reason))
	}
	writeDistributions(&b, r.Results)
	b.WriteString("\nother CPU: the most CPU that other processes and interrupts used during the measured phases (share of all CPUs); above a few percent the row is noisy.\n")
	notes := false
	for _, x := range r.Results {
		if x.Note == "" {
			continue
		}
		if !notes {
			b.WriteString("\nNotes:\n\n")
			notes = true
		}
		fmt.Fprintf(&b, "- %s: %s\n", x.Name, x.Note)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeDistributions writes the table of the results that have a
// distribution, if any.
func writeDistributions(b *strings.Builder, results []Result) {
	header := false
	for _, x := range results {
		d := x.Distribution
		if d == nil {
			continue
		}
		if !header {
			b.WriteString("\nDistributions of the figures measured more than once:\n\n")
			b.WriteString("| scenario | samples | min | median | p90 | max | within the limit |\n")
			b.WriteString("|---|---:|---:|---:|---:|---:|---|\n")
			header = true
		}
		within := "—"
		if d.Limit > 0 {
			within = fmt.Sprintf("%d of %d < %s", d.Within, d.Samples, formatValue(d.Limit, x.Unit))
		}
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s |\n", cell(x.Name), d.Samples, formatValue(d.Min, x.Unit),
			formatValue(d.Median, x.Unit), formatValue(d.P90, x.Unit), formatValue(d.Max, x.Unit), within)
	}
}

// cell escapes the pipes of a table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// formatValue formats v in unit for people: rates with k and M, latencies
// and sizes with two or one decimals.
func formatValue(v float64, unit string) string {
	switch {
	case strings.HasSuffix(unit, "/s"):
		return short(v) + " " + unit
	case unit == "µs":
		return fmt.Sprintf("%.2f µs", v)
	default:
		return fmt.Sprintf("%.1f %s", v, unit)
	}
}

// short formats a rate with three significant digits and k or M.
func short(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e5:
		return strconv.FormatFloat(v/1e3, 'f', 0, 64) + "k"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

// count formats n with thousands separators: 1,000,000.
func count(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + count(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// mib converts bytes to MiB.
func mib(b int64) float64 { return float64(b) / (1 << 20) }
