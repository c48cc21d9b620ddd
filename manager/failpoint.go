package manager

import (
	"errors"
	"sync"
)

// Failure injection points, like bbolt's failpoints: tests enable a point
// to make the manager fail there. errCrash from a point stops Run at once,
// without the final commit, as a killed process would.
const (
	// fpAfterAppend: the commit's changelog records and marker are stored,
	// the store transaction has not run.
	fpAfterAppend = "after-append"
	// fpAfterPersist: the store transaction ran, the source is not acked.
	fpAfterPersist = "after-persist"
)

// errCrash is what an enabled failpoint returns to simulate a crash.
var errCrash = errors.New("failpoint: simulated crash")

var failpoints sync.Map // name → func() error

// failpoint returns the error of the named point (nil when disabled).
func failpoint(name string) error {
	if f, ok := failpoints.Load(name); ok {
		return f.(func() error)()
	}
	return nil
}
