package port

import (
	"context"
	"time"
)

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

// DrainingReader is a SourceReader that can tell a source it has caught
// up with from a delivery that is merely slow: the table manager's idle
// commits (Config.CommitIdle) wait for the reader to be drained. A reader
// without it is taken as drained whenever Next waited and got nothing.
type DrainingReader interface {
	SourceReader
	// Drained reports whether every message the source held when the
	// last one was delivered has been delivered.
	Drained() bool
}

// SourceHold is a reader of the source stream outside the app, such as the
// hub of an edge site: the manager's source trim (manager.Config.SourceHold)
// keeps what it has not taken yet.
type SourceHold interface {
	// Taken returns the last source sequence the reader has durably
	// taken; ok is false while that is unknown (then the trim removes
	// nothing). It must not block: it returns what it last learned.
	Taken() (seq uint64, ok bool)
}
