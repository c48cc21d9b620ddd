package port

import (
	"context"
)

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
