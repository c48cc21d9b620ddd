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
// ctx ends, or the first error of fn or of the read. Standby replicas use it.
// The cost is one ordered consumer for as long as Follow runs.
func (c *Changelog) Follow(ctx context.Context, p int, from uint64, batchSize int, fn func([]port.Entry) error) error {
	if err := c.checkPartition(p); err != nil {
		return err
	}
	if batchSize <= 0 {
		batchSize = DefaultReplayBatch
	}
	stream := c.streams[p]
	cons, err := c.js.OrderedConsumer(ctx, stream, natsjs.OrderedConsumerConfig{
		DeliverPolicy:     natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:       max(from, 1),
		InactiveThreshold: time.Minute,
		// Unlimited by default: a consumer that cannot be recreated (no
		// meta leader) would keep Next, and so the standby's task, busy
		// for ever. The task retries instead, watching its context.
		MaxResetAttempts: 3,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("edgetables/jetstream: follow partition %d (stream %s) from %d: %w", p, stream, from, err)
	}
	it, err := cons.Messages(natsjs.PullMaxMessagesWithBytesLimit(replayPull, replayPullBytes),
		natsjs.PullExpiry(pullExpiry), natsjs.PullHeartbeat(pullHeartbeat))
	if err != nil {
		return fmt.Errorf("edgetables/jetstream: follow partition %d (stream %s) from %d: %w", p, stream, from, err)
	}
	// Next does not watch ctx while the ordered consumer recreates itself;
	// stopping the iterator ends that too.
	unwatch := context.AfterFunc(ctx, it.Stop)
	defer func() {
		unwatch()
		it.Stop()
		c.dropConsumer(stream, cons)
	}()
	var batch []port.Entry
	next := max(from, 1)  // the sequence the follower waits for
	lastMsg := time.Now() // when a message last came, or the log was checked
	for {
		msg, err := it.Next(natsjs.NextMaxWait(followFlush))
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
			return fmt.Errorf("edgetables/jetstream: follow partition %d (stream %s): %w", p, stream, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("edgetables/jetstream: follow partition %d (stream %s): %w", p, stream, err)
		}
		e, err := c.decode(p, md.Sequence.Stream, msg)
		if err != nil {
			return err
		}
		next, lastMsg = md.Sequence.Stream+1, time.Now()
		batch = append(batch, e)
		if len(batch) >= batchSize || md.NumPending == 0 {
			if err := fn(batch); err != nil {
				return err
			}
			batch = nil
		}
	}
}
