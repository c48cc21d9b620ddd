package manager

import "github.com/edgetables/edgetables/manager/port"

// The table manager reaches the message system only through the interfaces
// of package port (Config.Changelog, Source, DeadLetters, Coordinator,
// Global). Package jetstream implements them on NATS JetStream.

// missedTombstones reports whether a store that applied the log of state s
// up to offset (0: nothing) may have missed a tombstone that has expired
// since (see port.LogState.TombstonesFrom).
func missedTombstones(s port.LogState, offset uint64) bool {
	return offset > 0 && offset+1 < s.TombstonesFrom
}
