package store

import "errors"

var (
	// ErrCorrupt is wrapped by the errors of a store whose file cannot be
	// trusted: Open returns it when the file is not a bbolt database, has
	// another version, has a meta page whose header is damaged or no meta
	// page whose checksum holds, is shorter than its own meta page says,
	// has a page that does not name itself or does not hold its keys, or
	// fails the consistency check; any method returns it when bbolt
	// panicked or faulted on a bad page. The caller closes the store (if it
	// has one), destroys it and rebuilds it from the changelog. (One meta
	// page whose checksum fails is not ErrCorrupt: bbolt then reads the
	// other, the commit before, as after a torn write; the store's offsets
	// are that commit's.)
	ErrCorrupt = errors.New("store: corrupt")

	// ErrLocked is wrapped by the error of Open when another holder (another
	// process, or another open store of the same file in this one) keeps the
	// file locked beyond Options.OpenTimeout. The file is fine: callers must
	// not destroy or rebuild it, only retry later or give up.
	ErrLocked = errors.New("store: locked by another holder")

	// ErrClosed is returned by the methods of a store after Close.
	ErrClosed = errors.New("store: closed")

	// errEmptyTable is returned by Apply for a mutation without a table name.
	errEmptyTable = errors.New("store: mutation without table name")
)
