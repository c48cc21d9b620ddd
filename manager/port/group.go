package port

import (
	"context"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/status"
)

// GroupView is the group's state as last seen.
type GroupView struct {
	// Members are the members whose lease is alive, by node name.
	Members map[string]status.MemberState
	// Leader is the node holding the leader lease ("" if none).
	Leader string
	// Assignment is the current assignment and AssignmentRev its revision
	// in the store (0: none published yet).
	Assignment    assign.Assignment
	AssignmentRev uint64
	// Partial marks a view read key by key while the coordinator cannot
	// follow the store as a whole (after a server's death, for seconds):
	// its assignment, leader and the leases of the members it lists are
	// current, but members that joined since may be missing. A leader
	// computes assignments from it only to take out members it no longer
	// lists.
	Partial bool
}

// Coordinator stores the group's state: member leases, the leader lease and
// the assignment. Leases expire after the session timeout unless renewed.
type Coordinator interface {
	// Heartbeat publishes st under this member's lease, creating or
	// renewing it for one session timeout. If another instance wrote the
	// member's lease since the last heartbeat and is alive and older, it
	// returns an error wrapping ErrDuplicateNode.
	Heartbeat(ctx context.Context, st status.MemberState) error
	// Leave removes this member's lease at once.
	Leave(ctx context.Context) error
	// Campaign acquires or renews the leader lease and reports whether
	// this member holds it.
	Campaign(ctx context.Context) (bool, error)
	// Resign releases the leader lease if this member holds it.
	Resign(ctx context.Context) error
	// PublishAssignment stores a if the stored assignment is still at
	// revision prevRev (0: none stored), returning the new revision, or an
	// error wrapping ErrStaleAssignment.
	PublishAssignment(ctx context.Context, a assign.Assignment, prevRev uint64) (uint64, error)
	// Watch returns a channel that receives the whole view at once and then
	// a fresh view after every change (intermediate views may be skipped),
	// until ctx ends.
	Watch(ctx context.Context) (<-chan GroupView, error)
}

// LogLeaderPlacer is implemented by a Coordinator whose state lives in a
// replicated log with a leader of its own. The group's leader makes its
// own node lead that log: when it dies, the log's election then runs
// while its leader lease expires, rather than another node's death
// stopping leases and assignments for an election of their own.
type LogLeaderPlacer interface {
	// LeadLogHere makes this member's node lead the coordinator's log if
	// another leads it and this node holds a current replica; moved
	// reports whether it asked.
	LeadLogHere(ctx context.Context) (moved bool, err error)
}
