package manager

import (
	"errors"
	"fmt"
)

// Sentinel errors of the table manager. Test for them with errors.Is.
var (
	// ErrTableNotFound is returned for a table name the manager does not know.
	ErrTableNotFound = errors.New("edgetables: table not found")
	// ErrKeyNotFound is returned by lookups of an absent key.
	ErrKeyNotFound = errors.New("edgetables: key not found")
	// ErrNotOwner is returned for a read or write of a partition that is
	// not assigned to this node.
	ErrNotOwner = errors.New("edgetables: partition not assigned to this node")
	// ErrNotReady is returned for a read of a partition that is still
	// recovering.
	ErrNotReady = errors.New("edgetables: partition is recovering")
	// ErrWrongPartition is returned when an agent writes a key that belongs
	// to another partition than the event it is processing.
	ErrWrongPartition = errors.New("edgetables: key belongs to another partition than the event")
	// ErrFinalCommit is returned by Run when the commit of what was
	// uncommitted at shutdown failed: those events are processed again at
	// the next start (by this node or the partitions' next owners).
	ErrFinalCommit = errors.New("edgetables: final commit at shutdown failed")
	// ErrStarted is returned by Add and AddAgent after the manager started.
	ErrStarted = errors.New("edgetables: table manager already started")
	// ErrDuplicate is returned by Add and AddAgent for a name in use.
	ErrDuplicate = errors.New("edgetables: duplicate name")
	// ErrStoredValue is wrapped by reads of a stored value that the
	// table's codec cannot decode: the node's store for the partition is
	// damaged (a file changed on disk), or the changelog holds a record no
	// node of this table wrote. An event that reads such a value goes to
	// the dead-letter subject; removing the partition's store file while
	// the node is stopped has it rebuilt from the changelog.
	ErrStoredValue = errors.New("edgetables: stored value does not decode")
	// ErrBadEvent marks an error an agent returns for an event it cannot
	// handle; such events go to the dead-letter subject.
	ErrBadEvent = errors.New("edgetables: bad event")
)

// Sentinel errors of windowed and set tables.
var (
	// ErrWindowClosed is returned by a windowed table's Update and Set when
	// every window holding the event's time is closed (its end plus
	// Expires has passed): the event is too late and changes nothing.
	ErrWindowClosed = errors.New("edgetables: window closed")
	// ErrEventTime is returned by a windowed table's Update, Set, Current
	// and Time for an event whose time it cannot use: outside 1970 to 2200
	// (or not a finite number), or further ahead of the node's clock than
	// WindowedTableConfig.MaxClockSkew. It wraps ErrBadEvent: such events
	// go to the dead-letter subject, with the time in the reason.
	ErrEventTime = fmt.Errorf("%w: unusable event time", ErrBadEvent)
	// ErrNotWindowed is returned by TableManager.Windows for a table that is
	// not a windowed table.
	ErrNotWindowed = errors.New("edgetables: table is not windowed")
	// ErrSetFull is returned by SetTable.Add when a set would exceed the
	// table's MaxMembers.
	ErrSetFull = errors.New("edgetables: set is full")
)

// Sentinel errors of global tables.
var (
	// ErrBadValue is returned by WritableCollection.PutJSON for a value
	// that is not JSON or does not fit the table's value type.
	ErrBadValue = errors.New("edgetables: bad value")
	// ErrNoGlobalLog is returned by Run when a global table was added but
	// Config.Global or Config.GlobalStores is nil.
	ErrNoGlobalLog = errors.New("edgetables: global table without a global log")
)
