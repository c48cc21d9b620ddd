// Package port defines what the table manager needs from a message system,
// as interfaces it consumes and the values they carry: the partitions'
// changelogs (Changelog, with Record, CommitMarker and Entry), the global
// tables' log (GlobalLog), the source stream of input events (Source,
// SourceReader, SourceMessage), the dead-letter queue (DeadLetters), the
// consumer group's shared state (Coordinator, GroupView), and the optional
// LeaderMover and SourceHold.
//
// Package jetstream implements every port on NATS JetStream;
// manager/tabletest implements those of a single node in memory. An
// implementation returns the sentinel errors of this package (wrapped)
// where a method says so: the manager's correctness depends on ErrFenced,
// ErrConflict, ErrStaleAssignment and ErrDuplicateNode being reported
// exactly then.
//
// The package holds contracts only: no implementation, no I/O.
package port
