package manager

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// Source epochs.
//
// A partition's committed source position is a sequence of the source
// stream. A stream deleted and created again numbers its events from 1
// again, and one that lost its tail (a power cut before the server synced
// it, while a later commit marker survived in another stream) numbers its
// new events from its last surviving sequence + 1: in both cases new
// events reuse sequences at or below the committed position and would be
// skipped for ever. So every position goes with the source's epoch (its
// creation time: CommitMarker.SourceEpoch, store.Offsets.SourceEpoch),
// and a partition's position is checked against the source when it is
// taken over and while it is processed:
//
//   - another epoch: the source was created again; the position becomes
//     the new stream's first sequence - 1 (its events are all new).
//   - the same epoch (or an unknown one, from an older marker) and a
//     position beyond the source's last sequence: the source lost its
//     tail; the position becomes its last sequence, so that the events
//     published after the loss are processed.
//
// Either is logged as an error and counted (SourceResets). The buffered
// writes of the old stream's events are committed first, under the old
// epoch. A lost tail is only seen while the source's last sequence is
// below the position: events published after the loss and before the
// check that reach the old position are indistinguishable from old ones.

// sourceCheckEvery is how often the processing goroutine compares the
// source's epoch and end with what its partitions committed.
const sourceCheckEvery = 5 * time.Second

// resolveSource returns the position and epoch a partition at position pos
// of source epoch epoch resumes from on source src, and what happened to
// the source ("" when the position stands).
func resolveSource(pos uint64, epoch string, src port.SourceState) (uint64, string, string) {
	switch {
	case src.Epoch == "":
		return pos, epoch, ""
	case epoch != "" && epoch != src.Epoch:
		return max(src.First, 1) - 1, src.Epoch, "created again"
	case pos > src.Last:
		return src.Last, src.Epoch, "lost its tail"
	}
	return pos, src.Epoch, ""
}

// takeoverSourceWait bounds the source-state read of a takeover. A healthy
// read takes milliseconds; one that takes longer is waiting for a source
// stream without a leader (its leader died with the partition's previous
// owner, and JetStream elects another after its election timeout). The
// takeover does not wait for that election: the processing goroutine
// makes the same check (syncSource) when it reopens the source and every
// sourceCheckEvery, and moves the position then, rereading what the
// partition skipped meanwhile. So a read that merely runs late on a
// loaded machine costs nothing but the later check, and a failover whose
// dead node led the source pays this wait in full: short.
const takeoverSourceWait = 250 * time.Millisecond

// takeoverSourceRest is how long, after a takeover's source-state read
// timed out, the other takeovers skip theirs: they would wait for the same
// election, one after the other (a failover takes several partitions over
// at once).
const takeoverSourceRest = 2 * time.Second

// sourceStateWait bounds the processing goroutine's reads of the source's
// state (syncSource, confirmSource, checkStall). That goroutine also applies
// new assignments: while a read waits for a source stream that has no
// leader, a failover's new assignment waits with it. A read that times out
// is made again at the next check.
const sourceStateWait = time.Second

// takeoverSourceRead is the source-state read that concurrent takeovers
// share: a failover takes several partitions over at once, and each
// reading the state of a source stream that has no leader waited
// takeoverSourceWait after the other.
type takeoverSourceRead struct {
	mu      sync.Mutex
	current *sourceRead // the read in flight or the last one
}

// sourceRead is one read of the source's state: src and err are set
// before done is closed, at ended. abandoned: the takeover that made it
// ended first, so its error says nothing about the source.
type sourceRead struct {
	done      chan struct{}
	src       port.SourceState
	err       error
	ended     time.Time
	abandoned bool
}

// read returns the source's state: the result of the read in flight if
// there is one (unless that read's own takeover ended first: then it reads
// again), an error at once if the last read timed out less than
// takeoverSourceRest ago, or a new read's (given takeoverSourceWait).
func (t *takeoverSourceRead) read(ctx context.Context, source port.Source) (port.SourceState, error) {
	for {
		t.mu.Lock()
		r := t.current
		switch {
		case r != nil && !closed(r.done):
			t.mu.Unlock()
			select {
			case <-r.done:
				if r.abandoned {
					continue
				}
				return r.src, r.err
			case <-ctx.Done():
				return port.SourceState{}, ctx.Err()
			}
		case r != nil && r.err != nil && time.Since(r.ended) < takeoverSourceRest:
			t.mu.Unlock()
			return port.SourceState{}, fmt.Errorf("not read again so soon: %w", r.err)
		}
		r = &sourceRead{done: make(chan struct{})}
		t.current = r
		t.mu.Unlock()
		sctx, cancel := context.WithTimeout(ctx, takeoverSourceWait)
		r.src, r.err = source.State(sctx)
		cancel()
		if r.err != nil && ctx.Err() != nil {
			r.abandoned = true
			t.mu.Lock()
			if t.current == r {
				t.current = nil // nothing learned about the source
			}
			t.mu.Unlock()
		}
		r.ended = time.Now()
		close(r.done)
		return r.src, r.err
	}
}

// closed reports whether ch is closed.
func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// resolveRecovered checks the recovered position of p against the source
// before p is taken over. If the source cannot be read within
// takeoverSourceWait, the position stands until that later check; so it
// does for the takeovers of the next takeoverSourceRest, which do not try.
func (m *TableManager) resolveRecovered(ctx context.Context, p *partition) {
	src, err := m.takeoverSource.read(ctx, m.cfg.Source)
	if err != nil {
		m.log.Warn("source state unreadable at takeover; the partition's source position is checked again once it is processed",
			"partition", p.id, "source_seq", p.sourceSeq.Load(), "err", err)
		return
	}
	pos := p.sourceSeq.Load()
	moves := func(src port.SourceState) bool {
		_, _, what := resolveSource(pos, p.sourceEpoch, src)
		return what != ""
	}
	if moves(src) {
		var ok bool
		if src, ok = m.confirmSource(ctx, src, moves); !ok {
			return // checked again once the partition is processed
		}
	}
	m.moveSource(p, pos, src)
}

// sourceConfirmations and sourceConfirmPause: a source that seems created
// again or to have lost its tail must seem so in this many more reads of
// its state, this far apart, before any position moves. One read is not
// enough: a stream leader elected a moment ago (a node restarting) has
// answered a last sequence below events it had acknowledged, and moving
// positions back on that counted those events twice.
const (
	sourceConfirmations = 2
	sourceConfirmPause  = time.Second
)

// confirmSource reads the source's state again, sourceConfirmations times
// sourceConfirmPause apart, and reports whether moves holds for every read,
// with the last state read. A failed read confirms nothing.
func (m *TableManager) confirmSource(ctx context.Context, src port.SourceState, moves func(port.SourceState) bool) (port.SourceState, bool) {
	for range sourceConfirmations {
		if !sleep(ctx, sourceConfirmPause) {
			return src, false
		}
		sctx, cancel := context.WithTimeout(ctx, sourceStateWait)
		next, err := m.cfg.Source.State(sctx)
		cancel()
		if err != nil || next.Epoch == "" {
			return src, false
		}
		src = next
		if !moves(src) {
			m.log.Info("the source stream's state seemed to go back and did not: positions stand",
				"source_first_seq", src.First, "source_last_seq", src.Last, "source_epoch", src.Epoch)
			return src, false
		}
	}
	return src, true
}

// moveSource moves p's source position, pos, to where it resumes on src,
// logging and counting a move. It reports whether p moved.
func (m *TableManager) moveSource(p *partition, pos uint64, src port.SourceState) bool {
	to, epoch, what := resolveSource(pos, p.sourceEpoch, src)
	if what == "" {
		p.sourceEpoch = epoch
		return false
	}
	m.counters.sourceResets.Add(1)
	m.log.Error("source stream "+what+": the partition's committed source position is moved so that new events are processed",
		"partition", p.id, "tables", m.tableNames(), "old_source_epoch", p.sourceEpoch, "new_source_epoch", src.Epoch,
		"committed_source_seq", pos, "resumes_after_seq", to, "source_first_seq", src.First, "source_last_seq", src.Last)
	p.sourceSeq.Store(to)
	p.sourceEpoch = epoch
	p.logSource = 0
	p.lastPersist = to
	p.remark = true
	return true
}

// syncSource compares the source's epoch and end with the positions of the
// active partitions and with the reader's, and moves the positions of
// partitions whose source was created again or lost its tail (after
// committing what they buffered). changed reports that the reader must be
// repositioned; ok is false when the buffered writes could not be
// committed first: then nothing moved and the source must not be read.
func (m *TableManager) syncSource(ctx context.Context) (changed, ok bool) {
	m.lastSourceCheck = time.Now()
	m.lastSource = nil
	// The reads give way to a new assignment; the commit below does not.
	yctx, stopYielding := m.yielding(ctx)
	defer stopYielding()
	sctx, cancel := context.WithTimeout(yctx, sourceStateWait)
	src, err := m.cfg.Source.State(sctx)
	cancel()
	if err != nil {
		return false, true // checked again later
	}
	m.lastSource = &src
	if src.Epoch == "" {
		return false, true // a source without epochs: nothing to compare
	}
	moves := func(src port.SourceState) bool {
		if m.sourceEpoch != "" && m.sourceEpoch != src.Epoch || m.examined > src.Last {
			return true
		}
		for _, p := range m.assigned() {
			if p.State() == status.StateActive {
				if _, _, what := resolveSource(p.position(m.examined), p.sourceEpoch, src); what != "" {
					return true
				}
			}
		}
		return false
	}
	moved := moves(src)
	if moved {
		var confirmed bool
		src, confirmed = m.confirmSource(yctx, src, moves)
		if !confirmed && (src.Epoch == "" || moves(src)) {
			return false, true // a read failed: checked again later
		}
		moved = confirmed
	}
	if !moved {
		m.sourceEpoch = src.Epoch
		for _, p := range m.assigned() {
			if p.State() == status.StateActive && p.sourceEpoch == "" {
				p.sourceEpoch = src.Epoch
			}
		}
		return false, true
	}
	// What was read from the old stream is committed under its epoch.
	if err := m.commit(ctx); err != nil {
		m.log.Warn("the source stream changed; its events read so far must be committed before reading the new one, and that failed; retrying",
			"old_source_epoch", m.sourceEpoch, "new_source_epoch", src.Epoch, "err", err)
		return false, false
	}
	for _, p := range m.assigned() {
		if p.State() != status.StateActive {
			continue
		}
		if m.moveSource(p, p.position(m.examined), src) {
			p.covered, p.attached = 0, false
		}
	}
	if m.examined > src.Last || m.sourceEpoch != src.Epoch {
		m.log.Warn("the source stream changed under the reader; reading it again",
			"old_source_epoch", m.sourceEpoch, "new_source_epoch", src.Epoch, "examined_seq", m.examined, "source_last_seq", src.Last)
	}
	m.sourceEpoch = src.Epoch
	return true, true
}

// tableNames returns the names of the tables, sorted.
func (m *TableManager) tableNames() []string {
	ts := m.Tables()
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name()
	}
	return out
}
