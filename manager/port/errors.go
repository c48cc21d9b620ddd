package port

import "errors"

// Sentinel errors the ports' implementations return (wrapped, tested for
// with errors.Is), each named where its method says when.
var (
	// ErrFenced is returned by Changelog.Append when another writer has
	// written to the partition's log since this writer last did: the
	// partition now belongs to someone else.
	ErrFenced = errors.New("edgetables: changelog fenced: another writer owns the partition")
	// ErrConflict is returned by GlobalLog.Put when the key's last record
	// is not at the sequence the writer expected: another write to the key
	// came first. A global table's writes return it too (manager.GlobalTable:
	// Update retries on it).
	ErrConflict = errors.New("edgetables: global table key changed meanwhile")
	// ErrStaleAssignment is returned by Coordinator.PublishAssignment when the
	// stored assignment changed since the revision the leader read: another
	// leader published meanwhile.
	ErrStaleAssignment = errors.New("edgetables: assignment changed meanwhile")
	// ErrDuplicateNode is returned by Coordinator.Heartbeat when another live
	// instance, started earlier, holds this member's name (two devices cloned
	// from one image, say): this instance must stop.
	ErrDuplicateNode = errors.New("edgetables: another live instance holds this node name")
)
