package manager

import (
	"context"
	"sort"
	"time"

	"github.com/edgetables/edgetables/manager/status"
)

// Status returns a snapshot of the manager's state.
func (m *TableManager) Status() status.Status {
	st := status.Status{
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
	rec := map[int]status.RecoveryProgress{}
	for _, rp := range m.recovery.snapshot() {
		rec[rp.Partition] = rp
	}
	for _, p := range m.assigned() {
		ps := status.PartitionStatus{
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
