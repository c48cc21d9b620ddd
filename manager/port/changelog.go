package port

import (
	"context"
	"time"
)

// Record is one change of one table key, as written to the changelog.
// Values are absolute (never deltas), so applying a record twice is harmless.
type Record struct {
	Table  string
	Key    []byte
	Value  []byte
	Delete bool // a tombstone: the key was removed
	// TTL, when positive, lets the changelog forget the record once TTL has
	// passed since it was written (whole seconds, rounded up, at least
	// one): a reader that starts before the record is replayed from then
	// on never sees it. Zero keeps the record until a later record of the
	// same key supersedes it. Windowed tables set it on the tombstones of
	// closed windows (manager.WindowedTableConfig.TombstoneTTL); everything else
	// is kept.
	TTL time.Duration
}

// CommitMarker closes a commit in a partition's changelog. It carries the
// source position the partition's state corresponds to.
type CommitMarker struct {
	// SourceSeq is the last source sequence examined for the partition:
	// every source message up to it has had its effect on the records
	// before the marker.
	SourceSeq uint64 `json:"source_seq"`
	// Node is the name of the writer.
	Node string `json:"node,omitempty"`
	// Generation is the assignment generation the writer owned the
	// partition in (0 on a single node).
	Generation uint64 `json:"generation,omitempty"`
	// SourceEpoch identifies the source stream SourceSeq counts in
	// (SourceState.Epoch): a source deleted and created again numbers its
	// events from 1 again, so a position means nothing for another
	// epoch. Empty in markers written before it existed (the position
	// is then taken to be the current source's).
	SourceEpoch string `json:"source_epoch,omitempty"`
}

// Entry is one message read back from a partition's changelog: a record or
// a commit marker.
type Entry struct {
	Seq    uint64
	Record Record        // valid when Commit is nil
	Commit *CommitMarker // non-nil for commit markers
}

// LogState describes a partition's changelog.
type LogState struct {
	// First and Last are the first and last sequences stored (0, 0 when
	// the log has never been written; First may be Last+1 when every
	// message was removed).
	First, Last uint64
	// Epoch changes when the log is deleted and created again.
	Epoch string
	// TombstonesFrom, when the log's tombstones expire, is the first
	// sequence from which none can have expired: a store that applied the
	// log only up to an offset below TombstonesFrom-1 may have missed a
	// tombstone, and would keep a deleted key; it is rebuilt by a full
	// replay. 0 when tombstones are kept for ever.
	TombstonesFrom uint64
}

// Changelog is the app's changelog: one ordered log per partition, holding
// the records of every table in that partition, compacted to the last
// record per key.
type Changelog interface {
	// Subjects returns the subjects (with wildcards) holding table's
	// records, for manager.TableManager.ChangelogTopics.
	Subjects(table string) []string
	// State returns the state of partition p's log.
	State(ctx context.Context, p int) (LogState, error)
	// Append writes recs and then marker to partition p's log and returns
	// after every message is stored, with the sequence of the marker.
	// expectLast is the sequence the log must end at before the first
	// message: if another writer has written since, Append returns an
	// error wrapping ErrFenced. On any other error part of the messages
	// may be stored: the caller must never append again expecting an end
	// it did not see itself write (that would write after another
	// writer's messages); it reads State, and appends again only if the
	// log still ends at expectLast.
	Append(ctx context.Context, p int, expectLast uint64, recs []Record, marker CommitMarker) (last uint64, err error)
	// LastCommit returns the last commit marker in partition p's log, as
	// its writer's stream leader holds it, with its sequence; ok is false
	// when the log has none. Its SourceSeq is the partition's committed
	// source position, whichever node wrote it: the cluster-wide truth
	// that the source trim goes by.
	LastCommit(ctx context.Context, p int) (marker CommitMarker, seq uint64, ok bool, err error)
	// Replay reads partition p's log from sequence from (inclusive) up to
	// and including until, calling fn with batches of at most batchSize
	// entries in sequence order. It returns when the entry at until (or the
	// last one before it, in a compacted log) has been passed to fn. Each
	// batch is a slice of its own, which fn may keep (and hand to another
	// goroutine) after it returns.
	Replay(ctx context.Context, p int, from, until uint64, batchSize int, fn func([]Entry) error) error
	// FirstStored returns the sequence of the first message stored in
	// partition p's log at or after seq, as the log's leader holds it
	// (a lagging replica cannot answer); 0 when none is. A recovery whose
	// replay ended before the log's last sequence asks it whether its
	// replay read a replica that lagged (a message up to that end is
	// stored), a writer appended since (the first one stored is after
	// it), or the messages were removed by hand (none is: edgetables never
	// removes a log's last message).
	FirstStored(ctx context.Context, p int, seq uint64) (uint64, error)
	// Follow reads partition p's log from sequence from and keeps reading
	// as it grows, passing batches of at most batchSize entries to fn (a
	// batch is passed when full or when the reader has caught up), until
	// ctx ends; then it returns nil. Standby replicas use it.
	Follow(ctx context.Context, p int, from uint64, batchSize int, fn func([]Entry) error) error
}

// LeaderMover is implemented by a Changelog whose partitions' logs are
// replicated, with one replica leading. The manager moves the leader of a
// partition's log off the partition's active owner, to a standby of the
// partition when it can: when the owner dies, the log then needs no
// election before the standby commits, which is most of a failover's time.
type LeaderMover interface {
	// MoveLeader makes another replica lead partition p's log if node from
	// leads it, preferring node to ("": any); moved reports whether it
	// asked.
	MoveLeader(ctx context.Context, p int, from, to string) (moved bool, err error)
}

// GlobalLog is the changelog of the app's global tables: one log holding
// every global table's records, compacted to the last record per key,
// written by every node and read by every node. Its entries are records
// only (no commit markers).
type GlobalLog interface {
	// Subjects returns the subjects (with wildcards) holding table's
	// records, for manager.TableManager.ChangelogTopics.
	Subjects(table string) []string
	// State returns the log's state.
	State(ctx context.Context) (LogState, error)
	// Put appends rec and returns its sequence once it is stored. With
	// expect non-nil, the key's last record must be at sequence *expect
	// (0: the key was never written), else Put stores nothing and fails
	// with an error wrapping ErrConflict.
	Put(ctx context.Context, rec Record, expect *uint64) (uint64, error)
	// Replay and Follow are Changelog's, for the one global log.
	Replay(ctx context.Context, from, until uint64, batchSize int, fn func([]Entry) error) error
	Follow(ctx context.Context, from uint64, batchSize int, fn func([]Entry) error) error
}
