package manager

import (
	"context"
	"time"
)

// The table manager reaches the message system only through the interfaces
// in this file. Package jetstream implements them on NATS JetStream.

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
	// closed windows (WindowedTableConfig.TombstoneTTL); everything else
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

// missedTombstones reports whether a store that applied the log up to
// offset (0: nothing) may have missed a tombstone that has expired since.
func (s LogState) missedTombstones(offset uint64) bool {
	return offset > 0 && offset+1 < s.TombstonesFrom
}

// Changelog is the app's changelog: one ordered log per partition, holding
// the records of every table in that partition, compacted to the last
// record per key.
type Changelog interface {
	// Subjects returns the subjects (with wildcards) holding table's
	// records, for ChangelogTopics.
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
	// last one before it, in a compacted log) has been passed to fn.
	Replay(ctx context.Context, p int, from, until uint64, batchSize int, fn func([]Entry) error) error
	// Follow reads partition p's log from sequence from and keeps reading
	// as it grows, passing batches of at most batchSize entries to fn (a
	// batch is passed when full or when the reader has caught up), until
	// ctx ends; then it returns nil. Standby replicas use it.
	Follow(ctx context.Context, p int, from uint64, batchSize int, fn func([]Entry) error) error
}

// SourceMessage is one input event as stored in the source stream.
type SourceMessage struct {
	Seq     uint64
	Subject string
	Header  map[string][]string
	Data    []byte
	Time    time.Time
}

// SourceState describes the source stream.
type SourceState struct {
	// First and Last are the first and last sequences stored (0, 0 when
	// never written; First is Last+1 when every message was removed).
	// Last never goes down while the stream lives, unless it lost its
	// tail (a power cut before the server synced it).
	First, Last uint64
	// Epoch identifies the stream: it changes when the stream is deleted
	// and created again ("" when the implementation cannot tell).
	Epoch string
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

// Source is the stream that captures the input events of every agent.
type Source interface {
	// Subjects returns the subjects the source captures.
	Subjects() []string
	// Open starts reading at sequence from (inclusive; earlier messages
	// that are gone are skipped).
	Open(ctx context.Context, from uint64) (SourceReader, error)
	// Trim removes every message with a sequence below seq: they have been
	// committed by every partition.
	Trim(ctx context.Context, seq uint64) error
	// State returns the first and last sequences stored and the
	// stream's epoch, as the stream's leader holds them.
	State(ctx context.Context) (SourceState, error)
}

// SourceReader delivers source messages in sequence order.
type SourceReader interface {
	// Next returns up to max messages. It waits at most wait for the first
	// one and returns an empty slice (no error) when none came.
	Next(ctx context.Context, max int, wait time.Duration) ([]SourceMessage, error)
	// Ack acknowledges every delivered message up to and including seq.
	Ack(ctx context.Context, seq uint64) error
	// Close stops reading.
	Close() error
}

// DeadLetter is a source message an agent could not handle.
type DeadLetter struct {
	Agent   string // the agent (for built-in tables, the table) that refused it
	Reason  string
	Message SourceMessage
}

// DeadLetters receives the messages agents refuse.
type DeadLetters interface {
	// Send stores dl durably and returns after it is stored.
	Send(ctx context.Context, dl DeadLetter) error
}

// DeadLetterQueue is DeadLetters that can also send without waiting for
// each dead letter to be stored, as a burst of bad input needs. The
// manager uses it when its DeadLetters implements it.
type DeadLetterQueue interface {
	DeadLetters
	// Enqueue sends dl without waiting for it to be stored; it waits only
	// while too many are unacknowledged (never drops). A failure after it
	// returned is logged by the implementation.
	Enqueue(ctx context.Context, dl DeadLetter) error
	// Flush waits until every dead letter enqueued before the call has
	// been stored or has failed, or ctx ends.
	Flush(ctx context.Context) error
}

// GlobalLog is the changelog of the app's global tables: one log holding
// every global table's records, compacted to the last record per key,
// written by every node and read by every node. Its entries are records
// only (no commit markers).
type GlobalLog interface {
	// Subjects returns the subjects (with wildcards) holding table's
	// records, for ChangelogTopics.
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
