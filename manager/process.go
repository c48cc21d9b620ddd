package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// stopTimeout bounds the final commit when Run's context ends.
const stopTimeout = 10 * time.Second

// pollEvery bounds how long a quiet source delays a rebalance or an
// activation.
const pollEvery = 50 * time.Millisecond

// idleCommitSpacing is the shortest time from a commit to the next idle
// commit (Config.CommitIdle): a trickle of events, each followed by a
// pause, is committed at most this often, as often as the commit interval
// of 100 ms before idle commits came.
const idleCommitSpacing = 100 * time.Millisecond

// pumpEvery is how many messages of a batch are dispatched between two
// looks at the commits in flight.
const pumpEvery = 512

// readerStallAfter is how long a reader may deliver nothing before the source is
// asked whether it holds messages the reader has not delivered; if it does,
// the reader is reopened. A consumer whose leader died can stay silent for
// a while even though the stream goes on.
const readerStallAfter = 2 * time.Second

// Run starts the manager and processes events until ctx ends or a fatal
// error occurs. Alone (no Coordinator), the node assigns itself every
// partition through the same rebalance path a cluster uses; in a cluster,
// it joins the group and follows the assignments of its leader. When ctx
// ends, the commits in flight end and the uncommitted writes are committed
// (within 10 s; a commit in flight whose changelog does not answer ends at
// its own 10 s timeout), the node leaves the group and the stores are
// closed; Run then returns nil, or an error wrapping ErrFinalCommit if
// that commit failed. Config.Listener is called on Run's goroutine.
func (m *TableManager) Run(ctx context.Context) (err error) {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("table manager: Run called twice")
	}
	defer m.running.Store(false)
	defer m.finished.Store(true)
	started := false
	defer func() {
		if started {
			m.onStop(err) // last: after the stores are closed
		}
	}()
	m.frozen.Store(true)
	defer m.closeAll()

	stopLog := m.recovery.logProgress(ctx)
	defer stopLog()
	stopGlobal, err := m.startGlobal(ctx)
	if err != nil || stopGlobal == nil {
		return err // nil: stopped while the global tables recovered
	}
	defer stopGlobal()

	dlqDone := make(chan struct{})
	go func() {
		defer close(dlqDone)
		m.dlq.run()
	}()
	// After the final commit: the dead letters queued are sent first.
	defer func() { m.dlq.close(); <-dlqDone }()

	trimCtx, stopTrim := context.WithCancel(ctx)
	trimDone := make(chan struct{})
	go func() {
		defer close(trimDone)
		m.runTrim(trimCtx)
	}()
	defer func() { stopTrim(); <-trimDone }()

	started = true
	m.onStart()
	if m.cfg.Coordinator == nil {
		all := assign.Assignment{Generation: 1, Partitions: m.cfg.Partitions, Actives: make([]string, m.cfg.Partitions)}
		for i := range all.Actives {
			all.Actives[i] = m.cfg.Node
		}
		m.setPendingAssignment(all)
		return m.process(ctx)
	}
	groupCtx, stopGroup := context.WithCancel(context.WithoutCancel(ctx))
	groupDone := make(chan struct{})
	go func() {
		defer close(groupDone)
		m.runGroup(groupCtx)
	}()
	leadersCtx, stopLeaders := context.WithCancel(ctx)
	leadersDone := make(chan struct{})
	go func() {
		defer close(leadersDone)
		m.runLeaderPlacement(leadersCtx)
	}()
	defer func() { stopLeaders(); <-leadersDone }()
	err = m.process(ctx)
	// Leave after the final commit, so that the next owners find the
	// partitions committed and released.
	for _, p := range m.assigned() {
		p.setState(status.StateFenced) // not processed any more: released
	}
	m.signalState()
	stopGroup()
	<-groupDone
	return err
}

// process runs the processing loop: it applies assignments, activates
// recovered partitions, reads the source and commits.
func (m *TableManager) process(ctx context.Context) error {
	var (
		lastCommit  = time.Now()
		lastClose   = time.Now() // the last closing pass: commits by count do not make one
		sinceCommit int
		backoff     = 100 * time.Millisecond
		lastRead    = time.Now() // the last delivery, or stall check
	)
	// Every return path has waited for the commits it needs (stop, a
	// rebalance); a crash or a fatal error leaves some running.
	defer m.drainCommits()
	for {
		if err := m.pump(ctx); err != nil {
			return err
		}
		// Rebalances and activations come first; with nothing to read,
		// wait for them.
		var wait time.Duration
		if m.reader == nil {
			wait = backoff
		}
		handled, err := m.pollEvents(ctx, wait)
		if err != nil {
			return err
		}
		if handled {
			continue
		}
		m.retakeFenced(ctx)
		if ctx.Err() != nil {
			return m.stop(ctx)
		}
		if m.reader == nil {
			if m.activeCount() > 0 {
				m.reposition(ctx) // a failed open is retried here
				if m.reader == nil {
					backoff = min(2*backoff, 5*time.Second)
				} else {
					backoff = 100 * time.Millisecond
				}
			}
			continue
		}
		// Bounded, so that rebalances and activations wait at most
		// pollEvery while the source is quiet.
		wait = min(max(time.Until(lastCommit.Add(m.cfg.CommitInterval)), time.Millisecond), pollEvery)
		// With events uncommitted, a reader that caught up with the
		// source and waited CommitIdle for more commits them at once
		// (Config.CommitIdle), idleCommitSpacing after the last commit at
		// the soonest.
		idle := false
		if sinceCommit > 0 && m.cfg.CommitIdle > 0 {
			spacing := min(idleCommitSpacing, m.cfg.CommitInterval)
			if early := time.Until(lastCommit.Add(spacing)) - m.cfg.CommitIdle; early > 0 {
				wait = min(wait, early) // then look again
			} else if wait > m.cfg.CommitIdle {
				idle, wait = true, m.cfg.CommitIdle
			}
		}
		reader := m.reader
		msgs, err := reader.Next(ctx, m.cfg.ReadBatch, wait)
		if ctx.Err() != nil {
			return m.stop(ctx)
		}
		if err != nil {
			m.noteSource("read source", m.examined+1, err, backoff)
			// The pause gives way to a new assignment, applied first.
			yctx, stopYielding := m.yielding(ctx)
			sleep(yctx, backoff)
			stopYielding()
			if ctx.Err() != nil {
				return m.stop(ctx)
			}
			backoff = min(2*backoff, 5*time.Second)
			m.reopen(ctx)
			continue
		}
		backoff = 100 * time.Millisecond
		m.sourceReadable()
		if time.Since(m.lastSourceCheck) >= sourceCheckEvery {
			if changed, ok := m.syncSource(ctx); changed || !ok {
				m.reposition(ctx)
				continue // msgs came from the reader just closed
			}
		}
		if len(msgs) > 0 {
			lastRead = time.Now()
		} else if time.Since(lastRead) >= readerStallAfter {
			lastRead = time.Now()
			m.checkStall(ctx)
		}
		for i := range msgs {
			if ctx.Err() != nil {
				return m.stop(ctx) // the rest of the batch is read again next time
			}
			if m.reader != reader {
				// Repositioned mid-batch (a partition unparked): the new
				// reader delivers from the new position; the rest of this
				// batch would skip what lies between.
				break
			}
			if msgs[i].Seq <= m.examined {
				continue // redelivered: its effects are already buffered
			}
			if msgs[i].Seq > m.examined+1 {
				m.checkGap(ctx, m.examined+1, msgs[i].Seq-1)
			}
			m.dispatch(ctx, &msgs[i])
			sinceCommit++
			if i%pumpEvery == pumpEvery-1 {
				// Commits that ended start their partitions' next.
				if err := m.pump(ctx); err != nil {
					return err
				}
			}
			// A commit must fit one atomic write: commit here, in the
			// middle of the batch if need be.
			if m.full || sinceCommit >= m.cfg.CommitEvery {
				if err := m.commitTick(ctx); err != nil {
					return err
				}
				lastCommit, sinceCommit = time.Now(), 0
			}
		}
		idleNow := idle && len(msgs) == 0 && drained(reader)
		if idleNow || time.Since(lastCommit) >= m.cfg.CommitInterval || time.Since(lastClose) >= m.cfg.CommitInterval {
			m.closeWindows(ctx)
			lastClose = time.Now()
			if err := m.commitTick(ctx); err != nil {
				return err
			}
			lastCommit, sinceCommit = time.Now(), 0
		}
	}
}

// detach records, for every partition attached to the reader, that it
// covers the messages examined so far, and detaches it: the reader is
// about to close, fail or move.
func (m *TableManager) detach() {
	for _, p := range m.assigned() {
		if p.attached {
			p.covered = max(p.covered, m.examined)
			p.attached = false
		}
	}
}

// overFull reports whether an active partition holds commitLimit keys or
// more in its buffer.
func (m *TableManager) overFull() bool {
	lim := m.commitLimit()
	if lim <= 0 {
		return false
	}
	for _, p := range m.assigned() {
		if p.State() == status.StateActive && !p.parked && p.bufferedKeys() >= lim {
			return true
		}
	}
	return false
}

// pollEvents handles a pending assignment or partition event, waiting up
// to wait for one; it reports whether it handled one.
func (m *TableManager) pollEvents(ctx context.Context, wait time.Duration) (bool, error) {
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	} else {
		closed := make(chan time.Time)
		close(closed)
		timeout = closed
	}
	select {
	case <-m.assignSignal:
		if a := m.takePendingAssignment(); a != nil {
			return true, m.applyAssignment(ctx, *a)
		}
		return true, nil
	case ev := <-m.events:
		return true, m.handle(ctx, ev)
	case <-ctx.Done():
		return false, nil
	case <-timeout:
		return false, nil
	}
}

// handle processes an event of a partition task.
func (m *TableManager) handle(ctx context.Context, ev procEvent) error {
	switch {
	case ev.err != nil:
		return ev.err
	case ev.ready:
		m.activate(ctx, ev.p)
	case ev.stale:
		if ev.p.State() != status.StateRecovering || m.partition(ev.p.id) != ev.p {
			return nil
		}
		if m.gen.Load() >= ev.newerGen && slices.Contains(m.actives, ev.p.id) {
			// The assignment that made the other writer owner has been
			// followed by one, applied meanwhile, that makes this node
			// owner again: recover for it.
			m.startRecovery(ctx, ev.p, true)
			return nil
		}
		ev.p.setState(status.StateFenced)
		ev.p.stale.Store(true)
		m.checkReady()
		m.signalState()
	case ev.caughtUp:
		ev.p.caughtUp = true
		m.checkReady()
	}
	return nil
}

func (m *TableManager) activeCount() int {
	n := 0
	for _, p := range m.assigned() {
		if p.State() == status.StateActive {
			n++
		}
	}
	return n
}

// stop commits what is uncommitted with a fresh deadline and returns.
func (m *TableManager) stop(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	if err := m.commitAndAck(cctx); err != nil {
		m.log.Error("final commit failed; uncommitted events will be processed again at the next start",
			"after_source_seq", m.committedFloor(), "err", err)
		return fmt.Errorf("%w: %w", ErrFinalCommit, err)
	}
	m.log.Info("stopped", "committed_source_seq", m.committedFloor())
	return nil
}

// committedFloor returns the lowest committed source sequence over the
// active partitions: every source message up to it is committed everywhere.
// A parked partition does not count: the source is read again for it by a
// new reader, so the current one may acknowledge past it.
func (m *TableManager) committedFloor() uint64 {
	var floor uint64
	first := true
	for _, p := range m.assigned() {
		if p.State() != status.StateActive || p.parked {
			continue
		}
		if s := p.sourceSeq.Load(); first || s < floor {
			floor, first = s, false
		}
	}
	return floor
}

// dispatch hands one source message to every agent that reads its subject,
// in the partition of the agent's key for it.
func (m *TableManager) dispatch(ctx context.Context, sm *port.SourceMessage) {
	msg := &message{SourceMessage: *sm}
	for _, a := range m.agents {
		if !a.matches(sm.Subject) {
			continue
		}
		e := &Event{Subject: sm.Subject, Header: sm.Header, Data: sm.Data, Time: sm.Time, Seq: sm.Seq, ctx: ctx, msg: msg}
		key, err := m.eventKey(a, e)
		if err != nil {
			// Whoever owns the partition of the subject reports it, so
			// that one node does it in a cluster.
			if p := m.partition(PartitionOf([]byte(sm.Subject), m.cfg.Partitions)); p.takes(sm.Seq) {
				m.deadLetter(ctx, a, sm, p.id, ReasonKey, fmt.Sprintf("key: %v", err))
			}
			continue
		}
		e.Key = key
		e.Partition = PartitionOf(key, m.cfg.Partitions)
		p := m.partition(e.Partition)
		if !p.takes(sm.Seq) {
			continue // not ours, or seen before
		}
		e.part = p
		if err := m.runAgent(a, e); err != nil {
			if errors.Is(err, ErrStoredValue) {
				m.storedValueDamaged(p.id, err)
			}
			m.deadLetter(ctx, a, sm, p.id, ReasonAgent, err.Error())
			continue
		}
		if reason := m.uncommittable(p, e.writes); reason != "" {
			m.deadLetter(ctx, a, sm, p.id, ReasonLimit, reason)
			continue
		}
		if !m.makeRoom(ctx, p, e.writes) {
			continue // p was fenced, or the node stops: read again later
		}
		p.merge(e.writes)
		if lim := m.cfg.MaxCommitRecords; lim > 0 && p.keys >= lim {
			m.full = true
		}
		m.counters.processed.Add(1)
	}
	m.examined = sm.Seq
	m.seen.Store(sm.Seq)
}

// takes reports whether p processes the source message at seq: p is active
// here and has not seen seq.
func (p *partition) takes(seq uint64) bool {
	return p != nil && p.State() == status.StateActive && !p.parked && seq > p.sourceSeq.Load() && seq > p.covered
}

func (m *TableManager) eventKey(a *Agent, e *Event) (key []byte, err error) {
	if a.Key == nil {
		return []byte(e.Subject), nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("agent %s: Key panicked: %v", a.Name, r)
		}
	}()
	key, err = a.Key(e)
	if err == nil && len(key) > MaxKeySize {
		err = fmt.Errorf("key of %d bytes exceeds %d", len(key), MaxKeySize)
	}
	return key, err
}

// runAgent calls the agent, turning a panic into an error so one bad event
// cannot stop the node.
func (m *TableManager) runAgent(a *Agent, e *Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("agent %s panicked: %v", a.Name, r)
		}
	}()
	return a.Process(e)
}

// storedValueDamaged logs (rate-limited, per partition) that partition's
// store holds a value its table cannot decode, and the way out.
func (m *TableManager) storedValueDamaged(partition int, err error) {
	if ok, held := m.warnings.allow(fmt.Sprint("stored value ", partition)); ok {
		m.log.Error("a stored value does not decode: the partition's store is damaged (or its changelog holds a record no node wrote); "+
			"events reading it go to the dead-letter subject. To rebuild the store from the changelog, stop the node and remove the partition's store file",
			"partition", partition, "err", err, "similar_not_logged", held)
	}
}

// deadLetter counts, logs (rate-limited) and sends the event sm that agent
// a refused; partition is the one that reports it.
func (m *TableManager) deadLetter(ctx context.Context, a *Agent, sm *port.SourceMessage, partition int, kind, reason string) {
	m.counters.deadLetters[a.Name].Add(1)
	m.counters.deadLetterReasons[kind].Add(1)
	if ok, held := m.dlq.logs.allow(a.Name + "\x00" + reasonKind(reason)); ok {
		m.log.Warn("event refused, sent to the dead-letter subject", "agent", a.Name, "partition", partition, "subject", sm.Subject,
			"source_seq", sm.Seq, "reason", reason, "similar_not_logged", held)
	}
	if m.cfg.DeadLetters == nil {
		return
	}
	m.dlq.enqueue(ctx, port.DeadLetter{Agent: a.Name, Reason: reason, Message: *sm})
}

// closeAll stops every partition task, closes the reader and the stores.
func (m *TableManager) closeAll() {
	if m.reader != nil {
		_ = m.reader.Close()
		m.reader = nil
	}
	for _, p := range m.assigned() {
		m.release(p)
	}
	m.activesReady.Store(false)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
