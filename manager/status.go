package manager

import (
	"context"
	"sort"
	"time"
)

// Status is a snapshot of the manager for monitoring.
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
	// (ReasonKey, ReasonAgent, ReasonLimit).
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
	// episode; Readiness names those stopped for it.
	ChangelogBehind uint64 `json:"changelog_behind,omitempty"`
	// Global is this node's replica of the global tables (nil without
	// any).
	Global *GlobalStatus `json:"global,omitempty"`
}

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
	// its store (see Config.ChangelogBehind).
	Behind string `json:"changelog_behind,omitempty"`
	// Recovery is the partition's last recovery.
	Recovery *RecoveryProgress `json:"recovery,omitempty"`
	// Failing is the current streak of failures of the partition's
	// recovery or standby task (nil: none).
	Failing *TaskFailure `json:"failing,omitempty"`
}

// Status returns a snapshot of the manager's state.
func (m *TableManager) Status() Status {
	st := Status{
		Node:              m.cfg.Node,
		EventsProcessed:   m.counters.processed.Load(),
		ChangelogRecords:  m.counters.records.Load(),
		Commits:           m.counters.commits.Load(),
		Rebalances:        m.counters.rebalances.Load(),
		Generation:        m.gen.Load(),
		CommitLatency:     m.commitLatency.snapshot(),
		UnknownRecords:    m.counters.unknownRecords.Load(),
		SourceGaps:        m.counters.sourceGaps.Load(),
		DeadLetterReasons: make(map[string]uint64, len(DeadLetterReasons)),
		CommitsFenced:     m.counters.commitsFenced.Load(),
		CommitsFailed:     m.counters.commitsFailed.Load(),
		TakenBack:         m.counters.takenBack.Load(),
		LeaderMoves:       m.counters.leaderMoves.Load(),
		RecoveryFailures:  m.counters.recoverFailures.Load(),
		StandbyFailures:   m.counters.standbyFailures.Load(),
		ExaminedSeq:       m.seen.Load(),
		MarkerRegressions: m.counters.markerRegressions.Load(),
		SourceResets:      m.counters.sourceResets.Load(),
		ChangelogBehind:   m.counters.changelogBehind.Load(),
		DeadLetters:       make(map[string]uint64, len(m.counters.deadLetters)),
	}
	st.Ready, st.NotReady = m.Readiness()
	if m.global != nil {
		st.Global = m.global.status()
	}
	if st.Commits > 0 {
		st.MeanCommit = time.Duration(m.counters.commitNanos.Load() / st.Commits)
	}
	for kind, c := range m.counters.deadLetterReasons {
		st.DeadLetterReasons[kind] = c.Load()
	}
	for name, c := range m.counters.deadLetters {
		st.DeadLetters[name] = c.Load()
	}
	rec := map[int]RecoveryProgress{}
	for _, rp := range m.recovery.Progress() {
		rec[rp.Partition] = rp
	}
	for _, p := range m.assigned() {
		ps := PartitionStatus{
			Partition:     p.id,
			State:         p.State(),
			AppliedOffset: p.applied.Load(),
			HighWater:     p.highWater.Load(),
			SourceSeq:     p.sourceSeq.Load(),
			Buffered:      p.uncommittedKeys(),
		}
		if rp, ok := rec[p.id]; ok {
			ps.Recovery = &rp
		}
		ps.Failing = p.taskFailing.Load()
		if b := p.behind.Load(); b != nil {
			ps.Behind = *b
		}
		st.Partitions = append(st.Partitions, ps)
	}
	sort.Slice(st.Partitions, func(i, j int) bool { return st.Partitions[i].Partition < st.Partitions[j].Partition })
	return st
}

// SourcePending returns how many source sequences lie beyond the last one
// this node's reader examined: events stored and not yet read. One request.
func (m *TableManager) SourcePending(ctx context.Context) (uint64, error) {
	st, err := m.cfg.Source.State(ctx)
	if err != nil {
		return 0, err
	}
	last := st.Last
	if seen := m.seen.Load(); last > seen {
		return last - seen, nil
	}
	return 0, nil
}
