//go:build failpoints

package manager

import "sync"

// failpointsEnabled reports whether this build has failpoints.
const failpointsEnabled = true

var failpoints sync.Map // name → func() error

// failpoint returns the error of the named point (nil when disabled).
func failpoint(name string) error {
	if f, ok := failpoints.Load(name); ok {
		return f.(func() error)()
	}
	return nil
}

// setFailpoint makes the named point call f (nil: disables it).
func setFailpoint(name string, f func() error) {
	if f == nil {
		failpoints.Delete(name)
		return
	}
	failpoints.Store(name, f)
}
