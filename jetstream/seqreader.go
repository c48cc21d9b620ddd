package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// readerCreateAttempts are the timeouts of the attempts to create a
// seqReader's consumer, each made when the one before went unanswered. The meta leader places an R1 consumer on one of the stream's
// servers, possibly one that has just died and is not yet known dead; the
// creation request then gets no answer, and a new attempt is placed again.
// nats.go's ordered consumer (v1.55.0) waits 10 s for each answer, with no
// way to shorten it, which held up promoted standbys that had to replay.
var readerCreateAttempts = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}

// maxReaderReopens is how many times one Replay replaces a lost consumer
// before it gives up and lets its caller retry.
const maxReaderReopens = 3

// errReaderGap means a seqReader's consumer skipped a message: the read
// cannot be trusted from there on.
var errReaderGap = errors.New("edgetables/jetstream: changelog read skipped a message")

// seqReader reads one stream in order from a start sequence on an ephemeral
// consumer it creates (acks off, in memory, one replica) and deletes. Unlike
// nats.go's ordered consumer it does not recreate its consumer: missed
// heartbeats (the consumer was lost with its server) or a skipped message
// are errors of next, and the caller goes on from where it got to on a new
// reader.
type seqReader struct {
	c         *Changelog
	stream    string
	cons      natsjs.Consumer
	it        natsjs.MessagesContext
	unwatch   func() bool
	delivered uint64 // consumer sequence of the last message read
}

// openSeqReader creates a reader of stream from sequence from, retrying
// unanswered creations (readerCreateAttempts).
func (c *Changelog) openSeqReader(ctx context.Context, stream string, from uint64) (*seqReader, error) {
	cfg := natsjs.ConsumerConfig{
		DeliverPolicy:     natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:       max(from, 1),
		AckPolicy:         natsjs.AckNonePolicy,
		InactiveThreshold: time.Minute,
		Replicas:          1,
		MemoryStorage:     true,
	}
	var cons natsjs.Consumer
	for attempt, wait := range readerCreateAttempts {
		cfg.Name = "edgetables_read_" + nuid.Next()
		actx, cancel := context.WithTimeout(ctx, wait)
		var err error
		cons, err = c.js.CreateConsumer(actx, stream, cfg)
		cancel()
		if err == nil {
			break
		}
		// An unanswered attempt may still create its consumer later.
		c.dropConsumerNamed(stream, cfg.Name)
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case attempt == len(readerCreateAttempts)-1 || !unanswered(err):
			return nil, fmt.Errorf("create a consumer (attempt %d): %w", attempt+1, err)
		}
	}
	it, err := cons.Messages(natsjs.PullMaxMessagesWithBytesLimit(replayPull, replayPullBytes),
		natsjs.PullExpiry(pullExpiry), natsjs.PullHeartbeat(pullHeartbeat), natsjs.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		c.dropConsumerNamed(stream, cfg.Name)
		return nil, err
	}
	return &seqReader{c: c, stream: stream, cons: cons, it: it, unwatch: context.AfterFunc(ctx, it.Stop)}, nil
}

// unanswered says whether err is a request that got no answer, or none
// from a leader: worth sending again at once.
func unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, natsjs.ErrNoStreamResponse)
}

// next returns the next message and its metadata, or nats.ErrTimeout when
// none came within maxWait, or an error wrapping errReaderGap when the
// consumer skipped one.
func (r *seqReader) next(maxWait time.Duration) (natsjs.Msg, *natsjs.MsgMetadata, error) {
	msg, err := r.it.Next(natsjs.NextMaxWait(maxWait))
	if err != nil {
		return nil, nil, err
	}
	md, err := msg.Metadata()
	if err != nil {
		return nil, nil, err
	}
	if md.Sequence.Consumer != r.delivered+1 {
		return nil, nil, fmt.Errorf("%w: consumer sequence %d after %d (stream sequence %d)", errReaderGap, md.Sequence.Consumer, r.delivered, md.Sequence.Stream)
	}
	r.delivered = md.Sequence.Consumer
	return msg, md, nil
}

// close stops the reader and deletes its consumer in the background. A nil
// reader is closed.
func (r *seqReader) close() {
	if r == nil {
		return
	}
	r.unwatch()
	r.it.Stop()
	r.c.dropConsumer(r.stream, r.cons)
}

// dropConsumerNamed is dropConsumer for a consumer known by name only.
func (c *Changelog) dropConsumerNamed(stream, name string) {
	c.drops.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), consumerDropTimeout)
		defer cancel()
		_ = c.js.DeleteConsumer(ctx, stream, name)
	})
}
