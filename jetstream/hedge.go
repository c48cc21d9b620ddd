package jetstream

import (
	"context"
	"time"
)

// hedged calls f, and again every `every` until a call returns anything
// but an unanswered error (see unanswered), at most attempts calls in all,
// each bounded by per. It returns that first answer (a result or another
// error), or the last unanswered error once every call ended.
//
// A JetStream API request sent while a stream elects a leader is never
// answered: it waits out its whole timeout even when the leader is
// elected a moment later. Hedged, a request sent after the election
// answers at once.
func hedged[T any](ctx context.Context, every, per time.Duration, attempts int, f func(context.Context) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the calls still out end with it
	results := make(chan result, attempts)
	call := func() {
		go func() {
			actx, cancel := context.WithTimeout(ctx, per)
			defer cancel()
			v, err := f(actx)
			results <- result{v, err}
		}()
	}
	call()
	sent, out := 1, 1
	t := time.NewTimer(every)
	defer t.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err()
		case <-t.C:
			if sent < attempts {
				call()
				sent++
				out++
				t.Reset(every)
			}
		case r := <-results:
			out--
			if r.err == nil || !unanswered(r.err) {
				return r.v, r.err
			}
			last = r.err
			if out == 0 && sent == attempts {
				var zero T
				return zero, last
			}
		}
	}
}
