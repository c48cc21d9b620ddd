package manager

// Test hooks for the external tests of this package.

// Failpoint names.
const (
	FPAfterAppend  = fpAfterAppend
	FPAfterPersist = fpAfterPersist
)

// ErrCrash is what a failpoint returns to simulate a crash.
var ErrCrash = errCrash

// EnableFailpoint makes the named point call f; the returned func disables it.
func EnableFailpoint(name string, f func() error) (disable func()) {
	failpoints.Store(name, f)
	return func() { failpoints.Delete(name) }
}
