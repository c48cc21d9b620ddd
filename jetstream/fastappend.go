package jetstream

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// Fast batch flow control of an at-least-once Append: the server acks every
// fastFlow messages (at most; it may ask for acks more often), and the
// publisher waits once fastFlow*fastOutstanding messages are unacked.
const (
	fastFlow        = 500
	fastOutstanding = 4
)

// errCodeBatchPublishDisabled is nats-server 2.15's refusal of a fast batch
// by a stream without AllowBatchPublish.
const errCodeBatchPublishDisabled = 10205

// appendFast writes msgs to partition p as one JetStream fast batch
// (orbit.go jetstreamext.FastPublisher): the server stores each message as
// it arrives, without staging, and acknowledges every few hundred. Each
// message carries Nats-Expected-Last-Sequence, its predecessor's sequence
// (expectLast for the first): a message that does not extend the log as
// this writer expects (another writer appended meanwhile) is refused, and
// with it the batch ends, in the server's default gap mode ("fail"), so
// every later message of it is refused too. What is stored after an error
// is therefore a prefix of msgs, right after expectLast, and never lands
// after another writer's messages. It returns the last message's sequence.
//
// It is the at-least-once Append: unlike an atomic batch it does not store
// all or nothing, but a commit's records without their marker are what a
// failed at-least-once Append of several atomic batches may leave too.
//
// An Append given up before its commit (its context ends, BeforeCommit
// fails) ends its batch. One that times out waiting for the server's acks
// mid-batch leaves the publisher's subscription to them behind:
// jetstreamext v0.4.0 drops it on every other end of a batch, not there.
//
// ok is false when the stream refuses fast batches (AllowBatchPublish was
// turned off, by an older edgetables or by hand): nothing was stored.
//
// A single message (a commit without records) goes as a plain publish
// instead (appendOne).
func (c *Changelog) appendFast(ctx context.Context, p int, expectLast uint64, msgs []*nats.Msg) (last uint64, ok bool, err error) {
	n := len(msgs)
	if n == 1 {
		last, err := c.appendOne(ctx, p, expectLast, msgs[0])
		return last, true, err
	}
	var (
		mu        sync.Mutex
		serverErr error // the first error the server reported on the side
	)
	fp, err := jetstreamext.NewFastPublisher(c.js,
		jetstreamext.FastPublishFlowControl{Flow: fastFlow, MaxOutstandingAcks: fastOutstanding, AckTimeout: ackWait(ctx)},
		jetstreamext.WithFastPublisherErrorHandler(func(err error) {
			mu.Lock()
			defer mu.Unlock()
			if serverErr == nil {
				serverErr = err
			}
		}))
	if err != nil {
		return 0, true, fmt.Errorf("edgetables/jetstream: append to partition %d: %w", p, err)
	}
	// fail explains an error of message i: the first reason the server
	// gave on the side if it gave one (a fenced writer: what follows is
	// the batch ended because of it), else err.
	fail := func(i int, err error) error {
		mu.Lock()
		cause := serverErr
		mu.Unlock()
		if cause == nil {
			cause = err
		}
		return batchError(fmt.Errorf("edgetables/jetstream: append to partition %d (stream %s, after %d): message %d of %d: %w",
			p, c.streams[p], expectLast, i+1, n, cause))
	}
	// abandon ends a batch this Append gives up before its commit: an end
	// of batch, which stores nothing, sent without waiting for its answer,
	// so that the publisher drops its subscription to the server's acks.
	abandon := func() {
		done, cancel := context.WithCancel(context.Background())
		cancel()
		_, _ = fp.Close(done)
	}
	for i, m := range msgs {
		m.Header.Set(nats.ExpectedLastSeqHdr, strconv.FormatUint(expectLast+uint64(i), 10))
		if i == n-1 {
			if c.cfg.BeforeCommit != nil {
				if err := c.cfg.BeforeCommit(p, 0); err != nil {
					abandon()
					return 0, true, fmt.Errorf("edgetables/jetstream: append to partition %d: batch abandoned before its commit (%d of %d messages sent): %w", p, n-1, n, err)
				}
			}
			ack, err := fp.CommitMsg(ctx, m)
			if err == nil && ack.Sequence != expectLast+uint64(n) {
				err = fmt.Errorf("the batch ended at %d, want %d", ack.Sequence, expectLast+uint64(n))
			}
			if i == 0 && refusesFastBatches(err) {
				return 0, false, nil
			}
			if err != nil {
				return 0, true, fail(i, err)
			}
			return ack.Sequence, true, nil
		}
		if err := ctx.Err(); err != nil {
			abandon()
			return 0, true, fail(i, err)
		}
		if _, err := fp.AddMsg(m); err != nil {
			if i == 0 && refusesFastBatches(err) {
				return 0, false, nil
			}
			return 0, true, fail(i, err)
		}
		if c.afterAdd != nil {
			c.afterAdd(p, i)
		}
	}
	return 0, true, fmt.Errorf("edgetables/jetstream: append to partition %d: empty batch", p)
}

// appendOne writes m, a commit without records (its marker alone), to
// partition p as one JetStream publish expecting the log to end at
// expectLast: a single message is stored or not by itself and needs no
// batch. A fast batch would do worse here: jetstreamext v0.4.0's fast
// publisher, given a batch whose first message is its commit, knows no
// subject to ping the server on when the acknowledgement is slow, and
// fails the commit a third of the way into its wait ("ping failed: nats:
// invalid subject") instead of waiting it out.
func (c *Changelog) appendOne(ctx context.Context, p int, expectLast uint64, m *nats.Msg) (uint64, error) {
	if c.cfg.BeforeCommit != nil {
		if err := c.cfg.BeforeCommit(p, 0); err != nil {
			return 0, fmt.Errorf("edgetables/jetstream: append to partition %d: abandoned before its commit (0 of 1 messages sent): %w", p, err)
		}
	}
	m.Header.Set(nats.ExpectedLastSeqHdr, strconv.FormatUint(expectLast, 10))
	ack, err := c.js.PublishMsg(ctx, m, natsjs.WithExpectStream(c.streams[p]))
	if err == nil && ack.Sequence != expectLast+1 {
		err = fmt.Errorf("stored at %d, want %d", ack.Sequence, expectLast+1)
	}
	if err != nil {
		return 0, batchError(fmt.Errorf("edgetables/jetstream: append to partition %d (stream %s, after %d): message 1 of 1: %w",
			p, c.streams[p], expectLast, err))
	}
	return ack.Sequence, nil
}

// refusesFastBatches reports whether err is a stream's refusal of fast
// batches (it lacks AllowBatchPublish).
func refusesFastBatches(err error) bool {
	return apiErrorCode(err) == errCodeBatchPublishDisabled
}
