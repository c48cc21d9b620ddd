package manager

import "github.com/edgetables/edgetables/manager/status"

// Listener observes the life of a TableManager: its start and stop, each
// rebalance, and each partition's commit. These are the points at which
// Faust calls its TableManager's on_start, on_rebalance_start,
// on_partitions_revoked, on_rebalance, on_actives_ready,
// on_standbys_ready, on_commit_tp and on_stop; like Kafka Streams' state
// and rebalance listeners, a Listener only observes them. Nil fields are
// not called; the zero value observes nothing.
//
// Every call is made on the goroutine that called Run: the processing
// goroutine, which owns the partitions, applies the rebalances and reaps
// the commits. Calls therefore never overlap and come in the order the
// events happen, and what each event says is true when it is called. A
// call must return quickly: while it runs, the node neither reads the
// source, nor starts commits, nor applies a rebalance, nor answers a
// recovery that ended. It may read tables and Status; it must not call
// Run. A call that panics is logged and the node goes on.
//
// The order is OnStarted, then for each rebalance (each new assignment,
// including the one a node alone gives itself at start):
//
//	OnRebalanceStarted → OnPartitionsRevoked → OnPartitionsAssigned
//	→ OnActivesReady → OnStandbysReady
//
// where OnPartitionsRevoked and OnStandbysReady are called even when no
// partition is revoked or standing by. A rebalance that a newer one
// replaces before its actives are ready ends without OnActivesReady: the
// next OnRebalanceStarted follows instead. OnCommitted comes between any
// two of these, once per partition commit; OnStopped comes last.
type Listener struct {
	// OnStarted is called when Run has recovered the global tables and
	// starts processing, before the first rebalance: no partition is
	// assigned yet.
	OnStarted func()
	// OnRebalanceStarted is called when the node starts applying the
	// assignment of generation: from now until OnActivesReady, Ready
	// reports false. Nothing has been revoked yet.
	OnRebalanceStarted func(generation uint64)
	// OnPartitionsRevoked is called when the partitions that the new
	// assignment no longer makes active here have been released: their
	// uncommitted writes committed (a failed commit is logged and its
	// events are processed again by the new owner), their processing
	// stopped, and their stores closed or kept as standbys.
	OnPartitionsRevoked func(PartitionsRevoked)
	// OnPartitionsAssigned is called when the new assignment is applied:
	// the newly assigned actives recover in the background, and the
	// standbys follow their changelogs. The assignment's generation is
	// the one Status reports.
	OnPartitionsAssigned func(PartitionsAssigned)
	// OnActivesReady is called when every active partition of the
	// generation is recovered and processed; Ready then reports true
	// (once the global tables are recovered, which Run waits for).
	OnActivesReady func(PartitionsReady)
	// OnStandbysReady is called when, in addition, every standby of the
	// generation has caught up with its changelog and is ready for
	// failover. It never comes before OnActivesReady of its generation.
	OnStandbysReady func(PartitionsReady)
	// OnCommitted is called when one partition's commit has ended: its
	// changelog holds the commit's records and marker, and its store
	// holds the data with both offsets, written in one transaction. The
	// source messages are acknowledged after it, with the rest of the
	// commit round. Commits of one partition come in order, with
	// increasing offsets.
	OnCommitted func(Committed)
	// OnStopped is called last, when Run returns: the final commit is
	// done, the node has left the group and every partition is released
	// and its store closed. err is what Run returns (nil after a clean
	// stop). It is not called when Run fails before OnStarted.
	OnStopped func(err error)
}

// PartitionsRevoked reports the partitions a rebalance took from this
// node's actives.
type PartitionsRevoked struct {
	Generation uint64
	// Partitions are no longer processed or recovered here as actives,
	// in order; possibly none.
	Partitions []int
	// Demoted is the subset of Partitions kept here as standbys.
	Demoted []int
}

// PartitionsAssigned reports the assignment a rebalance applied to this
// node.
type PartitionsAssigned struct {
	Generation uint64
	// Actives are every partition this node processes in the generation,
	// and NewlyAssigned those of them that start recovering now (a
	// standby here is promoted and replays only its lag).
	Actives       []int
	NewlyAssigned []int
	// Standbys are the partitions this node keeps as standbys.
	Standbys []int
}

// PartitionsReady reports the partitions that are ready: for
// OnActivesReady, the partitions processed here (an assigned partition
// whose changelog was found taken by a newer owner waits for the
// assignment that says so, unprocessed, and is not listed); for
// OnStandbysReady, the standbys that follow their changelogs.
type PartitionsReady struct {
	Generation uint64
	Partitions []int
}

// Committed reports one partition's commit (Faust's on_commit_tp).
type Committed struct {
	Partition int
	// Generation is the assignment the commit marker names.
	Generation uint64
	// SourceSeq is the source position committed: every source event up
	// to it has its effects in the store. ChangelogOffset is the last
	// changelog sequence written to the store with it (the commit's
	// marker).
	SourceSeq       uint64
	ChangelogOffset uint64
	// Records is the number of changelog records the commit wrote (0 for
	// a commit of the marker alone).
	Records int
}

// onStart tells the listener that Run starts processing (Faust's
// on_start).
func (m *TableManager) onStart() {
	if f := m.cfg.Listener.OnStarted; f != nil {
		m.notify("started", f)
	}
}

// onStop tells the listener that Run returns err, everything released
// (Faust's on_stop).
func (m *TableManager) onStop(err error) {
	if f := m.cfg.Listener.OnStopped; f != nil {
		m.notify("stopped", func() { f(err) })
	}
}

// notify calls f on the processing goroutine, logging a panic.
func (m *TableManager) notify(event string, f func()) {
	defer func() {
		if v := recover(); v != nil {
			m.log.Error("listener panicked", "event", event, "panic", v)
		}
	}()
	f()
}

// partitionsIn returns the assigned partitions in state st, in order.
func (m *TableManager) partitionsIn(st status.PartitionState) []int {
	var out []int
	for _, p := range m.assigned() {
		if p.State() == st {
			out = append(out, p.id)
		}
	}
	return out
}
