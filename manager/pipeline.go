package manager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
	"github.com/edgetables/edgetables/store"
)

// Pipelined commits.
//
// A partition's commit runs on a goroutine of its own while the processing
// goroutine reads and dispatches the next events into a fresh buffer: the
// commit's writes are sealed in p.inflight, which agent reads consult after
// the buffer and before the store. A partition has at most one commit in
// flight, so that its changelog appends stay sequential (each expects the
// log's end the previous one left). The processing goroutine starts
// commits, and reaps them when they end: only then does the partition's
// committed source position advance, and with it the source acks and trims.
// A failed commit stays in p.inflight and is written again, as it is, before
// the newer writes; a fenced one drops both. Rebalances, activations and
// the final commit first wait for every commit in flight (commit).

// commitJob is one partition's commit: sealed writes and the source
// position of their events.
type commitJob struct {
	part   *partition
	buf    map[string]map[string]pending // never written once sealed
	keys   int
	target uint64 // the marker's source position
	epoch  string // the source epoch target counts in
	gen    uint64 // the marker's generation, when started

	// done is closed when the running write ends; nil while the job is not
	// running (sealed, or failed and reaped).
	done  chan struct{}
	round *commitRound
	// Results, written by the job's goroutine before done is closed.
	err     error
	last    uint64 // the changelog's last sequence after the append
	applied uint64 // the changelog offset written to the store
	records int    // the changelog records appended
	ended   time.Time
}

// running reports whether j's write runs or ended without being reaped.
func (j *commitJob) running() bool { return j != nil && j.done != nil }

// hasEnded reports whether j's write ended (j must be running).
func (j *commitJob) hasEnded() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// commitRound is the commits started together; it counts as one commit in
// the status once they all ended, if one succeeded.
type commitRound struct {
	start   time.Time
	end     time.Time
	pending int
	ok      bool
}

// commitLimit is the number of uncommitted keys a partition may hold in
// its buffer while its previous commit is in flight before processing
// waits for that commit: MaxCommitRecords (a commit must fit one atomic
// batch), else CommitEvery (it bounds the memory of a partition whose
// changelog does not answer).
func (m *TableManager) commitLimit() int {
	if m.cfg.MaxCommitRecords > 0 {
		return m.cfg.MaxCommitRecords
	}
	return m.cfg.CommitEvery
}

// startCommit starts p's next commit unless one is running (then it marks
// p due): the failed commit in flight again, or else buf up to the last
// examined source message. A partition without writes advances its source
// position in memory, and now and then in the store (synchronously, a
// small transaction). It reports whether a commit started.
func (m *TableManager) startCommit(ctx context.Context, p *partition, r *commitRound) (bool, error) {
	if p.State() != status.StateActive {
		return false, nil
	}
	j := p.inflight
	switch {
	case j.running():
		p.due = true
		return false, nil
	case j == nil:
		// Only what p covers: a reader that failed or moved back must
		// not carry p's position past events it never applied, nor
		// leave it short of events its writes hold.
		target := p.position(m.examined)
		if !p.dirty() && !p.remark && (target <= p.lastPersist || time.Since(p.persistedAt) < idlePersistEvery) {
			// Nothing to write: the position advances in memory, and
			// now and then by a commit of the marker alone, so that
			// the source trim, which goes by the changelogs, moves on.
			if target > p.sourceSeq.Load() {
				p.sourceSeq.Store(target)
			}
			return false, nil
		}
		j = p.seal(target)
	}
	p.due = false
	j.done, j.err, j.round, j.gen = make(chan struct{}), nil, r, m.gen.Load()
	r.pending++
	m.commitWG.Add(1)
	go func() {
		defer m.commitWG.Done()
		defer close(j.done)
		j.err = m.writeCommit(ctx, p, j)
		j.ended = time.Now()
	}()
	return true, nil
}

// writeCommit appends j's records and marker to p's changelog, then writes
// them with the offsets in one store transaction. It runs on the job's
// goroutine and owns p.expectLast, p.refresh and p.pendingOffset meanwhile;
// the rest of p changes when the processing goroutine reaps j. It ends
// within commitTimeout per request, whether or not ctx ends: a commit
// started is finished (or fails) before its partition moves on.
func (m *TableManager) writeCommit(ctx context.Context, p *partition, j *commitJob) error {
	ctx = context.WithoutCancel(ctx)
	if p.refresh {
		// An earlier append failed without an answer: some of it may be
		// stored, or another writer may have taken the log meanwhile. The
		// log must still end where this writer left it; a writer that
		// expected the log's new end instead would write its stale
		// records after another owner's newer ones. If it does not end
		// there, the partition is fenced and taken back by a recovery,
		// which replays whatever was stored.
		sctx, cancel := context.WithTimeout(ctx, commitTimeout)
		st, err := m.cfg.Changelog.State(sctx, p.id)
		cancel()
		if err != nil {
			return fmt.Errorf("changelog state: %w", err)
		}
		if st.Last != p.expectLast {
			return fmt.Errorf("%w: %w: the log ends at %d, not at %d where this writer's last answered append left it",
				port.ErrFenced, errLogMoved, st.Last, p.expectLast)
		}
		p.refresh = false
	}
	// The dead letters of the events the marker covers go first.
	if !m.dlq.flush(commitTimeout) {
		m.log.Warn("dead letters not stored within the commit timeout; committing anyway, they are still being sent",
			"partition", p.id, "source_seq", j.target)
	}
	recs := recordsOf(j.buf)
	marker := port.CommitMarker{SourceSeq: j.target, Node: m.cfg.Node, Generation: j.gen, SourceEpoch: j.epoch}
	actx, cancel := context.WithTimeout(ctx, commitTimeout)
	last, err := m.cfg.Changelog.Append(actx, p.id, p.expectLast, recs, marker)
	cancel()
	if errors.Is(err, port.ErrFenced) {
		return fmt.Errorf("append expecting the log to end at %d: %w", p.expectLast, err)
	}
	if err != nil {
		p.refresh = true
		return fmt.Errorf("append %d records: %w", len(recs), err)
	}
	p.expectLast, j.last = last, last
	m.counters.records.Add(uint64(len(recs)))
	if err := failpoint(fpAfterAppend); err != nil {
		return err
	}
	j.records = len(recs)
	p.persistOffsetOnCommit(last)
	applied := max(p.applied.Load(), p.pendingOffset)
	muts := toMutations(recs)
	err = p.store.Apply(store.Batch{Mutations: muts, Offsets: store.Offsets{Changelog: applied, Source: j.target, Epoch: p.epoch, SourceEpoch: j.epoch}})
	if err != nil {
		// The changelog has the records: the next start replays them.
		p.refresh = true
		return fmt.Errorf("persist %d writes at changelog offset %d, source seq %d: %w", len(muts), applied, j.target, err)
	}
	j.applied = applied
	return failpoint(fpAfterPersist)
}

// errLogMoved: an append failed without an answer, and the log no longer
// ends where this writer's last answered append left it: part of the
// failed append was stored, or another writer wrote meanwhile. Either way
// the writer is fenced and the partition recovered from the log.
var errLogMoved = errors.New("the log grew after a failed append")

// reap finishes the commits that ended. It returns the partitions whose
// commit failed, and the errors (with errCrash if a failure point fired).
func (m *TableManager) reap() (failed []*commitJob, err error) {
	var errs []error
	for _, p := range m.assigned() {
		j := p.inflight
		if !j.running() || !j.hasEnded() {
			continue
		}
		if err := m.finish(p, j); err != nil {
			failed = append(failed, j)
			errs = append(errs, fmt.Errorf("partition %d: %w", p.id, err))
		}
	}
	return failed, errors.Join(errs...)
}

// finish applies the result of p's ended commit j: the committed offsets
// on success; on a fence, p stops; on another failure, j stays in flight,
// to be written again.
func (m *TableManager) finish(p *partition, j *commitJob) error {
	j.done = nil
	r := j.round
	r.pending--
	r.end = later(r.end, j.ended)
	if j.err == nil {
		r.ok = true
	}
	if r.pending == 0 && r.ok {
		d := r.end.Sub(r.start)
		m.counters.commits.Add(1)
		m.counters.commitNanos.Add(uint64(d))
		m.commitLatency.observe(d)
	}
	if !errors.Is(j.err, errCrash) {
		p.noteCommit(j.err)
	}
	switch err := j.err; {
	case err == nil:
		p.setInflight(nil)
		p.highWater.Store(j.last)
		p.applied.Store(j.applied)
		p.sourceSeq.Store(j.target)
		p.logSource = j.target
		p.lastPersist, p.persistedAt = j.target, j.ended
		m.onCommitTP(p, j)
		return nil
	case errors.Is(err, port.ErrFenced):
		m.counters.commitsFenced.Add(1)
		p.setState(status.StateFenced)
		p.reset()
		m.fenced.Store(true)
		msg := "partition fenced: another writer owns its changelog; this node stops processing it and drops its uncommitted writes"
		if errors.Is(err, errLogMoved) {
			msg = "partition fenced: its changelog grew after an append of this node failed (part of that append was stored, as on a full disk, or another writer wrote); " +
				"this node drops its uncommitted writes and takes the partition back from the log"
		}
		m.log.Error(msg, "partition", p.id, "source_seq_from", p.sourceSeq.Load()+1, "source_seq_to", max(j.target, m.examined), "err", err)
		return err
	case errors.Is(err, errCrash):
		return err
	default:
		m.counters.commitsFailed.Add(1)
		if ok, held := m.warnings.allow(fmt.Sprint("commit ", p.id)); ok {
			m.log.Warn("commit failed; uncommitted writes are kept and retried", "partition", p.id, "source_seq", j.target, "err", err,
				"similar_not_logged", held)
		}
		return err
	}
}

// waitCommits waits until no commit runs, or ctx ends, and reaps them.
func (m *TableManager) waitCommits(ctx context.Context) ([]*commitJob, error) {
	for _, p := range m.assigned() {
		if j := p.inflight; j.running() {
			select {
			case <-j.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return m.reap()
}

// settle waits for p's running commit, if any (it ends within its
// timeouts), and reaps it, so that p's offsets are those of what it wrote.
func (m *TableManager) settle(p *partition) {
	if j := p.inflight; j.running() {
		<-j.done
		_ = m.finish(p, j) // logged there
	}
}

// drainCommits waits for every commit started to end (each ends within
// its timeouts), whatever their outcome: nothing may write a store after
// the processing loop returned.
func (m *TableManager) drainCommits() { m.commitWG.Wait() }

// pump reaps the commits that ended and starts the commits that were due
// meanwhile. Only a simulated crash is returned.
func (m *TableManager) pump(ctx context.Context) error {
	if _, err := m.reap(); errors.Is(err, errCrash) {
		return err
	}
	m.unpark(ctx)
	var r *commitRound
	for _, p := range m.assigned() {
		if !p.due || p.inflight.running() {
			continue
		}
		if r == nil {
			r = &commitRound{start: time.Now()}
		}
		if _, err := m.startCommit(ctx, p, r); err != nil {
			m.log.Warn("commit failed", "partition", p.id, "err", err)
		}
	}
	return nil
}

// commitTick starts a commit of every active partition that has something
// to commit, and acknowledges what is committed. It does not wait for the
// commits, unless a partition's buffer reached commitLimit while its
// previous commit is in flight: then it waits for that commit, retrying it
// until it succeeds or ctx ends. Only a simulated crash is returned.
func (m *TableManager) commitTick(ctx context.Context) error {
	if _, err := m.reap(); errors.Is(err, errCrash) {
		return err
	}
	r := &commitRound{start: time.Now()}
	for _, p := range m.assigned() {
		if _, err := m.startCommit(ctx, p, r); err != nil {
			m.log.Warn("commit failed", "partition", p.id, "err", err)
		}
	}
	for m.full = m.overFull(); m.full && ctx.Err() == nil; m.full = m.overFull() {
		// Reading on would make the next commit too large: wait for the
		// full partitions' commits in flight, a little. One whose commit
		// does not end soon, or fails, is parked, and the others go on.
		for _, p := range m.assigned() {
			if j := p.inflight; !p.parked && j.running() && p.bufferedKeys() >= m.commitLimit() {
				t := time.NewTimer(parkAfter)
				select {
				case <-j.done:
				case <-t.C:
					m.park(p, "its commit has not ended for "+parkAfter.String())
				case <-ctx.Done():
				}
				t.Stop()
			}
		}
		failed, err := m.reap()
		if errors.Is(err, errCrash) {
			return err
		}
		for _, j := range failed {
			if p := j.part; p.State() == status.StateActive && !p.parked && p.bufferedKeys() >= m.commitLimit() {
				m.park(p, "its commit failed: "+j.err.Error())
			}
		}
		r := &commitRound{start: time.Now()}
		for _, p := range m.assigned() {
			if !p.parked && (p.bufferedKeys() >= m.commitLimit() || p.due) {
				if _, err := m.startCommit(ctx, p, r); err != nil {
					m.log.Warn("commit failed", "partition", p.id, "err", err)
				}
			}
		}
	}
	m.unpark(ctx)
	m.ackCommitted(ctx)
	return nil
}
