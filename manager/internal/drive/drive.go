// Package drive links package tabletest to the synchronous core of a
// manager.TableManager without widening manager's public API: package
// manager sets New when it is initialised, and tabletest calls it.
package drive

import (
	"context"
	"time"
)

// Clock is the clock a driven manager's windowed tables read instead of
// their own: Wall is the node's clock, Mono the monotonic clock (the time
// elapsed since some fixed instant).
type Clock struct {
	Wall func() time.Time
	Mono func() time.Duration
}

// Core runs a TableManager one step at a time on the caller's goroutine,
// through the manager's own processing code. It is not safe for
// concurrent use.
type Core interface {
	// Start assigns the manager every partition and recovers each from
	// its changelog (the manager's rebalance and recovery paths), then
	// opens the source after the lowest committed position.
	Start(ctx context.Context) error
	// Poll reads and processes every message the source holds past the
	// last one processed, committing whenever the manager's own limits
	// (CommitEvery, MaxCommitRecords) say so; it returns how many
	// messages it examined.
	Poll(ctx context.Context) (int, error)
	// CloseWindows is the closing pass of a commit interval: the due
	// windows of every windowed table close (OnWindowClose runs); their
	// removals are buffered like any write.
	CloseWindows(ctx context.Context)
	// Commit commits every partition and waits for the commits, then
	// trims the source below what every partition committed (unless
	// KeepSource).
	Commit(ctx context.Context) error
	// Stop commits what is uncommitted and releases every partition, as
	// the manager does when Run's context ends.
	Stop(ctx context.Context) error
	// Crash releases every partition without committing: uncommitted
	// writes are dropped, as a killed process loses them.
	Crash()
}

// New returns the Core of manager (a *manager.TableManager, with its
// tables and agents added and not yet run); clock replaces the clock of
// every windowed table. Set by package manager.
var New func(manager any, clock Clock) (Core, error)
