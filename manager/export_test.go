package manager

import "testing"

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
