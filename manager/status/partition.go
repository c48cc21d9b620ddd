package status

import (
	"time"
)

// PartitionStatus is the state of one assigned partition.
type PartitionStatus struct {
	Partition int            `json:"partition"`
	State     PartitionState `json:"state"`
	// AppliedOffset is the last changelog sequence in the local store;
	// HighWater the changelog's end as last known.
	AppliedOffset uint64 `json:"applied_offset"`
	HighWater     uint64 `json:"high_water"`
	// SourceSeq is the last committed source sequence.
	SourceSeq uint64 `json:"source_seq"`
	// Buffered counts uncommitted keys (a key written both before and
	// after the commit in flight started counts twice).
	Buffered int `json:"buffered_keys"`
	// Behind says why the partition is stopped: its changelog is behind
	// its store (see manager.Config.ChangelogBehind).
	Behind string `json:"changelog_behind,omitempty"`
	// Recovery is the partition's last recovery.
	Recovery *RecoveryProgress `json:"recovery,omitempty"`
	// Failing is the current streak of failures of the partition's
	// recovery or standby task (nil: none).
	Failing *TaskFailure `json:"failing,omitempty"`
}

// PartitionState is the lifecycle state of an assigned partition.
type PartitionState string

// The states of a partition.
const (
	// StateRecovering: the store is being brought up to the changelog's
	// end; the partition is not processed and not read.
	StateRecovering PartitionState = "recovering"
	// StateActive: recovered; events are processed and reads served.
	StateActive PartitionState = "active"
	// StateFenced: another writer took the partition's changelog; this node
	// stopped processing it.
	StateFenced PartitionState = "fenced"
)

// StateStandby: the partition's store follows its changelog on this node,
// ready to be promoted; it is neither processed nor read.
const StateStandby PartitionState = "standby"

// TaskFailure describes a streak of failures of a partition's recovery or
// standby task: it is retried with a growing pause, shown in
// PartitionStatus and in the manager's readiness (a recovery's), and counted.
type TaskFailure struct {
	// Task is "recover" or "standby".
	Task string `json:"task"`
	// Attempts counts the failed attempts in a row; Since is the first.
	Attempts int       `json:"attempts"`
	Since    time.Time `json:"since"`
	// Error is the last attempt's error.
	Error string `json:"error"`
	// RetryIn is the pause before the next attempt.
	RetryIn time.Duration `json:"retry_in"`
}

// RecoveryProgress is the state of one partition's recovery (of an
// active, or of a standby's catch-up).
type RecoveryProgress struct {
	Partition int `json:"partition"`
	// Standby is set for a standby's catch-up.
	Standby bool `json:"standby,omitempty"`
	// Phase says what the recovery does or waits for (the Phase*
	// constants; a failure adds its error).
	Phase string `json:"phase"`
	// From is the first changelog sequence replayed; HighWater the last
	// (the log's end when recovery started).
	From      uint64 `json:"from"`
	HighWater uint64 `json:"high_water"`
	// Applied is the last sequence applied so far; Records counts the
	// entries applied.
	Applied uint64 `json:"applied"`
	Records int    `json:"records"`
	// RecordsRemaining estimates the sequences left to replay
	// (Remaining); RatePerSecond is the entries applied per second since
	// the start; ETASeconds the time left at that rate (absent while the
	// rate is unknown). The manager computes them when it reports.
	RecordsRemaining uint64  `json:"remaining"`
	RatePerSecond    float64 `json:"rate_per_s"`
	ETASeconds       float64 `json:"eta_s,omitempty"`
	// Rebuilt is set, with Reason, when the store was discarded and rebuilt.
	Rebuilt bool      `json:"rebuilt"`
	Reason  string    `json:"reason,omitempty"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"` // zero while running
	// LastProgress is when a batch was last applied or the phase changed.
	LastProgress time.Time `json:"last_progress"`
}

// Remaining estimates the sequences left to replay.
func (p RecoveryProgress) Remaining() uint64 {
	if p.Applied >= p.HighWater {
		return 0
	}
	if p.Applied < p.From {
		return p.HighWater - p.From + 1
	}
	return p.HighWater - p.Applied
}

// Phases of a recovery, in RecoveryProgress.Phase: what it does or waits
// for.
const (
	PhaseWaitingRelease = "waiting for the previous owner to release it"
	PhaseOpening        = "reading the changelog state and opening the store"
	PhaseReplaying      = "replaying the changelog"
	PhaseTakingOver     = "taking the changelog over"
	PhaseFollowing      = "following the changelog"
	PhaseDone           = "done"
	PhaseFailed         = "failed; retrying"
)
