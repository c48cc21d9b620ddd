package status

import (
	"time"
)

// Status is a snapshot of one node's table manager (manager.TableManager.Status),
// served as GET /v1/status.
type Status struct {
	Node  string `json:"node"`
	Ready bool   `json:"ready"`
	// NotReady says why Ready is false: partitions recovering, fenced or
	// failing their commits, global tables catching up.
	NotReady   []string          `json:"not_ready,omitempty"`
	Partitions []PartitionStatus `json:"partitions"`
	// EventsProcessed counts events agents handled without error.
	EventsProcessed uint64 `json:"events_processed"`
	// ChangelogRecords counts records this node wrote to the changelog.
	ChangelogRecords uint64 `json:"changelog_records"`
	Commits          uint64 `json:"commits"`
	// MeanCommit is the mean duration of a commit.
	MeanCommit time.Duration `json:"mean_commit_ns"`
	// CommitLatency is the distribution of commit durations.
	CommitLatency Histogram `json:"commit_latency"`
	Rebalances    uint64    `json:"rebalances"`
	// Generation is the assignment generation this node applied (1 alone).
	Generation uint64 `json:"generation"`
	// DeadLetters counts refused events by agent.
	DeadLetters map[string]uint64 `json:"dead_letters"`
	// UnknownRecords counts replayed records of tables this node does not
	// declare (skipped).
	UnknownRecords uint64 `json:"unknown_records,omitempty"`
	// SourceGaps counts source events that were removed before a
	// partition processed them (their effects are lost); MarkerRegressions
	// counts replayed commit markers whose source position went back
	// below an earlier one (a writer that was not fenced). Both must stay
	// zero; each is also logged as an error.
	SourceGaps uint64 `json:"source_gaps,omitempty"`
	// DeadLetterReasons counts refused events by kind of reason
	// (manager.ReasonKey, ReasonAgent, ReasonLimit).
	DeadLetterReasons map[string]uint64 `json:"dead_letter_reasons"`
	// CommitsFenced counts commits refused because another writer owned
	// the partition's changelog; CommitsFailed other failed commits
	// (retried); TakenBack the partitions taken back after a fence.
	CommitsFenced uint64 `json:"commits_fenced"`
	CommitsFailed uint64 `json:"commits_failed"`
	TakenBack     uint64 `json:"partitions_taken_back"`
	// LeaderMoves counts the partition logs whose leader this node moved
	// off itself, their active owner, so that its death needs no election
	// of their leader.
	LeaderMoves uint64 `json:"changelog_leader_moves,omitempty"`
	// RecoveryFailures and StandbyFailures count failed attempts of the
	// partitions' recoveries and standby replays (each is retried).
	RecoveryFailures uint64 `json:"recovery_failures"`
	StandbyFailures  uint64 `json:"standby_failures"`
	// ExaminedSeq is the last source sequence this node's reader examined.
	ExaminedSeq       uint64 `json:"examined_seq"`
	MarkerRegressions uint64 `json:"marker_regressions,omitempty"`
	// SourceResets counts partition source positions moved because the
	// source stream was created again or lost its tail (each logged as an
	// error).
	SourceResets uint64 `json:"source_resets,omitempty"`
	// ChangelogBehind counts partitions found with a changelog behind
	// their store (deleted, or restored from an older backup), once per
	// episode; TableManager.Readiness names those stopped for it.
	ChangelogBehind uint64 `json:"changelog_behind,omitempty"`
	// Global is this node's replica of the global tables (nil without
	// any).
	Global *GlobalStatus `json:"global,omitempty"`
}

// Histogram is a snapshot of a latency histogram.
type Histogram struct {
	// Bounds are the buckets' upper bounds in seconds, ascending; Counts
	// the observations per bucket (not cumulative), with one more for
	// those above the last bound.
	Bounds []float64 `json:"bounds_s"`
	Counts []uint64  `json:"counts"`
	// Count is the number of observations; Sum their total duration.
	Count uint64        `json:"count"`
	Sum   time.Duration `json:"sum_ns"`
}

// Cumulative returns, per upper bound, the observations at or below it (the
// form Prometheus histograms take).
func (h Histogram) Cumulative() map[float64]uint64 {
	out := make(map[float64]uint64, len(h.Bounds))
	var n uint64
	for i, b := range h.Bounds {
		n += h.Counts[i]
		out[b] = n
	}
	return out
}

// GlobalStatus is the state of this node's replica of the global tables.
type GlobalStatus struct {
	// Ready is set once the replica has caught up with the global log
	// after start; reads fail with manager.ErrNotReady before.
	Ready bool `json:"ready"`
	// AppliedOffset is the last global log sequence in the local store;
	// HighWater the log's end as last known.
	AppliedOffset uint64 `json:"applied_offset"`
	HighWater     uint64 `json:"high_water"`
}
