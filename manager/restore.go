package manager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edgetables/edgetables/manager/status"
)

// RecoveryHooks observe the recovery of this node's partitions, like Kafka
// Streams' StateRestoreListener and StandbyUpdateListener. Nil fields are
// not called; the zero value observes nothing.
//
// The hooks are called from the partition's own recovery goroutine (one per
// partition, so calls for different partitions may run concurrently, while
// calls for one partition are sequential and in order). They must return
// quickly and must not block: recovery waits for them, and a hook that
// blocks stalls its partition (the stall warning then names it). A hook
// that panics is logged and recovery goes on.
//
// An active's recovery is OnStart, OnBatch for every batch applied to the
// store, then exactly one of OnEnd (the partition is recovered and is
// activated next) or OnSuspend (it stopped before the end). A failed
// recovery is retried after a second: a new OnStart follows its OnSuspend.
//
// A standby's catch-up is the same: OnStart, OnBatch, and OnEnd once it has
// reached the log's end as of its start. It then follows the changelog:
// OnBatch goes on for every batch it applies, and OnSuspend comes when it
// stops following (promoted, demoted, released, stopped or failed).
type RecoveryHooks struct {
	OnStart   func(RecoveryStart)
	OnBatch   func(RecoveryBatch)
	OnEnd     func(RecoveryEnd)
	OnSuspend func(RecoverySuspend)
}

// RecoveryKind tells an active's recovery from a standby's.
type RecoveryKind string

// The kinds of recovery.
const (
	// RecoveryActive: the partition is recovered to be processed here.
	RecoveryActive RecoveryKind = "active"
	// RecoveryStandby: the partition's store follows its changelog, ready
	// to be promoted.
	RecoveryStandby RecoveryKind = "standby"
)

// RecoveryStart begins a recovery: the store replays the changelog from
// sequence From to HighWater (the log's end when recovery started; From >
// HighWater means there is nothing to replay).
type RecoveryStart struct {
	Partition       int
	Kind            RecoveryKind
	From, HighWater uint64
	// Rebuilt is set when the store was discarded and is rebuilt by a full
	// replay; Reason says why.
	Rebuilt bool
	Reason  string
}

// RecoveryBatch reports one batch of changelog entries applied to the
// store in one transaction.
type RecoveryBatch struct {
	Partition int
	Kind      RecoveryKind
	// Records is the number of entries in the batch (records and commit
	// markers); Total the number applied since OnStart.
	Records int
	Total   int
	// Applied is the last changelog sequence now in the store.
	Applied uint64
	// HighWater is the log's end the recovery replays to (for a standby
	// that follows the log, the last sequence it has seen).
	HighWater uint64
	// Following is set for the batches of a standby after its OnEnd.
	Following bool
}

// RecoveryEnd reports a finished recovery (for a standby: its catch-up).
type RecoveryEnd struct {
	Partition int
	Kind      RecoveryKind
	// Records is the number of entries applied; Applied the last
	// changelog sequence in the store (for an active, the sequence of the
	// commit marker that took the log over).
	Records int
	Applied uint64
	// Took is the time from OnStart.
	Took time.Duration
}

// SuspendReason says why a recovery stopped before its end.
type SuspendReason string

// The reasons a recovery is suspended.
const (
	// SuspendRevoked: the partition was revoked by a rebalance, or
	// released because the manager stops.
	SuspendRevoked SuspendReason = "revoked"
	// SuspendPromoted: a standby (or a recovery) was stopped to recover
	// the partition as this node's active.
	SuspendPromoted SuspendReason = "promoted"
	// SuspendDemoted: a recovering active became a standby here.
	SuspendDemoted SuspendReason = "demoted"
	// SuspendStale: the changelog has a newer owner than this node's
	// assignment; the partition waits for the assignment that says so.
	SuspendStale SuspendReason = "stale"
	// SuspendFailed: the recovery failed with Err; it is retried after a
	// second unless the error is fatal (a store that cannot be opened).
	SuspendFailed SuspendReason = "failed"
	// SuspendStopped: the manager is stopping.
	SuspendStopped SuspendReason = "stopped"
)

// RecoverySuspend reports a recovery that stopped before its end, or a
// standby that stopped following.
type RecoverySuspend struct {
	Partition int
	Kind      RecoveryKind
	Reason    SuspendReason
	// Err is the failure (SuspendFailed, SuspendStale), else nil.
	Err error
	// Records and Applied are the progress made (as in RecoveryEnd).
	Records int
	Applied uint64
	Took    time.Duration
}

// stallAfter is how long a recovery may make no progress before it is
// warned about; logEvery how often progress is logged.
const (
	stallAfter = 30 * time.Second
	logEvery   = 5 * time.Second
)

// stopTaskFor stops p's task, telling its recovery why (the processing
// goroutine calls it; the task reads the reason when its context ends).
func (p *partition) stopTaskFor(reason SuspendReason) {
	if p.task == nil {
		return
	}
	p.stopReason.Store(reason)
	p.stopTask()
	p.stopReason.Store(SuspendReason(""))
}

// restore tracks one recovery task of a partition: it keeps the
// partition's RecoveryProgress and calls the hooks. It lives in the task's
// goroutine.
type restore struct {
	r       *recovery
	p       *partition
	kind    RecoveryKind
	start   time.Time
	started bool
	ended   bool
	records int
	high    uint64
}

func (r *recovery) newRestore(p *partition, kind RecoveryKind) *restore {
	return &restore{r: r, p: p, kind: kind, start: time.Now()}
}

// begin resets the progress and calls OnStart.
func (t *restore) begin(from, high uint64, reason string) {
	t.started, t.high = true, high
	now := time.Now()
	t.r.update(t.p.id, func(rp *status.RecoveryProgress) {
		*rp = status.RecoveryProgress{Partition: t.p.id, Standby: t.kind == RecoveryStandby, Phase: status.PhaseReplaying,
			From: from, HighWater: high, Applied: t.p.applied.Load(), Rebuilt: reason != "", Reason: reason,
			Started: t.start, LastProgress: now}
	})
	if h := t.r.m.cfg.RecoveryHooks.OnStart; h != nil {
		t.call(func() {
			h(RecoveryStart{Partition: t.p.id, Kind: t.kind, From: from, HighWater: high, Rebuilt: reason != "", Reason: reason})
		})
	}
}

// batch records n entries applied and calls OnBatch.
func (t *restore) batch(n int) {
	t.records += n
	applied := t.p.applied.Load()
	if !t.ended {
		t.r.update(t.p.id, func(rp *status.RecoveryProgress) {
			rp.Applied, rp.Records, rp.LastProgress = applied, t.records, time.Now()
		})
	}
	if h := t.r.m.cfg.RecoveryHooks.OnBatch; h != nil {
		t.call(func() {
			h(RecoveryBatch{Partition: t.p.id, Kind: t.kind, Records: n, Total: t.records, Applied: applied,
				HighWater: max(t.high, t.p.highWater.Load()), Following: t.ended})
		})
	}
}

// end marks the recovery done and calls OnEnd.
func (t *restore) end() {
	t.ended = true
	applied := t.p.applied.Load()
	now := time.Now()
	phase := status.PhaseDone
	if t.kind == RecoveryStandby {
		phase = status.PhaseFollowing
	}
	t.r.update(t.p.id, func(rp *status.RecoveryProgress) {
		rp.Applied, rp.Records, rp.Ended, rp.Phase, rp.LastProgress = applied, t.records, now, phase, now
	})
	if h := t.r.m.cfg.RecoveryHooks.OnEnd; h != nil {
		t.call(func() {
			h(RecoveryEnd{Partition: t.p.id, Kind: t.kind, Records: t.records, Applied: applied, Took: now.Sub(t.start)})
		})
	}
}

// finish calls OnSuspend if the task stops before its end (a standby: at
// any stop after its start). err is the task's result; ctx its context.
func (t *restore) finish(ctx context.Context, err error) {
	if !t.started || (t.ended && t.kind == RecoveryActive) {
		return
	}
	reason := SuspendStopped
	switch {
	case ctx.Err() != nil:
		if r, _ := t.p.stopReason.Load().(SuspendReason); r != "" {
			reason = r
		}
		err = nil
	case errors.Is(err, errStale):
		reason = SuspendStale
	case err != nil:
		reason = SuspendFailed
		t.r.setPhase(t.p.id, fmt.Sprintf("%s: %v", status.PhaseFailed, err))
	}
	if h := t.r.m.cfg.RecoveryHooks.OnSuspend; h != nil {
		t.call(func() {
			h(RecoverySuspend{Partition: t.p.id, Kind: t.kind, Reason: reason, Err: err, Records: t.records,
				Applied: t.p.applied.Load(), Took: time.Since(t.start)})
		})
	}
}

// call runs a hook, logging a panic instead of ending the task.
func (t *restore) call(f func()) {
	defer func() {
		if v := recover(); v != nil {
			t.r.m.log.Error("recovery hook panicked", "partition", t.p.id, "panic", v)
		}
	}()
	f()
}

// setPhase records what partition id's recovery does or waits for. A
// partition whose last recovery ended starts a new progress record.
func (r *recovery) setPhase(id int, phase string) {
	now := time.Now()
	r.update(id, func(rp *status.RecoveryProgress) {
		if !rp.Ended.IsZero() || rp.Started.IsZero() {
			*rp = status.RecoveryProgress{Partition: id, Started: now}
		}
		rp.Phase, rp.LastProgress = phase, now
	})
}

// StandbyLags returns, for every standby partition of this node, how many
// changelog sequences its store is behind the log's end. It costs one
// changelog State request per standby partition, bounded by ctx; partitions
// whose state could not be read are left out and their errors joined. The
// ends read also update the partitions' HighWater in Status.
func (m *TableManager) StandbyLags(ctx context.Context) (map[int]uint64, error) {
	lags := map[int]uint64{}
	var errs []error
	for _, p := range m.assigned() {
		if p.State() != status.StateStandby {
			continue
		}
		st, err := m.cfg.Changelog.State(ctx, p.id)
		if err != nil {
			errs = append(errs, fmt.Errorf("partition %d: changelog state: %w", p.id, err))
			continue
		}
		for {
			hw := p.highWater.Load()
			if st.Last <= hw || p.highWater.CompareAndSwap(hw, st.Last) {
				break
			}
		}
		var lag uint64
		if a := p.applied.Load(); st.Last > a {
			lag = st.Last - a
		}
		lags[p.id] = lag
	}
	return lags, errors.Join(errs...)
}
