package manager

import "errors"

// Failure injection points, like bbolt's gofail failpoints: tests built
// with the tag "failpoints" (the README's test command) enable a point to
// make the manager fail there (failpoint_on.go); other builds, the release
// binary among them, compile each point to nothing (failpoint_off.go).
// errCrash from a point stops Run at once, without the final commit, as a
// killed process would.
const (
	// fpAfterAppend: the commit's changelog records and marker are stored,
	// the store transaction has not run.
	fpAfterAppend = "after-append"
	// fpAfterPersist: the store transaction ran, the source is not acked.
	fpAfterPersist = "after-persist"
)

// errCrash is what an enabled failpoint returns to simulate a crash.
var errCrash = errors.New("failpoint: simulated crash")
