package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// payloadSize is the size of every event payload: a JSON object.
const payloadSize = 100

// payload returns a JSON object of exactly payloadSize bytes (for values
// below 10^60) whose "value" is v: {"value":v,"pad":"xx…x"}.
func payload(v int) []byte {
	b := make([]byte, 0, payloadSize)
	b = append(b, `{"value":`...)
	b = strconv.AppendInt(b, int64(v), 10)
	b = append(b, `,"pad":"`...)
	for len(b) < payloadSize-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

// keyName is the name of key number i: "k<i>".
func keyName(i int) string { return "k" + strconv.Itoa(i) }

// loadChunk is the number of messages the loader sends before it waits
// for the stream to store them: it bounds what the server holds unstored.
const loadChunk = 20_000

// loadStall is how long the loader waits for a stream that stores nothing
// before it gives up (the server dropped messages).
const loadStall = 30 * time.Second

// publisher loads streams with data before a measurement: core NATS
// publishes (no acknowledgement per message, which more than doubles the
// rate), flushed in chunks of loadChunk, each chunk waiting until the
// stream has stored the chunk before the previous one. The stream's last
// sequence tells what was stored, so a message the server dropped stops the
// load with an error instead of going unnoticed.
type publisher struct {
	nc *nats.Conn
	js natsjs.JetStream
}

func newPublisher(nc *nats.Conn) (*publisher, error) {
	js, err := natsjs.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bench: publisher: %w", err)
	}
	return &publisher{nc: nc, js: js}, nil
}

// publish publishes n messages made by gen, all captured by stream, and
// returns once the stream has stored every one.
func (p *publisher) publish(ctx context.Context, stream string, n int, gen func(i int) (subject string, data []byte)) error {
	st, err := p.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("load stream %s: %w", stream, err)
	}
	base := st.CachedInfo().State.LastSeq
	for i := 0; i < n; i++ {
		subj, data := gen(i)
		if err := p.nc.Publish(subj, data); err != nil {
			return fmt.Errorf("publish %d of %d to %s: %w", i+1, n, subj, err)
		}
		if sent := i + 1; sent%loadChunk == 0 || sent == n {
			fctx, cancel := context.WithTimeout(ctx, loadStall)
			err := p.nc.FlushWithContext(fctx)
			cancel()
			if err != nil {
				return fmt.Errorf("load stream %s: flush: %w", stream, err)
			}
			want := base + uint64(sent)
			if sent < n {
				want -= loadChunk // let one chunk be in flight
			}
			if err := p.waitStored(ctx, st, want); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitStored waits until the stream's last sequence reaches seq.
func (p *publisher) waitStored(ctx context.Context, st natsjs.Stream, seq uint64) error {
	last, progress := uint64(0), time.Now()
	for {
		info, err := st.Info(ctx)
		if err != nil {
			return fmt.Errorf("load stream %s: %w", st.CachedInfo().Config.Name, err)
		}
		if info.State.LastSeq >= seq {
			return nil
		}
		if info.State.LastSeq != last {
			last, progress = info.State.LastSeq, time.Now()
		} else if time.Since(progress) > loadStall {
			return fmt.Errorf("load stream %s: stuck at sequence %d for %s, want %d: the server dropped messages", info.Config.Name, last, loadStall, seq)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// waitPublished waits until every async publish of js is acknowledged.
func waitPublished(ctx context.Context, js natsjs.JetStream) error {
	t := time.NewTimer(phaseTimeout)
	defer t.Stop()
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for publish acks: %w", ctx.Err())
	case <-t.C:
		return fmt.Errorf("waiting for publish acks: %d pending after %s", js.PublishAsyncPending(), phaseTimeout)
	}
}

// errCount counts errors from concurrent callbacks.
type errCount struct {
	n     atomic.Int64
	first atomic.Value // error
}

func (c *errCount) add(err error) {
	if c.n.Add(1) == 1 {
		c.first.Store(err)
	}
}

func (c *errCount) err() error {
	if n := c.n.Load(); n > 0 {
		first, _ := c.first.Load().(error)
		return fmt.Errorf("%d errors, the first: %w", n, first)
	}
	return nil
}
