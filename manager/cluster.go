package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// leaveTimeout bounds leaving the group at stop.
const leaveTimeout = 2 * time.Second

// heartbeatRetry is the pause after a failed heartbeat (at most a quarter
// of the session timeout, the pause after one that went through).
const heartbeatRetry = 100 * time.Millisecond

// watchGroupPause is the first pause between attempts to watch the group;
// it doubles up to watchGroupMaxPause.
const (
	watchGroupPause    = 250 * time.Millisecond
	watchGroupMaxPause = 5 * time.Second
)

// watchGroup starts watching the group, retrying until it works or ctx
// ends (ok false). A first attempt can fail for a while in a cluster that
// is forming or electing (a meta leader elected a moment ago answers that
// the group's bucket does not exist): once, the node stayed out of its
// group for good. Failures are logged at the first attempt and every
// fifth.
func (m *TableManager) watchGroup(ctx context.Context, log *slog.Logger) (<-chan port.GroupView, bool) {
	pause := watchGroupPause
	for attempt := 1; ; attempt++ {
		views, err := m.cfg.Coordinator.Watch(ctx)
		if err == nil {
			if attempt > 1 {
				log.Info("watching the group", "attempts", attempt)
			}
			return views, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		if attempt == 1 || attempt%5 == 0 {
			log.Warn("cannot watch the group; the node takes no partitions until it can; retrying", "attempt", attempt, "err", err)
		}
		if !sleep(ctx, pause) {
			return nil, false
		}
		pause = min(2*pause, watchGroupMaxPause)
	}
}

// runGroup is the node's side of the consumer group until ctx ends: it
// renews the member lease with the node's state, campaigns for the leader
// lease, computes and publishes assignments while it leads, trims the
// source, and hands new assignments to the processor.
//
// Heartbeats run on their own goroutine: a slow request of the others (a
// campaign read that waits for a replica on a paused node, say) must never
// delay the lease renewal, or the member would drop out of the group while
// alive. Every group request is bounded by half the session timeout.
func (m *TableManager) runGroup(ctx context.Context) {
	c := m.cfg.Coordinator
	log := m.log.With("component", "group")
	views, ok := m.watchGroup(ctx, log)
	if !ok {
		return
	}
	step := m.cfg.SessionTimeout / 4
	bounded := func(f func(ctx context.Context) error) error {
		rctx, cancel := context.WithTimeout(ctx, 2*step)
		defer cancel()
		return f(rctx)
	}
	// joined is closed once two heartbeats in a row went through: no other
	// live instance holds this node's name (the second would have found
	// its write). Until then the node neither campaigns nor applies
	// assignments, so a duplicate never touches a partition.
	joined := make(chan struct{})
	var joinOnce sync.Once
	beatsOK, beatsFailed := 0, 0
	var duplicate atomic.Bool
	// heartbeat reports whether the heartbeat went through.
	heartbeat := func() bool {
		// A request sent while the group's stream elects a leader is
		// never answered: waiting out 2 steps for it kept a member from
		// renewing its lease as soon as the new leader answered, and the
		// leader expired the lease. After a failure the bound starts at
		// twice heartbeatRetry and doubles back up to 2 steps.
		timeout := 2 * step
		if beatsFailed > 0 {
			timeout = min(timeout, 2*heartbeatRetry<<min(beatsFailed-1, 8))
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		err := c.Heartbeat(hctx, m.memberState())
		cancel()
		switch {
		case errors.Is(err, port.ErrDuplicateNode):
			duplicate.Store(true)
			log.Error("this node's name is held by another live instance; stopping", "err", err)
			m.send(ctx, procEvent{err: fmt.Errorf("join the group: %w", err)})
		case err != nil && ctx.Err() == nil:
			beatsOK = 0
			if beatsFailed++; beatsFailed == 1 || beatsFailed%20 == 0 {
				log.Warn("heartbeat failed; the lease expires unless the next one succeeds", "failures", beatsFailed, "err", err)
			}
		case err == nil:
			if beatsFailed > 0 {
				log.Info("heartbeat works again", "failures", beatsFailed)
				beatsFailed = 0
			}
			// Two in a row, once: a failure later starts the count again,
			// but the node has joined for good.
			if beatsOK++; beatsOK == 2 {
				joinOnce.Do(func() { close(joined) })
			}
		}
		return err == nil
	}
	heartbeat()
	beats := make(chan struct{})
	go func() {
		defer close(beats)
		// A failed heartbeat is tried again after heartbeatRetry, not a
		// step: while the group's stream elects a leader every write
		// fails at once, and the lease must be renewed as soon as the
		// new leader answers, before it expires the lease.
		t := time.NewTimer(step)
		defer t.Stop()
		for !duplicate.Load() {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-m.stateSignal:
			}
			next := step
			if !heartbeat() {
				next = min(step, heartbeatRetry)
			}
			t.Reset(next)
		}
	}()
	select {
	case <-joined:
	case <-ctx.Done():
	}

	leading := false
	campaign := func() {
		var ok bool
		err := bounded(func(ctx context.Context) (err error) { ok, err = c.Campaign(ctx); return err })
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("leader campaign failed", "err", err)
			}
			return
		}
		if ok != leading {
			leading = ok
			m.leading.Store(ok)
			log.Info("leadership changed", "leader", ok)
			if ok {
				select {
				case m.leadershipGained <- struct{}{}:
				default:
				}
			}
		}
	}
	campaign()
	tick := time.NewTicker(step)
	defer tick.Stop()
	var last *port.GroupView
	var delivered uint64
	for {
		select {
		case <-ctx.Done():
			<-beats
			if duplicate.Load() {
				return // the lease is the other instance's: leave it alone
			}
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaveTimeout)
			// A last heartbeat shows everything released, then leave.
			_ = c.Heartbeat(lctx, m.memberState())
			if leading {
				_ = c.Resign(lctx)
			}
			if err := c.Leave(lctx); err != nil {
				log.Warn("leave group; the lease will expire instead", "err", err)
			}
			cancel()
			return
		case v, ok := <-views:
			if !ok {
				<-ctx.Done()
				continue
			}
			m.setView(v)
			if v.Leader == "" && !leading {
				// The lease was released or removed (a peer's crash
				// seen at once, see jetstream.WatchCrashes): campaign
				// now, not at the next tick.
				campaign()
			}
			switch {
			case !v.Partial:
				last = &v
				if leading {
					m.lead(ctx, v)
				}
			case leading:
				// A partial view comes while the watch starts over, for
				// a second or more when JetStream's meta leader died: a
				// member found gone meanwhile is taken out at once.
				if members, ok := partialMembers(v, last); ok {
					m.leadMembers(ctx, v, members)
				}
			}
			if a := v.Assignment; a.Generation > delivered && a.Partitions == m.cfg.Partitions {
				delivered = a.Generation
				if err := a.WellFormed(); err != nil {
					// Written by something else than a leader (the bucket
					// is open to whoever may write it): never applied.
					m.log.Error("malformed assignment ignored", "generation", a.Generation, "err", err)
				} else {
					m.setPendingAssignment(a)
				}
			}
		case <-tick.C:
			campaign()
			if leading && last != nil {
				m.lead(ctx, *last)
			}
		}
	}
}

// lead publishes a new assignment when the live members differ from those
// of the current one, and applies it. A stale revision means another
// leader published meanwhile: the watch brings its assignment.
func (m *TableManager) lead(ctx context.Context, v port.GroupView) {
	members := make([]string, 0, len(v.Members))
	for name := range v.Members {
		members = append(members, name)
	}
	m.leadMembers(ctx, v, members)
}

// partialMembers returns the members a leader assigns from the partial
// view v, given last, the last complete view: v's members, and the
// members of v's assignment that last did not know of (a partial view
// knows nothing of them: they stay). ok is false unless some member of
// last is gone from v: a partial view only ever takes members out.
func partialMembers(v port.GroupView, last *port.GroupView) (members []string, ok bool) {
	if last == nil {
		return nil, false
	}
	for name := range last.Members {
		if _, live := v.Members[name]; !live {
			ok = true
		}
	}
	if !ok {
		return nil, false
	}
	set := map[string]bool{}
	for name := range v.Members {
		set[name] = true
	}
	a := v.Assignment
	for p := range a.Actives {
		names := []string{a.Actives[p]}
		if p < len(a.Standbys) {
			names = append(names, a.Standbys[p]...)
		}
		for _, name := range names {
			if _, known := last.Members[name]; name != "" && !known {
				set[name] = true
			}
		}
	}
	for name := range set {
		members = append(members, name)
	}
	return members, true
}

// leadMembers publishes the assignment of members (any order), the live
// members of view v, when it differs from v's, and applies it.
func (m *TableManager) leadMembers(ctx context.Context, v port.GroupView, members []string) {
	if len(members) == 0 {
		return
	}
	sort.Strings(members)
	next := assign.Assign(v.Assignment, members, m.cfg.Partitions, m.cfg.Standbys)
	if v.AssignmentRev != 0 && next.Equal(v.Assignment) {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, m.cfg.SessionTimeout/2)
	defer cancel()
	if _, err := m.cfg.Coordinator.PublishAssignment(pctx, next, v.AssignmentRev); err != nil {
		if !errors.Is(err, port.ErrStaleAssignment) && ctx.Err() == nil {
			m.log.Warn("publish assignment", "generation", next.Generation, "err", err)
		}
		return
	}
	m.log.Info("assignment published", "generation", next.Generation, "members", members)
	// Apply it here now rather than when the watch brings it back: after a
	// member died, the group's stream may be electing a leader, and the
	// watch then delivers seconds late (measured: 4 s). The watch's copy
	// of the same generation is ignored.
	if next.Partitions == m.cfg.Partitions {
		m.setPendingAssignment(next)
	}
}

// memberState is what this node tells the group about itself.
func (m *TableManager) memberState() status.MemberState {
	st := status.MemberState{Node: m.cfg.Node, Generation: m.gen.Load(), HTTP: m.cfg.HTTPAddr, Positions: map[int]uint64{},
		Instance: m.instance, Started: m.started}
	for _, p := range m.assigned() {
		switch p.State() {
		case status.StateActive:
			st.Actives = append(st.Actives, p.id)
			st.Positions[p.id] = p.sourceSeq.Load()
		case status.StateStandby:
			st.Standbys = append(st.Standbys, p.id)
		}
	}
	return st
}

// signalState asks the group loop to publish this node's state now.
func (m *TableManager) signalState() {
	select {
	case m.stateSignal <- struct{}{}:
	default:
	}
}

// setPendingAssignment hands a to the processor, replacing an older one it
// has not taken yet.
func (m *TableManager) setPendingAssignment(a assign.Assignment) {
	m.assignMu.Lock()
	if m.pendingAssign == nil || a.Generation > m.pendingAssign.Generation {
		m.pendingAssign = &a
		close(m.assignArrived)
		m.assignArrived = make(chan struct{})
	}
	m.assignMu.Unlock()
	select {
	case m.assignSignal <- struct{}{}:
	default:
	}
}

// yielding returns ctx, also canceled once an assignment is pending (at
// once if one is). The processing goroutine, which applies assignments,
// waits on the source with it: a source stream whose leader died with a
// node answers nothing for the 4–9 s of its election, and a failover's new
// assignment must not wait for that. What was canceled is retried after
// the assignment is applied. Never for commits: they must end on their own.
func (m *TableManager) yielding(ctx context.Context) (context.Context, context.CancelFunc) {
	m.assignMu.Lock()
	arrived, pending := m.assignArrived, m.pendingAssign != nil
	m.assignMu.Unlock()
	yctx, cancel := context.WithCancel(ctx)
	if pending {
		cancel()
		return yctx, cancel
	}
	go func() {
		select {
		case <-arrived:
			cancel()
		case <-yctx.Done():
		}
	}()
	return yctx, cancel
}

// yielded reports whether err ended a call made with a yielding context
// that gave way to an assignment (and not to ctx, the processing's own).
func yielded(ctx context.Context, err error) bool {
	return ctx.Err() == nil && errors.Is(err, context.Canceled)
}

func (m *TableManager) takePendingAssignment() *assign.Assignment {
	m.assignMu.Lock()
	defer m.assignMu.Unlock()
	a := m.pendingAssign
	m.pendingAssign = nil
	return a
}

// setView records the group's latest view and wakes its waiters.
func (m *TableManager) setView(v port.GroupView) {
	m.viewMu.Lock()
	defer m.viewMu.Unlock()
	m.view = &v
	close(m.viewChanged)
	m.viewChanged = make(chan struct{})
}

// currentView returns the latest view (nil before the first) and a channel
// closed when a newer one arrives.
func (m *TableManager) currentView() (*port.GroupView, <-chan struct{}) {
	m.viewMu.Lock()
	defer m.viewMu.Unlock()
	return m.view, m.viewChanged
}

// Cluster returns the group as this node sees it (nil alone).
func (m *TableManager) Cluster() *status.ClusterStatus {
	v, _ := m.currentView()
	if v == nil {
		return nil
	}
	cs := &status.ClusterStatus{Leader: v.Leader, Generation: v.Assignment.Generation, Applied: m.gen.Load(), Assignment: v.Assignment}
	for _, st := range v.Members {
		cs.Members = append(cs.Members, st)
	}
	sort.Slice(cs.Members, func(i, j int) bool { return cs.Members[i].Node < cs.Members[j].Node })
	return cs
}

// Owner returns the member that owns partition p in the current
// assignment, and whether it has taken it over already (it reports p as
// active). Alone, the owner is this node.
func (m *TableManager) Owner(p int) (node string, serving bool) {
	if m.cfg.Coordinator == nil {
		part := m.partition(p)
		return m.cfg.Node, part != nil && part.State() == status.StateActive
	}
	v, _ := m.currentView()
	if v == nil || p >= len(v.Assignment.Actives) {
		return "", false
	}
	node = v.Assignment.Actives[p]
	st, ok := v.Members[node]
	return node, ok && slices.Contains(st.Actives, p)
}

// Members returns the live members' names (this node alone when not in a
// cluster).
func (m *TableManager) Members() []string {
	v, _ := m.currentView()
	if m.cfg.Coordinator == nil || v == nil {
		return []string{m.cfg.Node}
	}
	out := make([]string, 0, len(v.Members))
	for name := range v.Members {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
