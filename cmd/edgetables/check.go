package main

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/edgetables/edgetables/edge"
)

// checkCmd validates what run would start with: the same flags, the same
// environment variables and --config file, the same checks (kong's parse,
// runCmd.Validate, the table specs, edge.NewNode's), and nothing started.
type checkCmd struct {
	runCmd `embed:""`
}

// run prints a one-line summary and returns 0, or the error and exitUsage.
func (c *checkCmd) run(stdout, stderr io.Writer, log *slog.Logger) int {
	node, err := c.newNode(log)
	if err == nil {
		err = node.CheckServer()
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgetables: error: %v\n", err)
		return exitUsage
	}
	cfg := node.Config()
	names := make([]string, 0, len(cfg.Tables))
	for _, t := range cfg.Tables {
		names = append(names, t.Name())
	}
	nats := "embedded NATS " + cfg.NATSListen
	switch {
	case len(cfg.NATSURLs) > 0:
		urls := make([]string, len(cfg.NATSURLs))
		for i, s := range cfg.NATSURLs {
			urls[i] = s
			if u, err := url.Parse(s); err == nil {
				urls[i] = u.Redacted() // no password on the terminal
			}
		}
		nats = "NATS " + strings.Join(urls, ",")
	case cfg.ClusterListen != "":
		nats += fmt.Sprintf(" (cluster %s, %d routes)", cfg.ClusterName, len(cfg.Routes))
	}
	fmt.Fprintf(stdout, "configuration OK: node %s, app %s, %d tables (%s), %d partitions, %d replicas, data dir %s, %s, HTTP %s\n",
		cfg.Name, cfg.App, len(names), strings.Join(names, ", "), cfg.Partitions, cfg.Replicas, cfg.DataDir, nats, cfg.HTTPListen)
	for _, w := range looseSecrets(c.secretFiles()) {
		fmt.Fprintf(stderr, "edgetables: warning: %s\n", w)
	}
	return 0
}

// newNode builds the node run starts (and check validates): the tables from
// their specs, the configuration with edge's defaults and checks. Its errors
// name the flag.
func (r *runCmd) newNode(log *slog.Logger) (*edge.Node, error) {
	cfg, err := r.config(log)
	if err != nil {
		return nil, err
	}
	return edge.NewNode(cfg)
}

// byteSize is a size in bytes written as a number with an optional unit:
// B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
type byteSize int64

var sizeUnits = []struct {
	suffix string
	mult   float64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"PiB", 1 << 50}, {"EiB", 1 << 60},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"PB", 1e15}, {"EB", 1e18}, {"B", 1}}

// UnmarshalText parses a size such as 512MiB, 1.5GB or 1048576.
func (b *byteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	mult := 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	// float64(math.MaxInt64) is 2^63, one past it: a size must be below.
	if err != nil || f < 0 || math.IsInf(f, 0) || f*mult >= math.MaxInt64 || mult == 1 && f != math.Trunc(f) {
		return fmt.Errorf("%q: want a size such as 512MiB, 1GiB or a whole number of bytes", text)
	}
	*b = byteSize(math.Round(f * mult))
	return nil
}

// Decode reads a size from the command line or a configuration file, where
// it may be a number.
func (b *byteSize) Decode(ctx *kong.DecodeContext) error {
	return decodeSize(ctx, b, "want a size such as 512MiB")
}

// decodeSize pops a value from the command line or a configuration file,
// a string or a number, into u as text; other values are an error saying
// want.
func decodeSize(ctx *kong.DecodeContext, u encoding.TextUnmarshaler, want string) error {
	t, err := ctx.Scan.PopValue("size")
	if err != nil {
		return err
	}
	switch v := t.Value.(type) {
	case string:
		return u.UnmarshalText([]byte(v))
	case float64:
		return u.UnmarshalText([]byte(strconv.FormatFloat(v, 'f', -1, 64)))
	case int:
		return u.UnmarshalText([]byte(strconv.Itoa(v)))
	}
	return errors.New(want)
}

// UnmarshalJSON takes a table spec from a configuration file: a string, as
// on the command line, or an object of its parts ({"name": "temps",
// "source": "sensors.*.temp", "key": "subject:2", "agg": "max", ...}).
func (t *tableFlag) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return t.UnmarshalText([]byte(s))
	}
	var parts map[string]any
	if err := json.Unmarshal(b, &parts); err != nil {
		return fmt.Errorf("a table is a spec string or an object of its parts, not %s", b)
	}
	// The spec's own order first, for readable errors; unknown parts last,
	// for ParseTableSpec to name.
	order := []string{"name", "source", "key", "agg", "field", "window", "hop", "expires", "time", "tombstone-ttl"}
	var spec []string
	add := func(k string, v any) error {
		var val string
		switch v := v.(type) {
		case string:
			val = v
		case float64, bool:
			val = fmt.Sprint(v)
		default:
			return fmt.Errorf("table part %q: want a string, not %s", k, mustJSON(v))
		}
		if strings.ContainsAny(val, ",=") {
			return fmt.Errorf("table part %s=%q: a value cannot hold ',' or '='", k, val)
		}
		spec = append(spec, k+"="+val)
		return nil
	}
	for _, k := range order {
		if v, ok := parts[k]; ok {
			if err := add(k, v); err != nil {
				return err
			}
			delete(parts, k)
		}
	}
	rest := make([]string, 0, len(parts))
	for k := range parts {
		rest = append(rest, k)
	}
	slices.Sort(rest)
	for _, k := range rest {
		if err := add(k, parts[k]); err != nil {
			return err
		}
	}
	return t.UnmarshalText([]byte(strings.Join(spec, ",")))
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
