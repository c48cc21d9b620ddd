package manager

import (
	"testing"

	"github.com/edgetables/edgetables/manager/status"
)

// Test hooks for the external tests of this package.

// Failpoint names.
const (
	FPAfterAppend  = fpAfterAppend
	FPAfterPersist = fpAfterPersist
)

// ErrCrash is what a failpoint returns to simulate a crash.
var ErrCrash = errCrash

// EnableFailpoint makes the named point call f; the returned func disables
// it. It skips t in a build without the tag "failpoints".
func EnableFailpoint(t testing.TB, name string, f func() error) (disable func()) {
	t.Helper()
	if !failpointsEnabled {
		t.Skip("failpoints need: go test -tags failpoints")
	}
	setFailpoint(name, f)
	return func() { setFailpoint(name, nil) }
}

// RecoveryProgress returns the state of the last recovery of every
// partition that has one (released partitions' forgotten), in partition
// order.
func (m *TableManager) RecoveryProgress() []status.RecoveryProgress { return m.recovery.snapshot() }
