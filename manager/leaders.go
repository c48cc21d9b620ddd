package manager

import (
	"context"
	"time"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// Leader placement: the log of a partition should not be led by the
// partition's active owner. When the owner dies, a log it led must first
// elect a new leader (seconds on a loaded machine) before the promoted
// standby can commit; led by the standby itself, it needs none.
const (
	// leaderCheckEvery is how often the active partitions' log leaders
	// are checked.
	leaderCheckEvery = 5 * time.Second
	// leaderMoveTimeout bounds one partition's check and move.
	leaderMoveTimeout = 2 * time.Second
	// leaderSettleCheck is how often the moves check, while the group
	// has not settled, whether it has.
	leaderSettleCheck = 500 * time.Millisecond
)

// runLeaderPlacement moves, every leaderCheckEvery until ctx ends, the
// leader of each partition log this node leads while it is the partition's
// active owner to a live standby of the partition (or another replica);
// and while this node leads the group, it makes its node lead the
// coordinator's log (see port.LogLeaderPlacer), also when it becomes the
// leader. Every move waits until the group settled (see settled): a
// failover in progress is not slowed by elections of its own making.
// Nothing when no port allows it.
func (m *TableManager) runLeaderPlacement(ctx context.Context) {
	mover, _ := m.cfg.Changelog.(port.LeaderMover)
	placer, _ := m.cfg.Coordinator.(port.LogLeaderPlacer)
	if mover == nil && placer == nil {
		return
	}
	t := time.NewTimer(leaderCheckEvery)
	defer t.Stop()
	failing := map[int]bool{} // partitions whose last move failed: logged once
	var own []*placement      // while this node leads the group
	if placer != nil {
		own = append(own, &placement{move: placer.LeadLogHere,
			failed: "cannot make the group's leader lead the group's log; retrying",
			done:   "moved the leader of the group's log to the group's leader"})
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.leadershipGained:
		}
		// A leader moved during a failover stops what the failover
		// needs: the group's log while the new leader publishes the
		// assignment, the changelogs while the new owners
		// take over and resume. The moves wait until the group settled,
		// checked every leaderSettleCheck until then, so that they are
		// made soon after, before another death can find them undone.
		v, _ := m.currentView()
		if !m.settled(v) {
			t.Reset(leaderSettleCheck)
			continue
		}
		t.Reset(leaderCheckEvery)
		for _, pl := range own {
			if m.leading.Load() {
				pl.try(ctx, m)
			}
		}
		if mover == nil {
			continue
		}
		for _, part := range m.assigned() {
			if ctx.Err() != nil {
				return
			}
			p := part.id
			if part.State() != status.StateActive || p >= len(v.Assignment.Actives) || v.Assignment.Actives[p] != m.cfg.Node {
				continue
			}
			to := ""
			if p < len(v.Assignment.Standbys) {
				for _, s := range v.Assignment.Standbys[p] {
					if _, live := v.Members[s]; live {
						to = s
						break
					}
				}
			}
			mctx, cancel := context.WithTimeout(ctx, leaderMoveTimeout)
			moved, err := mover.MoveLeader(mctx, p, m.cfg.Node, to)
			cancel()
			switch {
			case err != nil && ctx.Err() == nil:
				if !failing[p] {
					m.log.Warn("cannot move the leader of a partition's changelog off its active owner; retrying", "partition", p, "to", to, "err", err)
				}
				failing[p] = true
			case moved:
				failing[p] = false
				m.counters.leaderMoves.Add(1)
				m.log.Info("moved the leader of a partition's changelog off its active owner", "partition", p, "preferred", to)
			default:
				failing[p] = false
			}
		}
	}
}

// placement is one of the group leader's own leader moves (the group's
// log to its node).
type placement struct {
	move    func(ctx context.Context) (moved bool, err error)
	failed  string // logged at the first failure of a run of them
	done    string // logged when it moved a leader
	failing bool   // the last attempt failed
}

// try runs the placement once; a failure is logged once until one
// succeeds.
func (pl *placement) try(ctx context.Context, m *TableManager) {
	mctx, cancel := context.WithTimeout(ctx, leaderMoveTimeout)
	moved, err := pl.move(mctx)
	cancel()
	switch {
	case err != nil && ctx.Err() == nil:
		if !pl.failing {
			m.log.Warn(pl.failed, "err", err)
		}
		pl.failing = true
		return
	case moved:
		m.log.Info(pl.done)
	}
	pl.failing = false
}

// settled says whether the group of view v is at rest: a view read as a
// whole, whose assignment this node applied and gives every active
// partition to a live member.
func (m *TableManager) settled(v *port.GroupView) bool {
	if v == nil || v.Partial || v.Assignment.Generation == 0 || m.gen.Load() != v.Assignment.Generation {
		return false
	}
	for _, node := range v.Assignment.Actives {
		if _, live := v.Members[node]; !live {
			return false
		}
	}
	return true
}
