package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// MaxConcurrentQueries is how many queries ServeQueries handles at once;
// further requests wait in the subscription's buffer.
const MaxConcurrentQueries = 64

// HeaderQueryTimeout carries the time the requester still waits for the
// answer, in milliseconds; the handler's context ends then.
const HeaderQueryTimeout = "Edgetables-Timeout"

// defaultQueryTimeout bounds a handler's context when the request has no
// HeaderQueryTimeout.
const defaultQueryTimeout = 30 * time.Second

// ServeQueries answers the requests sent to node of app (QuerySubject:
// "<app>.query.<node>") with h, over core NATS request/reply (no JetStream,
// nothing stored). Each request runs h in its own goroutine, at most
// MaxConcurrentQueries at a time; h's context ends when the requester stops
// waiting (HeaderQueryTimeout; 30 s without it). The payload formats are
// the caller's. The subscription is registered with the server before
// ServeQueries returns; in a cluster it reaches the other servers shortly
// after.
//
// stop unsubscribes, drops the requests not yet started, and waits for the
// running handlers to finish and answer (their contexts are not cancelled).
// It is idempotent and safe for concurrent use.
func ServeQueries(nc *nats.Conn, app, node string, h func(ctx context.Context, req []byte) []byte) (stop func(), err error) {
	if err := ValidateApp(app); err != nil {
		return nil, err
	}
	if err := ValidateNode(node); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("edgetables/jetstream: ServeQueries: nil handler")
	}
	subject := QuerySubject(app, node)
	log := slog.Default().With("component", "queries", "app", app, "node", node)
	var (
		mu      sync.Mutex // orders wg.Add against stop's wg.Wait
		wg      sync.WaitGroup
		done    = make(chan struct{})
		sem     = make(chan struct{}, MaxConcurrentQueries)
		stopped bool
	)
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		select {
		case sem <- struct{}{}:
		case <-done:
			return
		}
		mu.Lock()
		if stopped {
			mu.Unlock()
			<-sem
			return
		}
		wg.Add(1)
		mu.Unlock()
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := queryContext(m)
			defer cancel()
			resp := h(ctx, m.Data)
			if m.Reply == "" {
				return
			}
			if err := m.Respond(resp); err != nil {
				log.Warn("cannot answer query", "subject", subject, "err", err)
			}
		}()
	})
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: serve queries of node %s (app %s): subscribe %s: %w", node, app, subject, err)
	}
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("edgetables/jetstream: serve queries of node %s (app %s): flush subscription %s: %w", node, app, subject, err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			mu.Lock()
			stopped = true
			close(done)
			mu.Unlock()
			if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				log.Warn("cannot unsubscribe queries", "subject", subject, "err", err)
			}
			wg.Wait()
		})
	}
	return stop, nil
}

// queryContext is the context of the handler of m: it ends when the
// requester stops waiting, at most defaultQueryTimeout from now.
func queryContext(m *nats.Msg) (context.Context, context.CancelFunc) {
	d := defaultQueryTimeout
	// At most the default: a larger number would overflow a Duration
	// (and end the context at once), and no query needs longer.
	if ms, err := strconv.ParseInt(m.Header.Get(HeaderQueryTimeout), 10, 64); err == nil && ms > 0 && ms < d.Milliseconds() {
		d = time.Duration(ms) * time.Millisecond
	}
	return context.WithTimeout(context.Background(), d)
}

// Query sends req to node of app (see ServeQueries) and returns the answer.
// It waits until ctx ends (the handler's context ends at the same time if
// ctx has a deadline). If no node serves that subject it returns an error
// wrapping ErrNoResponder at once. One request and one reply over core NATS.
func Query(ctx context.Context, nc *nats.Conn, app, node string, req []byte) ([]byte, error) {
	if err := ValidateApp(app); err != nil {
		return nil, err
	}
	if err := ValidateNode(node); err != nil {
		return nil, err
	}
	m := nats.NewMsg(QuerySubject(app, node))
	m.Data = req
	if dl, ok := ctx.Deadline(); ok {
		m.Header.Set(HeaderQueryTimeout, strconv.FormatInt(max(time.Until(dl).Milliseconds(), 1), 10))
	}
	resp, err := nc.RequestMsgWithContext(ctx, m)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("%w: node %s of app %s (%s): %w", ErrNoResponder, node, app, m.Subject, err)
	case err != nil:
		return nil, fmt.Errorf("edgetables/jetstream: query node %s of app %s (%s): %w", node, app, m.Subject, err)
	}
	return resp.Data, nil
}
