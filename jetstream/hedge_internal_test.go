package jetstream

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestHedged: calls sent before an election stay unanswered; the first
// one sent after it answers, long before the earlier ones time out.
func TestHedged(t *testing.T) {
	ctx := context.Background()
	elected := time.Now().Add(300 * time.Millisecond)
	var calls atomic.Int32
	start := time.Now()
	v, err := hedged(ctx, 50*time.Millisecond, 5*time.Second, 20, func(ctx context.Context) (int, error) {
		n := calls.Add(1)
		if time.Now().Before(elected) {
			<-ctx.Done() // never answered
			return 0, ctx.Err()
		}
		return int(n), nil
	})
	took := time.Since(start)
	if err != nil || v < 2 {
		t.Fatalf("hedged = %d, %v; want a later call's answer", v, err)
	}
	if took > 2*time.Second {
		t.Fatalf("answered after %v: it waited for an unanswered call", took)
	}

	for _, tc := range []struct {
		name string
		err  error
		want int32 // calls made
	}{
		{"an answer that is an error ends it", errors.New("stream not found"), 1},
		{"unanswered every time", nats.ErrNoResponders, 4},
	} {
		calls.Store(0)
		_, err := hedged(ctx, time.Millisecond, time.Second, 4, func(context.Context) (int, error) {
			calls.Add(1)
			return 0, tc.err
		})
		if !errors.Is(err, tc.err) || calls.Load() != tc.want {
			t.Errorf("%s: %v after %d calls; want %v after %d", tc.name, err, calls.Load(), tc.err, tc.want)
		}
	}
}
