package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/status"
	"github.com/edgetables/edgetables/store"
)

// procEvent is a message from a partition task to the processor.
type procEvent struct {
	p        *partition
	ready    bool   // recovery finished: activate p
	stale    bool   // recovery found a newer owner: wait for its assignment
	newerGen uint64 // with stale: the newer owner's generation
	caughtUp bool   // standby caught up with its log
	err      error  // the task failed for good
}

// task is the goroutine of a partition that recovers or follows.
type task struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// stopTask stops p's task and waits for it.
func (p *partition) stopTask() {
	if p.task == nil {
		return
	}
	p.task.cancel()
	select {
	case <-p.task.done:
	case <-time.After(taskStopWarn):
		p.m.log.Warn("waiting for the partition's recovery or standby task to stop; rebalances wait too",
			"partition", p.id, "waited", taskStopWarn)
		<-p.task.done
	}
	p.task = nil
}

// taskStopWarn is how long stopping a partition task may take before a
// warning says what the processor waits for.
const taskStopWarn = 5 * time.Second

// retryDelay is the pause before a failed recovery or follower is first
// retried; it doubles with each failure in a row up to maxRetryDelay. An
// attempt that ran for resetRetryAfter before it failed starts a new
// streak.
const (
	retryDelay      = time.Second
	maxRetryDelay   = 30 * time.Second
	resetRetryAfter = time.Minute
)

// startTask runs f in p's goroutine, retrying transient failures with a
// pause that grows from retryDelay to maxRetryDelay; the streak shows in
// p's status, and is logged at its first failure and then at every
// doubling of its length. A store that cannot be opened for a reason other
// than corruption (another process holds it, permissions) is fatal: it is
// reported to the processor.
func (m *TableManager) startTask(ctx context.Context, p *partition, what string, f func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(ctx)
	t := &task{cancel: cancel, done: make(chan struct{})}
	p.task = t
	go func() {
		defer close(t.done)
		defer p.taskFailing.Store(nil)
		var streak *status.TaskFailure
		for {
			began := time.Now()
			err := f(ctx)
			if err == nil || ctx.Err() != nil {
				return
			}
			if isFatal(err) {
				m.send(ctx, procEvent{p: p, err: fmt.Errorf("%s partition %d: %w", what, p.id, err)})
				return
			}
			if streak == nil || time.Since(began) >= resetRetryAfter {
				streak = &status.TaskFailure{Task: what, Since: began}
			}
			next := *streak
			next.Attempts++
			next.Error = err.Error()
			next.RetryIn = min(retryDelay<<min(next.Attempts-1, 10), maxRetryDelay)
			streak = &next
			p.taskFailing.Store(streak)
			m.counters.taskFailures(what).Add(1)
			if next.Attempts&(next.Attempts-1) == 0 { // 1, 2, 4, 8, ...
				m.log.Warn(what+" failed; retrying", "partition", p.id, "err", err, "attempts", next.Attempts,
					"failing_for", time.Since(next.Since).Round(time.Millisecond), "retry_in", next.RetryIn)
			}
			if !sleep(ctx, next.RetryIn) {
				return
			}
		}
	}()
}

// isFatal tells errors a retry cannot fix.
func isFatal(err error) bool {
	return errors.Is(err, store.ErrLocked) || errors.Is(err, errStoreOpen)
}

// send delivers ev to the processor unless ctx ends first.
func (m *TableManager) send(ctx context.Context, ev procEvent) bool {
	select {
	case m.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// onPartitionsRevoked releases the revoked partitions (Faust's
// on_partitions_revoked): uncommitted writes are committed, processing
// stops, and each store is closed. It runs on the processing goroutine;
// applyAssignment tells the listener once the demoted partitions are
// standbys too.
func (m *TableManager) onPartitionsRevoked(ctx context.Context, revoked []int) error {
	if len(revoked) == 0 {
		return nil
	}
	if err := m.commit(ctx); err != nil {
		m.log.Warn("commit before revoke failed; uncommitted writes of revoked partitions are dropped, their events will be processed again by the new owner",
			"partitions", revoked, "err", err)
	}
	for _, id := range revoked {
		if p := m.partition(id); p != nil {
			m.release(p)
		}
	}
	m.log.Info("partitions revoked", "partitions", revoked)
	return nil
}

// release stops p's task, closes its store and forgets it. A commit of p
// still running (its revocation's commit timed out) is waited for first.
func (m *TableManager) release(p *partition) {
	p.stopTaskFor(SuspendRevoked)
	m.settle(p)
	p.reset()
	m.recovery.forget(p.id)
	m.mu.Lock()
	delete(m.parts, p.id)
	m.mu.Unlock()
	if p.store != nil {
		if err := p.store.Close(); err != nil {
			m.log.Warn("close store", "partition", p.id, "err", err)
		}
	}
}

// onRebalance applies the new assignment's actives (Faust's
// on_rebalance): newly assigned partitions start recovering in the
// background (a standby here is promoted: it replays only its lag). Each is
// activated by the processor when its recovery ends; onActivesReady
// follows when all are active. Revoked partitions must have been released
// by onPartitionsRevoked. It runs on the processing goroutine.
func (m *TableManager) onRebalance(ctx context.Context, assigned, revoked, newlyAssigned []int) error {
	m.frozen.Store(true)
	for _, id := range newlyAssigned {
		if id < 0 || id >= m.cfg.Partitions {
			return fmt.Errorf("rebalance: partition %d out of range [0,%d)", id, m.cfg.Partitions)
		}
		p := m.partition(id)
		if p == nil {
			p = m.newPartition(id)
		}
		m.startRecovery(ctx, p, false)
	}
	m.log.Info("rebalance", "generation", m.gen.Load(), "actives", assigned, "revoked", revoked, "new", newlyAssigned)
	return nil
}

// startRecovery starts p's recovery task: wait for the previous owner to
// release p, replay the tail, take the changelog over; the processor
// activates p afterwards. A standby's follower is stopped first.
func (m *TableManager) startRecovery(ctx context.Context, p *partition, retake bool) {
	gen := m.gen.Load()
	p.stopTaskFor(SuspendPromoted)
	p.stale.Store(false)
	// Its uncommitted writes are gone (released, fenced or demoted): what
	// it takes next is decided by its recovered position alone.
	p.covered, p.attached = 0, false
	p.setState(status.StateRecovering)
	m.startTask(ctx, p, "recover", func(ctx context.Context) error {
		if err := m.waitReleased(ctx, p.id); err != nil {
			return err
		}
		err := m.recovery.recoverActive(ctx, p, gen, retake)
		if se := (*staleError)(nil); errors.As(err, &se) {
			m.log.Warn("partition not taken over: its changelog has a newer owner; waiting for the assignment that says so",
				"partition", p.id, "generation", gen, "err", err)
			m.send(ctx, procEvent{p: p, stale: true, newerGen: se.gen})
			return nil
		}
		if err != nil {
			return err
		}
		// Cleared before the processor makes p ready, not when the task
		// ends: a ready partition shows no failure.
		p.taskFailing.Store(nil)
		m.send(ctx, procEvent{p: p, ready: true})
		return nil
	})
}

// retakeFenced recovers again the partitions that were fenced while the
// applied assignment still makes this node their active: the other writer
// was a previous owner or a late write of this node's own. Their recovery
// replays what the other writer appended and takes the log over again,
// unless it finds a newer owner.
func (m *TableManager) retakeFenced(ctx context.Context) {
	if !m.fenced.Swap(false) {
		return
	}
	for _, p := range m.assigned() {
		if p.State() == status.StateFenced && !p.stale.Load() && slices.Contains(m.actives, p.id) {
			m.log.Info("taking over the fenced partition again", "partition", p.id, "generation", m.gen.Load())
			m.counters.takenBack.Add(1)
			m.startRecovery(ctx, p, true)
		}
	}
	m.checkReady()
}

func (m *TableManager) newPartition(id int) *partition {
	p := &partition{m: m, id: id, partitions: m.cfg.Partitions}
	p.setState(status.StateRecovering)
	m.mu.Lock()
	m.parts[id] = p
	m.mu.Unlock()
	return p
}

// startStandby makes p a standby and starts its follower.
func (m *TableManager) startStandby(ctx context.Context, p *partition) {
	p.stopTaskFor(SuspendDemoted)
	p.setState(status.StateStandby)
	p.caughtUp = false
	p.covered, p.attached = 0, false
	m.startTask(ctx, p, "standby", func(ctx context.Context) error {
		return m.recovery.follow(ctx, p, func() {
			p.taskFailing.Store(nil) // a standby that caught up is no longer failing
			m.send(ctx, procEvent{p: p, caughtUp: true})
		})
	})
}

// applyAssignment moves this node to assignment a: revoke, keep or demote
// what it no longer owns, then recover what it newly owns. It runs on the
// processing goroutine, and calls the listener in Faust's order: rebalance
// started, partitions revoked, partitions assigned; actives and standbys
// ready follow from checkReady.
func (m *TableManager) applyAssignment(ctx context.Context, a assign.Assignment) error {
	if a.Generation <= m.gen.Load() {
		return nil
	}
	me := m.cfg.Node
	actives, standbys := a.ActivesOf(me), a.StandbysOf(me)
	m.onRebalanceStart(a.Generation)

	// revoked: actives that stop; lost: every partition no longer active
	// here that was (active, fenced or recovering), for the listener.
	var revoked, demote, lost []int
	for _, p := range m.assigned() {
		switch active, standby := slices.Contains(actives, p.id), slices.Contains(standbys, p.id); {
		case p.State() == status.StateActive && !active, p.State() == status.StateFenced:
			revoked = append(revoked, p.id)
			lost = append(lost, p.id)
			if standby {
				demote = append(demote, p.id)
			}
		case p.State() == status.StateRecovering && !active, p.State() == status.StateStandby && !active && !standby:
			if p.State() == status.StateRecovering {
				lost = append(lost, p.id)
			}
			if standby {
				demote = append(demote, p.id)
				continue
			}
			m.release(p)
		}
	}
	// Demoted partitions keep their stores: commit, then follow.
	if err := m.commit(ctx); err != nil && len(revoked) > 0 {
		m.log.Warn("commit before rebalance failed", "err", err)
	}
	var gone []int
	for _, id := range revoked {
		if !slices.Contains(demote, id) {
			gone = append(gone, id)
		}
	}
	if err := m.onPartitionsRevoked(ctx, gone); err != nil {
		return err
	}
	for _, id := range demote {
		if p := m.partition(id); p != nil {
			m.settle(p)
			p.reset()
			m.startStandby(ctx, p)
		}
	}
	if f := m.cfg.Listener.OnPartitionsRevoked; f != nil {
		slices.Sort(lost)
		m.notify("partitions revoked", func() { f(PartitionsRevoked{Generation: a.Generation, Partitions: lost, Demoted: demote}) })
	}
	m.gen.Store(a.Generation)
	m.actives = actives
	m.signalState() // tell the group what we released

	var newly []int
	for _, id := range actives {
		if p := m.partition(id); p == nil || (p.State() != status.StateActive && p.State() != status.StateRecovering) {
			newly = append(newly, id)
		}
	}
	if err := m.onRebalance(ctx, actives, revoked, newly); err != nil {
		return err
	}
	for _, id := range standbys {
		if m.partition(id) == nil {
			m.startStandby(ctx, m.newPartition(id))
		}
	}
	if f := m.cfg.Listener.OnPartitionsAssigned; f != nil {
		m.notify("partitions assigned", func() {
			f(PartitionsAssigned{Generation: a.Generation, Actives: slices.Clone(actives), NewlyAssigned: newly, Standbys: standbys})
		})
	}
	m.checkReady()
	if m.reader != nil && len(actives) == 0 {
		m.detach()
		_ = m.reader.Close()
		m.reader = nil
	}
	return nil
}

// waitReleased waits until no other live member claims partition id as
// active: its previous owner released it, or its lease expired.
func (m *TableManager) waitReleased(ctx context.Context, id int) error {
	if m.cfg.Coordinator == nil {
		return nil
	}
	m.recovery.setPhase(id, status.PhaseWaitingRelease)
	logged := false
	for {
		v, changed := m.currentView()
		holder := ""
		if v != nil {
			for name, st := range v.Members {
				if name != m.cfg.Node && slices.Contains(st.Actives, id) {
					holder = name
				}
			}
		}
		if v != nil && holder == "" {
			return nil
		}
		if holder != "" && !logged {
			logged = true
			m.log.Info("waiting for the previous owner to release the partition", "partition", id, "owner", holder)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// activate makes a recovered partition active. If the reader has gone
// past p's recovered position (or there is none), the source is read again
// from the lowest position of the active partitions, and each of the others
// skips what it covers; else p attaches to the reader as it is.
func (m *TableManager) activate(ctx context.Context, p *partition) {
	if p.State() != status.StateRecovering || m.partition(p.id) != p {
		return // revoked meanwhile
	}
	if err := m.commit(ctx); err != nil {
		m.log.Warn("commit before activation failed", "err", err)
	}
	p.activations.Add(1)
	p.covered, p.attached, p.parked = 0, false, false
	p.setState(status.StateActive)
	if m.reader != nil && p.sourceSeq.Load() >= m.examined {
		p.attached = true
	} else {
		m.reposition(ctx)
	}
	m.checkReady()
	m.signalState()
}

// reposition (re)opens the source after the lowest position of the active
// partitions (what each holds, committed or not) and attaches them all to
// the new reader. If the open fails, none is attached and the processing
// loop tries again.
func (m *TableManager) reposition(ctx context.Context) {
	m.detach()
	if m.reader != nil {
		_ = m.reader.Close()
		m.reader = nil
	}
	if _, ok := m.syncSource(ctx); !ok {
		return // the processing loop tries again
	}
	var floor uint64
	first := true
	for _, p := range m.assigned() {
		if p.State() != status.StateActive {
			continue
		}
		if pos := p.position(m.examined); first || pos < floor {
			floor, first = pos, false
		}
	}
	from := floor + 1
	yctx, stopYielding := m.yielding(ctx)
	r, err := m.cfg.Source.Open(yctx, from)
	stopYielding()
	if err != nil {
		if !yielded(ctx, err) {
			m.noteSource("open source", from, err, 0)
		}
		return // the processing loop retries (after the assignment)
	}
	m.reader, m.examined = r, from-1
	m.seen.Store(m.examined)
	for _, p := range m.assigned() {
		// A parked partition takes no events: attached, its position
		// would follow the reader past events it never processed. It is
		// attached by the reposition that follows its unparking.
		if p.State() == status.StateActive && !p.parked {
			p.attached = true
		}
	}
	m.log.Info("reading source", "from_seq", from)
}

// checkReady calls onActivesReady when every assigned partition is
// active (or fenced), then onStandbysReady when also every standby caught
// up: in Faust's order, each once per generation.
func (m *TableManager) checkReady() {
	if m.gen.Load() == 0 {
		return // no assignment applied yet
	}
	actives, standbys := true, true
	for _, p := range m.assigned() {
		switch p.State() {
		case status.StateRecovering:
			actives = false
		case status.StateStandby:
			standbys = standbys && p.caughtUp
		}
	}
	if actives && !m.activesReady.Load() {
		m.onActivesReady()
	}
	if standbys && m.activesReady.Load() && !m.standbysReady.Load() {
		m.onStandbysReady()
	}
}

// errStoreOpen marks store open failures other than corruption.
var errStoreOpen = errors.New("open store")
