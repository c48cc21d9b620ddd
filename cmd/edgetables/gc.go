package main

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// defaultGCPercent is the node's garbage collection target when neither
// --gc-percent nor GOGC sets one. Under load most of the live heap (about
// 110-135 MiB working through a backlog of a million events with 8
// partitions) is the embedded server's message block caches; with Go's
// default of 100 the heap grows to twice that before a collection, and the
// peak resident memory was 277-301 MiB; with 50 it was 215-226 MiB, for
// 0-11% of the node's rate (`edgetables bench --scenarios footprint`,
// docs/benchmarks.md).
const defaultGCPercent = 50

// gcPercent returns the collection target run sets and whether it sets one:
// the flag if given, else none if GOGC is set (the runtime has applied it),
// else defaultGCPercent.
func (r *runCmd) gcPercent() (int, bool) {
	switch {
	case r.GCPercent > 0:
		return r.GCPercent, true
	case os.Getenv("GOGC") != "":
		return 0, false
	default:
		return defaultGCPercent, true
	}
}

// setGCPercent applies gcPercent.
func (r *runCmd) setGCPercent(log *slog.Logger) {
	if pct, ok := r.gcPercent(); ok {
		debug.SetGCPercent(pct)
		log.Debug("garbage collection target set", "percent", pct)
	}
}
