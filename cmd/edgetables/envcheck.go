package main

import (
	"log/slog"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
)

// envPrefix starts the name of every environment variable a flag reads.
const envPrefix = "EDGETABLES_"

// warnUnknownEnv logs a warning for each EDGETABLES_ variable of environ
// that nothing reads: a misspelled one is otherwise ignored without a
// word, and the flag it meant keeps its default.
func warnUnknownEnv(app *kong.Application, environ []string, log *slog.Logger) {
	known := knownEnv(app)
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || slices.Contains(known, name) {
			continue
		}
		attrs := []any{"name", name}
		if near := nearest(name, known); near != "" {
			attrs = append(attrs, "did_you_mean", near)
		}
		log.Warn("environment variable ignored: no flag reads it", attrs...)
	}
}

// testSuiteEnv are the variables edgetables' own tests read (go test; see
// the README's "Running the tests"). The tests pass their environment on to
// the binaries they start, which must not take them for misspellings.
// TestTestSuiteEnvListed keeps the list whole.
var testSuiteEnv = []string{
	"EDGETABLES_BROWSER", "EDGETABLES_CHROMIUM", "EDGETABLES_CONSOLE_SCREENSHOT",
	"EDGETABLES_CHAOS", "EDGETABLES_CHAOS_FLAGS", "EDGETABLES_CHAOS_HOGS", "EDGETABLES_CHAOS_LOGS",
	"EDGETABLES_CHAOS_ONLY", "EDGETABLES_CHAOS_RUNS", "EDGETABLES_CHAOS_SEED",
	"EDGETABLES_HUB_OUTAGE", "EDGETABLES_QEMU", "EDGETABLES_QEMU_DIST",
	"EDGETABLES_SIZING", "EDGETABLES_SIZING_SETTLE", "EDGETABLES_SIZING_UPDATES",
	"EDGETABLES_TEST_LOG", "EDGETABLES_TEST_LOGDIR",
}

// knownEnv returns the variables the flags of every command read, the
// ones the binary reads itself, and the test suite's.
func knownEnv(app *kong.Application) []string {
	known := append([]string{tokenEnv}, testSuiteEnv...)
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			known = append(known, f.Envs...)
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(app.Node)
	return known
}

// nearest returns the name of known closest to name, if at most two
// edits away, else "".
func nearest(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(name, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
