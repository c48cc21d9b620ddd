package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/port"
)

// followFlush is how long Follow waits for a message before it applies
// the entries it holds; followStall how long it waits before it asks the
// log whether it missed something.
const (
	followFlush = 200 * time.Millisecond
	followStall = 5 * time.Second
)

// Follow reads partition p's log from sequence from (inclusive) and keeps
// reading as it grows, calling fn with batches of at most batchSize entries
// in sequence order. A batch is passed when it is full or when the reader
// has caught up with the log's end, so a follower lags by at most one batch
// while the log grows and by nothing once it is idle. Follow returns nil when
// ctx ends, or the first error of fn or of the read. A consumer lost with
// its server (two missed heartbeats) or one that skips a message is
// replaced by one reading on from the next sequence. Standby replicas use
// it. The cost is one consumer for as long as Follow runs.
func (c *Changelog) Follow(ctx context.Context, p int, from uint64, batchSize int, fn func([]port.Entry) error) error {
	if err := c.checkPartition(p); err != nil {
		return err
	}
	if batchSize <= 0 {
		batchSize = DefaultReplayBatch
	}
	stream := c.streams[p]
	r, err := c.openSeqReader(ctx, stream, max(from, 1))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("edgetables/jetstream: follow partition %d (stream %s) from %d: %w", p, stream, from, err)
	}
	defer func() { r.close() }()
	var batch []port.Entry
	next := max(from, 1)  // the sequence the follower waits for
	lastMsg := time.Now() // when a message last came, or the log was checked
	barren := 0           // consumers in a row that failed before delivering
	for {
		msg, md, err := r.next(followFlush)
		if errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			// Quiet log: apply what was read (a message's NumPending is
			// not reliable on replicated streams, so the batch may not
			// have been passed when its last message came).
			if len(batch) > 0 {
				if err := fn(batch); err != nil {
					return err
				}
				batch = nil
			}
			// A consumer lost with a node can stay silent although the
			// log grows: then end, and the caller follows afresh.
			if time.Since(lastMsg) >= followStall {
				lastMsg = time.Now()
				if st, err := c.State(ctx, p); err == nil && st.Last >= next {
					return fmt.Errorf("edgetables/jetstream: follow partition %d (stream %s): nothing came for %s although the log holds %d (waiting for %d)",
						p, stream, followStall, st.Last, next)
				}
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, natsjs.ErrMsgIteratorClosed) {
				return nil
			}
			// The consumer was lost with its server, or skipped a
			// message: go on from next on a new one, unless consumers keep
			// failing before they deliver anything (the caller then
			// retries after a pause).
			if r.delivered > 0 {
				barren = 0
			} else if barren++; barren >= maxReaderReopens {
				return fmt.Errorf("edgetables/jetstream: follow partition %d (stream %s) at %d: %w", p, stream, next, err)
			}
			c.logger().Info("follower: replacing its consumer", "partition", p, "stream", stream, "at", next, "err", err)
			r.close()
			if r, err = c.openSeqReader(ctx, stream, next); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("edgetables/jetstream: follow partition %d (stream %s) at %d: %w", p, stream, next, err)
			}
			lastMsg = time.Now()
			continue
		}
		e, err := c.decode(p, md.stream, msg)
		if err != nil {
			return err
		}
		next, lastMsg = md.stream+1, time.Now()
		batch = append(batch, e)
		if len(batch) >= batchSize || md.pending == 0 {
			if err := fn(batch); err != nil {
				return err
			}
			batch = nil
		}
	}
}
