package manager

import (
	"context"
	"fmt"
	"time"

	"github.com/edgetables/edgetables/manager/status"
)

// One event must never wedge a partition: a commit that cannot be written
// is retried for ever, and every later event of its partition waits behind
// it. An event whose writes cannot fit a commit (too many keys, a value
// larger than a changelog record can be, a key longer than a subject
// token allows) is refused before its writes reach the buffer; an event
// whose writes fit only an empty buffer commits the buffer first.

// uncommittable returns why ws can never be committed ("" if they can).
func (m *TableManager) uncommittable(p *partition, ws []write) string {
	for _, w := range ws {
		if len(w.key) > MaxKeySize {
			return fmt.Sprintf("write to table %s: key of %d bytes exceeds %d", w.table, len(w.key), MaxKeySize)
		}
		if lim := m.cfg.MaxRecordBytes; lim > 0 && len(w.value) > lim {
			return fmt.Sprintf("write to table %s: value of %d bytes exceeds the changelog record limit of %d bytes (the NATS max_payload less headers)",
				w.table, len(w.value), lim)
		}
	}
	if capacity := m.cfg.CommitCapacity; capacity > 0 {
		if n := newKeys(nil, ws); n > capacity {
			return fmt.Sprintf("writes %d keys; one commit holds at most %d (exactly once: one JetStream atomic batch)", n, capacity)
		}
	}
	return ""
}

// newKeys counts the distinct keys of ws that buf does not hold.
func newKeys(buf map[string]map[string]pending, ws []write) int {
	seen := make(map[[2]string]bool, len(ws))
	for _, w := range ws {
		if _, ok := buf[w.table][w.key]; ok {
			continue
		}
		seen[[2]string{w.table, w.key}] = true
	}
	return len(seen)
}

// makeRoom commits p's buffer first if ws would take it past the commit
// capacity, waiting for p's commit in flight to end (and retrying it while
// it fails). It reports whether ws may be merged: false if p stopped being
// active meanwhile (fenced: its events are read again after the takeover)
// or ctx ended.
func (m *TableManager) makeRoom(ctx context.Context, p *partition, ws []write) bool {
	capacity := m.cfg.CommitCapacity
	if capacity <= 0 || p.keys+newKeys(p.buf, ws) <= capacity {
		return true
	}
	backoff := 100 * time.Millisecond
	for {
		if j := p.inflight; j.running() {
			select {
			case <-j.done:
			case <-ctx.Done():
				return false
			}
			if err := m.finish(p, j); err != nil && p.State() == status.StateActive {
				m.log.Warn("a full partition's commit failed; processing waits for it", "partition", p.id, "retry_in", backoff)
				if !sleep(ctx, backoff) {
					return false
				}
				backoff = min(2*backoff, 5*time.Second)
			}
		}
		if p.State() != status.StateActive || ctx.Err() != nil {
			return false
		}
		if p.inflight.running() {
			continue
		}
		if _, err := m.startCommit(ctx, p, &commitRound{start: time.Now()}); err != nil {
			m.log.Warn("commit failed", "partition", p.id, "err", err)
		}
		if !p.dirty() {
			return true
		}
	}
}

// commitFailingAfter is how long a partition's commits may fail in a row
// before the node reports itself not ready.
const commitFailingAfter = 2 * time.Second

// commitFailure is a partition's current streak of failed commits.
type commitFailure struct {
	since time.Time
	err   string
}

// noteCommit records the outcome of one of p's commits.
func (p *partition) noteCommit(err error) {
	if err == nil {
		p.failing.Store(nil)
		return
	}
	f := &commitFailure{since: time.Now(), err: err.Error()}
	if old := p.failing.Load(); old != nil {
		f.since = old.since
	}
	p.failing.Store(f)
}

// Readiness reports whether the node serves every partition it was
// assigned, and if not, why: partitions recovering or being taken back,
// fenced, or whose commits have failed for a while, and a global tables'
// copy still catching up. /readyz and the status show the reasons.
func (m *TableManager) Readiness() (ready bool, reasons []string) {
	if !m.running.Load() {
		return false, []string{"not running"}
	}
	now := time.Now()
	for _, p := range m.assigned() {
		switch p.State() {
		case status.StateRecovering, status.StateStandby:
			if b := p.behind.Load(); b != nil {
				reasons = append(reasons, fmt.Sprintf("partition %d: %s", p.id, *b))
				continue
			}
			if p.State() == status.StateStandby {
				continue
			}
			if f := p.taskFailing.Load(); f != nil {
				reasons = append(reasons, fmt.Sprintf("partition %d: recovery failing for %s (%d attempts, next in %s): %s",
					p.id, now.Sub(f.Since).Round(time.Second), f.Attempts, f.RetryIn, f.Error))
			} else {
				reasons = append(reasons, fmt.Sprintf("partition %d: recovering", p.id))
			}
		case status.StateFenced:
			if p.stale.Load() {
				reasons = append(reasons, fmt.Sprintf("partition %d: fenced by a newer owner; waiting for the assignment that says so", p.id))
			} else {
				reasons = append(reasons, fmt.Sprintf("partition %d: fenced; being taken back", p.id))
			}
		case status.StateActive:
			// A streak counts while its commit is still to be written: a
			// failed commit stays in flight until it goes through.
			if f := p.failing.Load(); f != nil && now.Sub(f.since) >= commitFailingAfter && p.hasInflight() {
				reasons = append(reasons, fmt.Sprintf("partition %d: commits failing for %s: %s", p.id, now.Sub(f.since).Round(time.Second), f.err))
			}
		}
	}
	if f := m.sourceFailing.Load(); f != nil && now.Sub(f.since) >= sourceFailingAfter {
		reasons = append(reasons, fmt.Sprintf("source: failing for %s (%d attempts): %s", now.Sub(f.since).Round(time.Second), f.attempts, f.err))
	}
	if m.global != nil && !m.global.ready.Load() {
		reasons = append(reasons, "global tables: catching up with their log")
	}
	if len(reasons) == 0 && !m.activesReady.Load() {
		reasons = append(reasons, "partitions not all active yet")
	}
	return len(reasons) == 0, reasons
}
