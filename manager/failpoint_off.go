//go:build !failpoints

package manager

// failpointsEnabled reports whether this build has failpoints.
const failpointsEnabled = false

// failpoint is nothing without the build tag "failpoints".
func failpoint(string) error { return nil }

// setFailpoint does nothing without the build tag "failpoints".
func setFailpoint(string, func() error) {}
