package manager

// The processing loop's dealings with its source reader: stalls, reopens,
// gaps and failures.

import (
	"context"
	"fmt"
	"time"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// checkStall reopens the reader after the last examined message when the
// source holds messages beyond it that the reader did not deliver.
func (m *TableManager) checkStall(ctx context.Context) {
	if changed, ok := m.syncSource(ctx); changed || !ok {
		m.reposition(ctx)
		return
	}
	// The state syncSource just read; none if that read failed (a source
	// without a leader: the check is made again later).
	st := m.lastSource
	if st == nil {
		return
	}
	first, last := st.First, st.Last
	// Nothing to deliver: nothing past examined, or the source is empty
	// (everything up to last was trimmed, committed by every partition).
	if last <= m.examined || first > last || m.reader == nil {
		return
	}
	m.log.Warn("source reader delivered nothing although the source holds more; reopening it",
		"after_seq", m.examined, "source_last_seq", last, "silent_for", readerStallAfter)
	m.reopen(ctx)
}

// reopen reopens the reader after the last examined message: the effects
// of the messages up to it are buffered or committed, so the partitions
// attached to the reader stay attached. If that fails, the partitions are
// detached (each keeps what it covers) and the processing loop repositions
// later; every active partition then skips what it covers.
func (m *TableManager) reopen(ctx context.Context) {
	if changed, ok := m.syncSource(ctx); changed || !ok {
		m.reposition(ctx)
		return
	}
	_ = m.reader.Close()
	yctx, stopYielding := m.yielding(ctx)
	r, err := m.cfg.Source.Open(yctx, m.examined+1)
	stopYielding()
	if err == nil {
		m.reader = r
		return
	}
	m.detach()
	m.reader = nil
	if !yielded(ctx, err) {
		m.noteSource("reopen source", m.examined+1, err, 0)
	}
}

// sourceFailure is a streak of failures to open or read the source.
type sourceFailure struct {
	since    time.Time
	attempts int
	err      string
}

// sourceFailingAfter is how long the source may fail to be read before
// the node says it is not ready.
const sourceFailingAfter = 5 * time.Second

// noteSource records a failure to open or read the source at seq; it is
// logged at the streak's first failure and at each doubling of its length,
// not at every retry.
func (m *TableManager) noteSource(what string, seq uint64, err error, retryIn time.Duration) {
	f := sourceFailure{since: time.Now(), err: fmt.Sprintf("%s at seq %d: %v", what, seq, err)}
	if prev := m.sourceFailing.Load(); prev != nil {
		f.since, f.attempts = prev.since, prev.attempts
	}
	f.attempts++
	m.sourceFailing.Store(&f)
	if f.attempts&(f.attempts-1) == 0 {
		args := []any{"seq", seq, "err", err, "attempts", f.attempts, "failing_for", time.Since(f.since).Round(time.Millisecond)}
		if retryIn > 0 {
			args = append(args, "retry_in", retryIn)
		}
		m.log.Warn(what+" failed; retrying", args...)
	}
}

// sourceReadable ends a streak of source failures.
func (m *TableManager) sourceReadable() {
	if f := m.sourceFailing.Swap(nil); f != nil {
		m.log.Info("source readable again", "failed_attempts", f.attempts, "failed_for", time.Since(f.since).Round(time.Millisecond))
	}
}

// checkGap reports source sequences from..to that the reader skipped
// because the source no longer holds them, if an active partition had not
// processed them and its changelog does not show them committed either:
// their events were removed before any owner committed them (the trim
// never does that; an operator's purge or a MaxAge limit can), so their
// effects are lost. A gap that the partition's changelog covers means that
// another writer committed the partition past it: this node's copy is
// stale and its next commit is fenced. A gap below every active
// partition's position is normal.
func (m *TableManager) checkGap(ctx context.Context, from, to uint64) {
	var lost []int
	for _, p := range m.assigned() {
		if p.State() != status.StateActive || p.position(m.examined) >= to {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, readerStallAfter)
		marker, _, found, err := m.cfg.Changelog.LastCommit(lctx, p.id)
		cancel()
		switch {
		case err != nil:
			m.log.Warn("source events were removed before this node processed them; could not tell whether another owner committed them",
				"partition", p.id, "from_seq", from, "to_seq", to, "err", err)
		case found && marker.SourceSeq >= to && (marker.SourceEpoch == "" || marker.SourceEpoch == m.sourceEpoch):
			m.log.Info("source events were committed by another owner of the partition; this node's copy is stale and will be fenced",
				"partition", p.id, "from_seq", from, "to_seq", to, "owner", marker.Node, "generation", marker.Generation)
		default:
			lost = append(lost, p.id)
		}
	}
	if len(lost) == 0 {
		return
	}
	m.counters.sourceGaps.Add(to - from + 1)
	m.log.Error("source events were removed before any owner of these partitions committed them; their effects are lost",
		"from_seq", from, "to_seq", to, "partitions", lost)
}

// drained tells whether r has delivered everything its source held (see
// port.DrainingReader); a reader that cannot tell counts as drained.
func drained(r port.SourceReader) bool {
	d, ok := r.(port.DrainingReader)
	return !ok || d.Drained()
}
