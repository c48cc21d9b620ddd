package manager

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// stopTimeout bounds the final commit when Run's context ends.
const stopTimeout = 10 * time.Second

// Run starts the manager and processes events until ctx ends or a fatal
// error occurs. On a single node every partition is assigned at start,
// through the same OnRebalance path a cluster uses. When ctx ends, the
// uncommitted writes are committed (within 10 s) and the stores closed; Run
// then returns nil.
func (m *TableManager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("table manager: Run called twice")
	}
	defer m.running.Store(false)
	m.frozen.Store(true)

	all := make([]int, m.cfg.Partitions)
	for i := range all {
		all[i] = i
	}
	m.OnRebalanceStart()
	if err := m.OnPartitionsRevoked(ctx, nil); err != nil {
		return err
	}
	if err := m.OnRebalance(ctx, all, nil, all); err != nil {
		m.closeStores()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer m.closeStores()
	return m.process(ctx)
}

// process reads the source and feeds agents until ctx ends.
func (m *TableManager) process(ctx context.Context) error {
	from := m.readPosition() + 1
	reader, err := m.cfg.Source.Open(ctx, from)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("open source at %d: %w", from, err)
	}
	m.log.Info("processing", "from_source_seq", from, "agents", len(m.agents), "partitions", len(m.assigned()))
	m.examined = from - 1
	defer func() { _ = reader.Close() }()

	var (
		lastCommit  = time.Now()
		sinceCommit int
		backoff     = 100 * time.Millisecond
	)
	for {
		wait := max(time.Until(lastCommit.Add(m.cfg.CommitInterval)), time.Millisecond)
		msgs, err := reader.Next(ctx, m.cfg.ReadBatch, wait)
		if ctx.Err() != nil {
			return m.stop(ctx, reader)
		}
		if err != nil {
			m.log.Warn("read source", "after_seq", m.examined, "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return m.stop(ctx, reader)
			}
			backoff = min(2*backoff, 5*time.Second)
			if reader, err = m.reopen(ctx, reader); err != nil {
				m.log.Warn("reopen source", "at_seq", m.examined+1, "err", err)
			}
			continue
		}
		backoff = 100 * time.Millisecond
		for i := range msgs {
			if msgs[i].Seq <= m.examined {
				continue // redelivered: its effects are already buffered
			}
			m.dispatch(ctx, &msgs[i])
		}
		sinceCommit += len(msgs)
		if sinceCommit >= m.cfg.CommitEvery || time.Since(lastCommit) >= m.cfg.CommitInterval {
			err := m.commitAndAck(ctx, reader)
			if errors.Is(err, errCrash) {
				return err
			}
			if err != nil && ctx.Err() == nil {
				m.log.Warn("commit failed; uncommitted writes are kept and retried", "err", err)
			}
			lastCommit, sinceCommit = time.Now(), 0
		}
	}
}

// reopen replaces a failed reader with one that resumes after the last
// examined message (whose effects are in the uncommitted buffers).
func (m *TableManager) reopen(ctx context.Context, old SourceReader) (SourceReader, error) {
	_ = old.Close()
	r, err := m.cfg.Source.Open(ctx, m.examined+1)
	if err != nil {
		return old, err
	}
	return r, nil
}

// stop commits what is uncommitted with a fresh deadline and returns.
func (m *TableManager) stop(ctx context.Context, reader SourceReader) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	if err := m.commitAndAck(cctx, reader); err != nil {
		m.log.Error("final commit failed; uncommitted events will be processed again at the next start",
			"after_source_seq", m.committedFloor(), "err", err)
	}
	m.log.Info("stopped", "committed_source_seq", m.committedFloor())
	return nil
}

// readPosition returns the source sequence processing resumes after: the
// lowest committed position of the assigned partitions.
func (m *TableManager) readPosition() uint64 { return m.committedFloor() }

// committedFloor returns the lowest committed source sequence over the
// active partitions: every source message up to it is committed everywhere.
func (m *TableManager) committedFloor() uint64 {
	var floor uint64
	first := true
	for _, p := range m.assigned() {
		if p.State() != StateActive {
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
func (m *TableManager) dispatch(ctx context.Context, sm *SourceMessage) {
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
			if p := m.partition(PartitionOf([]byte(sm.Subject), m.cfg.Partitions)); p != nil && p.State() == StateActive && sm.Seq > p.sourceSeq.Load() {
				m.deadLetter(ctx, a, sm, fmt.Sprintf("key: %v", err))
			}
			continue
		}
		e.Key = key
		e.Partition = PartitionOf(key, m.cfg.Partitions)
		p := m.partition(e.Partition)
		if p == nil || p.State() != StateActive || sm.Seq <= p.sourceSeq.Load() {
			continue // not ours, or committed before (a redelivery)
		}
		e.part = p
		if err := m.runAgent(a, e); err != nil {
			m.deadLetter(ctx, a, sm, err.Error())
			continue
		}
		p.merge(e.writes)
		m.counters.processed.Add(1)
	}
	m.examined = sm.Seq
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

func (m *TableManager) deadLetter(ctx context.Context, a *Agent, sm *SourceMessage, reason string) {
	m.counters.deadLetters[a.Name].Add(1)
	m.log.Warn("event refused, sent to the dead-letter subject", "agent", a.Name, "subject", sm.Subject,
		"source_seq", sm.Seq, "reason", reason)
	if m.cfg.DeadLetters == nil {
		return
	}
	if err := m.cfg.DeadLetters.Send(ctx, DeadLetter{Agent: a.Name, Reason: reason, Message: *sm}); err != nil {
		m.log.Error("dead-letter publish failed: the refused event is only in this log line and the source stream",
			"agent", a.Name, "subject", sm.Subject, "source_seq", sm.Seq, "err", err)
	}
}

func (m *TableManager) closeStores() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, p := range m.parts {
		if err := p.store.Close(); err != nil {
			m.log.Warn("close store", "partition", id, "err", err)
		}
		delete(m.parts, id)
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
