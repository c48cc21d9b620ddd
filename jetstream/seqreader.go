package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// readerHedges are when, from the start of a seqReader's creation, the
// first attempts to create its consumer are sent, each while the ones
// before are still unanswered; each attempt waits readerAttemptTimeout for
// its answer, and one that goes unanswered is replaced by a new one at
// once, up to readerAttempts in all. The meta leader places an R1 consumer
// on one of the stream's servers at random, possibly one that has just died
// and is not yet known dead, and that creation is never answered; a second
// attempt placed while the first waits lands on a live server two times in
// three. While the cluster has no meta leader (it died, and the others
// elect one, which takes seconds) no creation is answered, nor is one sent
// during the election once it is over: the attempts in flight then make
// sure one is sent soon after it. (nats.go's ordered consumer, v1.55.0 and v1.56.0,
// waits 10 s for each answer, with no way to shorten it, which held up
// promoted standbys that had to replay.)
var readerHedges = []time.Duration{0, 300 * time.Millisecond, time.Second}

// readerAttemptTimeout bounds one attempt to create a seqReader's consumer;
// readerAttempts bounds their number.
const (
	readerAttemptTimeout = 2 * time.Second
	readerAttempts       = 16
)

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
	wait      idleWait // the context of it.Next: next's maxWait
	delivered uint64   // consumer sequence of the last message read
}

// openSeqReader creates a reader of stream from sequence from (see
// readerHedges).
func (c *Changelog) openSeqReader(ctx context.Context, stream string, from uint64) (*seqReader, error) {
	cons, err := createHedged(ctx, c.js, &c.drops, stream, "edgetables_read_", natsjs.ConsumerConfig{
		DeliverPolicy:     natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:       max(from, 1),
		AckPolicy:         natsjs.AckNonePolicy,
		InactiveThreshold: time.Minute,
		Replicas:          1,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages(natsjs.PullMaxMessagesWithBytesLimit(replayPull, replayPullBytes),
		natsjs.PullExpiry(pullExpiry), natsjs.PullHeartbeat(pullHeartbeat), natsjs.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		c.dropConsumer(stream, cons)
		return nil, err
	}
	return &seqReader{c: c, stream: stream, cons: cons, it: it, unwatch: context.AfterFunc(ctx, it.Stop)}, nil
}

// createAttempt is the outcome of one attempt to create a consumer.
type createAttempt struct {
	name string
	cons natsjs.Consumer
	err  error
}

// createHedged creates a consumer of stream with cfg, each attempt under a
// name of its own made of prefix and a unique suffix. It sends the first
// attempts at readerHedges while none has succeeded, and another at once
// when one goes unanswered (readerAttempts at most). It returns the first
// consumer created, or the error of an attempt that was answered with one
// (the stream is gone, say), or the last one's error when every attempt
// went unanswered. Attempts still out when it returns are collected in the
// background, in drops: a consumer they create after all is deleted.
func createHedged(ctx context.Context, js natsjs.JetStream, drops *sync.WaitGroup, stream, prefix string, cfg natsjs.ConsumerConfig) (natsjs.Consumer, error) {
	results := make(chan createAttempt, readerAttempts)
	sent, out := 0, 0
	send := func() {
		cfg := cfg
		cfg.Name = prefix + nuid.Next()
		sent++
		out++
		go func() {
			actx, cancel := context.WithTimeout(ctx, readerAttemptTimeout)
			defer cancel()
			cons, err := js.CreateConsumer(actx, stream, cfg)
			if err != nil && unanswered(err) {
				// Failed at once (no responders): report it when its time
				// is up, so the attempts sent in its place stay few.
				<-actx.Done()
			}
			results <- createAttempt{name: cfg.Name, cons: cons, err: err}
		}()
	}
	drop := func(name string) {
		ctx, cancel := context.WithTimeout(context.Background(), consumerDropTimeout)
		_ = js.DeleteConsumer(ctx, stream, name)
		cancel()
	}
	// collect waits, in the background, for the attempts still out and
	// deletes what they created.
	collect := func() {
		n := out
		drops.Go(func() {
			for range n {
				drop((<-results).name)
			}
		})
	}
	start := time.Now()
	send()
	hedge := time.NewTimer(readerHedges[1])
	defer hedge.Stop()
	for {
		select {
		case a := <-results:
			out--
			switch {
			case a.err == nil:
				collect()
				return a.cons, nil
			case ctx.Err() != nil:
				collect()
				return nil, ctx.Err()
			case !unanswered(a.err):
				collect()
				return nil, fmt.Errorf("create a consumer: %w", a.err)
			}
			// An unanswered attempt may still create its consumer.
			drops.Go(func() { drop(a.name) })
			switch {
			case sent < readerAttempts:
				send()
			case out == 0:
				return nil, fmt.Errorf("create a consumer: %d attempts unanswered: %w", sent, a.err)
			}
		case <-hedge.C:
			if sent < len(readerHedges) {
				send()
			}
			if sent < len(readerHedges) {
				hedge.Reset(readerHedges[sent] - time.Since(start))
			}
		case <-ctx.Done():
			collect()
			return nil, ctx.Err()
		}
	}
}

// unanswered says whether err is a request that got no answer, or none
// from a leader: worth sending again at once.
func unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, natsjs.ErrNoStreamResponse)
}

// next returns the next message and its sequences, or nats.ErrTimeout when
// none came within maxWait, or an error wrapping errReaderGap when the
// consumer skipped one.
func (r *seqReader) next(maxWait time.Duration) (natsjs.Msg, ackSeqs, error) {
	r.wait.begin(maxWait)
	msg, err := r.it.Next(natsjs.NextContext(&r.wait))
	if err != nil {
		if errors.Is(err, errIdleWait) {
			err = nats.ErrTimeout
		}
		return nil, ackSeqs{}, err
	}
	md, err := parseAckSeqs(msg.Reply())
	if err != nil {
		return nil, ackSeqs{}, err
	}
	if md.consumer != r.delivered+1 {
		return nil, ackSeqs{}, fmt.Errorf("%w: consumer sequence %d after %d (stream sequence %d)", errReaderGap, md.consumer, r.delivered, md.stream)
	}
	r.delivered = md.consumer
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
	r.wait.stop()
	r.c.dropConsumer(r.stream, r.cons)
}
