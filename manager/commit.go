package manager

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// idlePersistEvery bounds how often a partition with no writes commits its
// advancing source position (a commit marker alone): the source trim goes
// by the changelogs' markers, and an idle partition must not hold it back
// for long.
const idlePersistEvery = 5 * time.Second

// commitTimeout bounds one partition's changelog append: a reply lost while
// a stream's leader moves must not stall processing (and with it the
// rebalances the processor applies). A timed-out commit keeps its writes
// and is retried.
const commitTimeout = 10 * time.Second

// ackTimeout bounds acknowledging the source: a reply that never comes (the
// consumer's leader is a paused node) must not stall processing.
const ackTimeout = 5 * time.Second

// counters are the manager's running totals.
type counters struct {
	processed      atomic.Uint64
	records        atomic.Uint64
	commits        atomic.Uint64
	commitNanos    atomic.Uint64
	rebalances     atomic.Uint64
	unknownRecords atomic.Uint64
	// sourceGaps counts source events removed before a partition
	// processed them; markerRegressions counts replayed commit markers
	// whose source position went back. Both mean lost or doubled effects.
	sourceGaps        atomic.Uint64
	markerRegressions atomic.Uint64
	// sourceResets counts partitions whose committed source position was
	// moved because the source stream was created again or lost its
	// tail (sourceepoch.go).
	sourceResets atomic.Uint64
	// changelogBehind counts partitions found with a changelog behind
	// their store (behind.go), once per episode.
	changelogBehind atomic.Uint64
	deadLetters     map[string]*atomic.Uint64 // by agent; keys fixed at start
	// deadLetterReasons counts refused events by kind of reason
	// (DeadLetterReasons); keys fixed at start.
	deadLetterReasons map[string]*atomic.Uint64
	// commitsFenced and commitsFailed count failed commits (fenced, or
	// any other failure); takenBack counts partitions taken back after a
	// fence.
	commitsFenced atomic.Uint64
	commitsFailed atomic.Uint64
	takenBack     atomic.Uint64
	// recoverFailures and standbyFailures count failed attempts of the
	// partitions' recovery and standby tasks.
	recoverFailures atomic.Uint64
	standbyFailures atomic.Uint64
	// leaderMoves counts partition logs whose leader was moved off this
	// node, their active owner (leaders.go).
	leaderMoves atomic.Uint64
}

// taskFailures is the failure counter of a partition task.
func (c *counters) taskFailures(task string) *atomic.Uint64 {
	if task == "standby" {
		return &c.standbyFailures
	}
	return &c.recoverFailures
}

// commitAndAck commits every partition, waiting for the commits, then
// acknowledges the source up to the committed floor, and trims it.
func (m *TableManager) commitAndAck(ctx context.Context) error {
	err := m.commit(ctx)
	if errors.Is(err, errCrash) {
		return err
	}
	m.ackCommitted(ctx)
	return err
}

// ackCommitted acknowledges the source up to the committed floor: only
// positions whose commits ended (changelog and store) count. The source is
// trimmed elsewhere (runTrim), by the changelogs.
func (m *TableManager) ackCommitted(ctx context.Context) {
	floor := m.committedFloor()
	if floor == 0 || m.reader == nil {
		return
	}
	actx, cancel := context.WithTimeout(ctx, ackTimeout)
	aerr := m.reader.Ack(actx, floor)
	cancel()
	if aerr != nil {
		// Not fatal: unacked messages are redelivered and skipped by
		// their partitions' committed positions.
		if ok, held := m.warnings.allow("ack"); ok {
			m.log.Warn("ack source", "up_to_seq", floor, "err", aerr, "similar_not_logged", held)
		}
	}
}

// commit writes the uncommitted state of every active partition and waits
// for it: first the commits in flight end, then the partitions commit what
// is left, in parallel (a commit in flight that had failed is written
// again first). Each commit appends the changelog records and commit
// marker, then writes data and offsets in one store transaction. A
// partition whose commit fails keeps its writes for a later commit. It
// returns when every partition's commits ended, or ctx ended.
func (m *TableManager) commit(ctx context.Context) error {
	var (
		errs  []error
		mine  = make(map[*commitJob]bool) // started by this call
		given = make(map[*partition]bool) // failed in this call: not retried
	)
	for {
		failed, err := m.waitCommits(ctx)
		if errors.Is(err, errCrash) {
			return err
		}
		// Commits that failed before this call are written again now;
		// those started by it are given up for this call.
		for _, j := range failed {
			if mine[j] {
				given[j.part] = true
				errs = append(errs, fmt.Errorf("partition %d: %w", j.part.id, j.err))
			}
		}
		if ctx.Err() != nil {
			return errors.Join(append(errs, ctx.Err())...)
		}
		r := &commitRound{start: time.Now()}
		started := false
		for _, p := range m.assigned() {
			if given[p] {
				continue
			}
			ok, err := m.startCommit(ctx, p, r)
			if err != nil {
				errs = append(errs, fmt.Errorf("partition %d: %w", p.id, err))
			}
			if ok {
				started = true
				mine[p.inflight] = true
			}
		}
		if !started {
			return errors.Join(errs...)
		}
	}
}

// persistOffsetOnCommit marks changelog offset as the one to persist for
// p at its next commit (Faust's persist_offset_on_commit): the offset is
// written with the data at commit, never at send. It runs on p's commit
// goroutine, which owns p.pendingOffset while the commit runs.
func (p *partition) persistOffsetOnCommit(offset uint64) {
	p.pendingOffset = max(p.pendingOffset, offset)
}

// onCommitTP reports p's ended commit j to the listener (Faust's
// on_commit_tp): its changelog append and its store transaction are done.
// It runs on the processing goroutine, when j is reaped.
func (m *TableManager) onCommitTP(p *partition, j *commitJob) {
	if f := m.cfg.Listener.OnCommitted; f != nil {
		ev := Committed{Partition: p.id, Generation: j.gen, SourceSeq: j.target, ChangelogOffset: j.applied, Records: j.records}
		m.notify("committed", func() { f(ev) })
	}
}
