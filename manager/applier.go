package manager

import (
	"context"
	"fmt"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/store"
)

// applyQueue is how many replayed batches may wait for the store while it
// writes another one. A replay holds at most applyQueue+2 batches (one
// being read, the queue, one being written): replayBatch divides the
// recovery buffer by that, so the buffer still bounds the records in
// memory. None wait: the replay reads the next batch while the store
// writes one, in batches of half the buffer; batches of a quarter with two
// queued made more, smaller transactions, each rewriting the pages of the
// store that they touch, and recovered no faster (recovery bench, 2 runs
// each: 0.51–0.52 against 0.48–0.51 of raw).
const applyQueue = 0

// replayBatch returns the size of the batches a pipelined replay reads
// with a recovery buffer of buffer records.
func replayBatch(buffer int) int {
	return max(1, buffer/(applyQueue+2))
}

// applier writes the batches of a replay to a partition's store in a
// goroutine of its own, so that the replay reads on while the store
// writes (recoverActive's replay used to wait for each transaction before
// it read the next batch). It applies the batches in order with
// recovery.apply, which keeps its checks and advances the partition's
// offsets only once a batch is in the store; batches that queued up while
// it wrote are written together, in one transaction. It stops at the
// first error, or when its context ends, applying nothing more.
//
// The goroutine that starts it owns it: it calls add for every batch and
// then wait, on every path, which returns once the applier has stopped.
// Until wait returns, only the applier touches the partition's offsets
// and store.
type applier struct {
	queue chan []port.Entry
	done  chan struct{} // closed when the applier's goroutine returned
	err   error         // why it stopped early; read after done is closed
}

// startApplier starts applying the batches added to it to p's store.
// after, if set, is called in the applier's goroutine with the number of
// entries of each transaction written.
func (r *recovery) startApplier(ctx context.Context, p *partition, after func(n int)) *applier {
	a := &applier{queue: make(chan []port.Entry, applyQueue), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for es := range a.queue {
			es = a.gather(es)
			if err := ctx.Err(); err != nil {
				a.err = err
				return
			}
			if err := r.apply(p, es); err != nil {
				a.err = err
				return
			}
			if after != nil {
				after(len(es))
			}
		}
	}()
	return a
}

// gather appends to es the batches waiting in the queue.
func (a *applier) gather(es []port.Entry) []port.Entry {
	for {
		select {
		case more, ok := <-a.queue:
			if !ok {
				return es
			}
			es = append(es, more...)
		default:
			return es
		}
	}
}

// add hands es to the applier, waiting while its queue is full. It
// returns the applier's error if it stopped (its context ended, or a
// transaction failed), and the error of ctx when ctx ends first. es must
// not be modified afterwards.
func (a *applier) add(ctx context.Context, es []port.Entry) error {
	select {
	case <-a.done:
		return a.err
	default:
	}
	select {
	case a.queue <- es:
		return nil
	case <-a.done:
		return a.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait tells the applier that no batch follows and waits until it has
// written those queued (or stopped); it returns the applier's error.
func (a *applier) wait() error {
	close(a.queue)
	<-a.done
	return a.err
}

// rebuilder is a store that can be filled without syncing every
// transaction (store.Bolt; see store/rebuild.go).
type rebuilder interface {
	StartRebuild() error
	EndRebuild() error
}

// startRebuild stops syncing st's transactions, marking it so that it is
// rebuilt after a crash, if st can.
func startRebuild(st store.Store) error {
	if rb, ok := st.(rebuilder); ok {
		if err := rb.StartRebuild(); err != nil {
			return err
		}
	}
	return nil
}

// endRebuild syncs st and removes its mark if startRebuild marked it.
func endRebuild(st store.Store) error {
	if rb, ok := st.(rebuilder); ok {
		if err := rb.EndRebuild(); err != nil {
			return fmt.Errorf("sync the rebuilt store: %w", err)
		}
	}
	return nil
}
