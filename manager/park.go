package manager

import (
	"context"
	"time"

	"github.com/edgetables/edgetables/manager/status"
)

// One failing partition must not stop the others. A partition whose
// buffer is full (it holds the most uncommitted keys a commit may) must
// commit before it takes more events; if its changelog does not answer,
// the processing goroutine used to wait for it, and with it every other
// partition. Instead such a partition is parked: it keeps its writes and
// keeps retrying its commit in the background, but takes no events (its
// memory stays bounded by the buffer), and it is detached from the reader,
// keeping what it covers. Once its commits go through and its buffer has
// room again, it is unparked and the source is read again from what it
// covers (the others skip what they covered). The partition shows as not
// ready while its commits fail; the source trim waits for its changelog.

// parkAfter is how long the processing goroutine waits for a full
// partition's commit in flight before it parks the partition.
const parkAfter = time.Second

// park stops p taking events until its commits go through.
func (m *TableManager) park(p *partition, why string) {
	if p.parked {
		return
	}
	if p.attached {
		p.covered = max(p.covered, m.examined)
		p.attached = false
	}
	p.parked = true
	m.log.Warn("partition parked: its buffer is full and it cannot commit; the other partitions go on, and its events are read again once it commits",
		"partition", p.id, "covered_source_seq", p.covered, "why", why)
}

// unpark lets the parked partitions whose commits went through (nothing in
// flight, room in the buffer) take events again, reading the source again
// from the lowest position of the active partitions.
func (m *TableManager) unpark(ctx context.Context) {
	any := false
	for _, p := range m.assigned() {
		if !p.parked || p.State() != status.StateActive {
			continue
		}
		if p.inflight != nil || p.bufferedKeys() >= m.commitLimit() {
			if !p.inflight.running() && time.Now().After(p.parkRetryAt) {
				// The failed commit is written again, now and then.
				p.parkBackoff = min(max(2*p.parkBackoff, 100*time.Millisecond), 5*time.Second)
				p.parkRetryAt = time.Now().Add(p.parkBackoff)
				if _, err := m.startCommit(ctx, p, &commitRound{start: time.Now()}); err != nil {
					m.log.Warn("commit failed", "partition", p.id, "err", err)
				}
			}
			continue
		}
		p.parked, p.parkBackoff = false, 0
		any = true
		m.log.Info("partition unparked: its commits go through again", "partition", p.id, "source_seq", p.sourceSeq.Load())
	}
	if any {
		m.reposition(ctx)
	}
}
