package jetstream

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Reader buffering: the client asks the server for up to sourcePull messages
// at a time (at most sourcePullBytes per request, or twice the connection's
// max_payload if more, so that the largest message always fits a pull), and
// the reader buffers up to sourcePull decoded messages or sourcePullBytes of
// them (subject, reply, headers and data) for Next. nats.go asks for more
// once half a pull was delivered, so the client holds at most about three
// pulls' worth: the buffer, and a pull and a half in flight.
const (
	sourcePull      = 10000
	sourcePullBytes = 4 << 20
	closeWait       = 5 * time.Second
)

// A pull request lives pullExpiry and the server sends a heartbeat every
// pullHeartbeat while it has nothing to deliver. Two missed heartbeats make
// the client pull again: that is how a reader notices that the consumer's
// leader died (nats.go's defaults, 30 s and 15 s, left a reader idle for
// half a minute after a node failed).
const (
	pullExpiry    = 5 * time.Second
	pullHeartbeat = time.Second
)

// ackTimeout bounds an Ack whose context has no deadline.
const ackTimeout = 5 * time.Second

var ackBody = []byte("+ACK")

// SourceReader implements port.SourceReader on a durable pull consumer.
// nats.go's delivery goroutine (the Consume callback) decodes messages into
// a buffer; Next takes them from it. Next and Ack may be called from
// different goroutines.
type SourceReader struct {
	nc       *nats.Conn
	stream   string
	consumer string
	log      *slog.Logger

	cc     natsjs.ConsumeContext
	ended  <-chan struct{} // closed when the consume context has stopped
	done   chan struct{}   // closed by Close
	closer sync.Once

	bufMu   sync.Mutex
	msgs    []port.SourceMessage // decoded, not yet returned by Next
	replies []ackHandle          // parallel to msgs
	bytes   int                  // payload bytes in msgs
	failed  bool                 // the callback hit an error: stop
	err     error                // the last consumer error
	ready   chan struct{}        // (cap 1) the buffer got a message, or failed
	space   chan struct{}        // (cap 1) Next took messages

	ackMu   sync.Mutex
	handles []ackHandle // returned by Next and not acked, ascending seq

	lastSeen uint64 // owned by the Consume callback
	// pending is the server's count of messages after the last one
	// delivered, when it sent that one (its NumPending).
	pending atomic.Uint64
}

var (
	_ port.SourceReader   = (*SourceReader)(nil)
	_ port.DrainingReader = (*SourceReader)(nil)
)

// Drained reports whether the last message delivered was the last one
// the server held for the reader when it sent it (its NumPending was 0).
// With nothing buffered, the reader has then caught up with the source;
// false means more messages are on their way.
func (r *SourceReader) Drained() bool {
	return r.pending.Load() == 0
}

// ackHandle keeps what acking a delivered message needs: its ack subject
// (not the message, so its data can be freed).
type ackHandle struct {
	seq   uint64
	reply string
}

func newSourceReader(nc *nats.Conn, cons natsjs.Consumer, stream, consumer string, log *slog.Logger) (*SourceReader, error) {
	r := &SourceReader{
		nc:       nc,
		stream:   stream,
		consumer: consumer,
		log:      log.With("stream", stream, "consumer", consumer),
		done:     make(chan struct{}),
		ready:    make(chan struct{}, 1),
		space:    make(chan struct{}, 1),
	}
	cc, err := cons.Consume(r.handle,
		natsjs.PullMaxMessagesWithBytesLimit(sourcePull, pullBytes(nc)),
		natsjs.PullExpiry(pullExpiry), natsjs.PullHeartbeat(pullHeartbeat),
		natsjs.ConsumeErrHandler(r.consumeErr))
	if err != nil {
		return nil, err
	}
	r.cc = cc
	r.ended = cc.Closed()
	return r, nil
}

// pullBytes is the byte limit of a source pull request on nc: a server
// refuses to deliver a message larger than the request's limit, so the
// limit is at least twice the largest message nc may carry.
func pullBytes(nc *nats.Conn) int {
	return max(sourcePullBytes, 2*int(nc.MaxPayload()))
}

// msgSize is what a buffered message counts against sourcePullBytes: its
// subject, reply subject, headers and data.
func msgSize(m *port.SourceMessage, reply int) int {
	n := len(m.Subject) + reply + len(m.Data)
	for k, vs := range m.Header {
		n += len(k)
		for _, v := range vs {
			n += len(v)
		}
	}
	return n
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// handle runs on nats.go's delivery goroutine, one message at a time. It
// blocks while the buffer is full, which stops further pull requests.
func (r *SourceReader) handle(m natsjs.Msg) {
	md, err := parseAckSeqs(m.Reply()) // Metadata's fields, without its allocations
	if err != nil {
		r.fail(fmt.Errorf("message metadata: %w", err))
		return
	}
	seq := md.stream
	if seq <= r.lastSeen {
		return // a redelivery after AckWait: already delivered in order
	}
	r.lastSeen = seq
	r.pending.Store(md.pending)
	msg := port.SourceMessage{
		Seq:     seq,
		Subject: m.Subject(),
		Header:  map[string][]string(m.Headers()),
		Data:    m.Data(),
		Time:    time.Unix(0, md.stored),
	}
	r.bufMu.Lock()
	for (len(r.msgs) >= sourcePull || r.bytes >= sourcePullBytes) && !r.failed {
		r.bufMu.Unlock()
		select {
		case <-r.space:
		case <-r.done:
			return
		}
		r.bufMu.Lock()
	}
	if r.failed {
		r.bufMu.Unlock()
		return
	}
	r.msgs = append(r.msgs, msg)
	r.replies = append(r.replies, ackHandle{seq: seq, reply: m.Reply()})
	r.bytes += msgSize(&msg, len(m.Reply()))
	first := len(r.msgs) == 1
	r.bufMu.Unlock()
	if first {
		signal(r.ready)
	}
}

func (r *SourceReader) consumeErr(_ natsjs.ConsumeContext, err error) {
	r.log.Warn("source consumer error", "err", err)
	r.bufMu.Lock()
	r.err = err
	r.bufMu.Unlock()
}

// fail stops delivery with err; Next returns it once the buffer is empty.
func (r *SourceReader) fail(err error) {
	r.log.Error("source reader failed", "err", err)
	r.bufMu.Lock()
	r.failed, r.err = true, err
	r.bufMu.Unlock()
	signal(r.ready)
}

// take removes up to limit messages from the buffer. bufMu must be held.
func (r *SourceReader) take(limit int) ([]port.SourceMessage, []ackHandle) {
	k := min(limit, len(r.msgs))
	if k == 0 {
		return nil, nil
	}
	if k == len(r.msgs) {
		out, hs := r.msgs, r.replies
		// The next batch is likely as long as this one: room for it now
		// spares the buffer growing by doubling (twice the allocation).
		r.msgs, r.replies, r.bytes = make([]port.SourceMessage, 0, k), make([]ackHandle, 0, k), 0
		return out, hs
	}
	out, hs := slices.Clone(r.msgs[:k]), slices.Clone(r.replies[:k])
	for i := range out {
		r.bytes -= msgSize(&out[i], len(hs[i].reply))
	}
	n := copy(r.msgs, r.msgs[k:])
	clear(r.msgs[n:])
	r.msgs = r.msgs[:n]
	copy(r.replies, r.replies[k:])
	clear(r.replies[n:])
	r.replies = r.replies[:n]
	return out, hs
}

func (r *SourceReader) closedErr() error {
	return fmt.Errorf("%w: consumer %s of stream %s", ErrReaderClosed, r.consumer, r.stream)
}

// endedErr is the error Next returns once consuming has ended.
func (r *SourceReader) endedErr() error {
	r.bufMu.Lock()
	defer r.bufMu.Unlock()
	if r.err != nil {
		return fmt.Errorf("%w: consumer %s of stream %s: %w", ErrReaderClosed, r.consumer, r.stream, r.err)
	}
	return r.closedErr()
}

// Next returns up to limit (at least 1) messages in sequence order. It
// waits at most wait for the first one and returns an empty slice when none
// came; further messages are taken only if already buffered, so Next never
// waits to fill a batch. After Close, or once consuming ended (the server
// deleted the consumer, the connection closed) and the buffer is empty, it
// returns an error wrapping ErrReaderClosed.
func (r *SourceReader) Next(ctx context.Context, limit int, wait time.Duration) ([]port.SourceMessage, error) {
	limit = max(limit, 1)
	var timer *time.Timer
	for {
		select {
		case <-r.done:
			return nil, r.closedErr()
		default:
		}
		r.bufMu.Lock()
		out, hs := r.take(limit)
		failed := r.failed
		r.bufMu.Unlock()
		if len(out) > 0 {
			signal(r.space)
			r.ackMu.Lock()
			r.handles = append(r.handles, hs...)
			r.ackMu.Unlock()
			return out, nil
		}
		if failed {
			return nil, r.endedErr()
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if wait <= 0 {
			return []port.SourceMessage{}, nil
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		select {
		case <-r.ready:
		case <-timer.C:
			return []port.SourceMessage{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.done:
			return nil, r.closedErr()
		case <-r.ended:
			r.bufMu.Lock()
			failed = len(r.msgs) == 0
			r.bufMu.Unlock()
			if failed {
				return nil, r.endedErr()
			}
		}
	}
}

// Ack acknowledges every delivered message up to and including seq: it
// acks (AckAll) the latest message Next delivered with a sequence <= seq and
// waits for the server's confirmation (one round trip). Messages not yet
// delivered are not acked; with nothing delivered at or below seq since the
// last Ack it does nothing. The reader keeps one ack subject per delivered,
// unacked message (bounded by SourceMaxAckPending).
func (r *SourceReader) Ack(ctx context.Context, seq uint64) error {
	r.ackMu.Lock()
	i := sort.Search(len(r.handles), func(i int) bool { return r.handles[i].seq > seq }) - 1
	if i < 0 {
		r.ackMu.Unlock()
		return nil
	}
	h := r.handles[i]
	n := copy(r.handles, r.handles[i+1:])
	r.handles = r.handles[:n]
	if cap(r.handles) > 4096 && cap(r.handles) > 4*n {
		r.handles = append([]ackHandle(nil), r.handles...)
	}
	r.ackMu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		// A consumer whose leader is gone (a paused node) never answers.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ackTimeout)
		defer cancel()
	}
	if _, err := r.nc.RequestWithContext(ctx, h.reply, ackBody); err != nil {
		r.ackMu.Lock()
		r.handles = append([]ackHandle{h}, r.handles...) // so a retry acks it again
		r.ackMu.Unlock()
		return fmt.Errorf("edgetables/jetstream: ack %d on consumer %s of stream %s: %w", h.seq, r.consumer, r.stream, err)
	}
	return nil
}

// Consumer returns the name of the reader's consumer.
func (r *SourceReader) Consumer() string { return r.consumer }

// Close stops reading and waits (up to 5 s) until nats.go has stopped
// delivering to the reader. The durable consumer stays on the server. Close
// is idempotent.
func (r *SourceReader) Close() error {
	r.closer.Do(func() {
		close(r.done)
		r.cc.Stop()
		select {
		case <-r.ended:
		case <-time.After(closeWait):
			r.log.Warn("source reader: consumer did not stop in time")
		}
	})
	return nil
}
