package jetstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// TestRetrySaysWhatItWaitsFor: start-up that waits for JetStream (no meta
// leader yet, 10008) says so at the first failed attempt and every fifth,
// naming what it waits for, rather than nothing for a minute; an error a
// retry cannot cure ends it at once.
func TestRetrySaysWhatItWaitsFor(t *testing.T) {
	var logged bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
	defer slog.SetDefault(prev)

	leaderless := &natsjs.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream cluster not available"}
	calls := 0
	err := retry(context.Background(), "create stream s", func() error {
		calls++
		if calls < 6 {
			return leaderless
		}
		return nil
	})
	if err != nil || calls != 6 {
		t.Fatalf("retry: %v after %d calls; want success after 6", err, calls)
	}
	if n := strings.Count(logged.String(), "waiting for JetStream"); n != 2 {
		t.Errorf("%d warnings, want 2 (attempts 1 and 5):\n%s", n, logged.String())
	}
	if !strings.Contains(logged.String(), `what="create stream s"`) {
		t.Errorf("the warning does not say what it waits for:\n%s", logged.String())
	}

	permanent := &natsjs.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use"}
	start := time.Now()
	calls = 0
	err = retry(context.Background(), "create stream s", func() error { calls++; return permanent })
	if !errors.Is(err, permanent) || calls != 1 || time.Since(start) > time.Second {
		t.Errorf("a permanent error: %v after %d calls in %v; want it at once", err, calls, time.Since(start))
	}
}

func TestRetryable(t *testing.T) {
	notFound := &natsjs.APIError{Code: 404, ErrorCode: natsjs.JSErrCodeMessageNotFound, Description: "message not found"}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"no meta leader", &natsjs.APIError{Code: 503, ErrorCode: 10008}, true},
		{"no suitable peers", &natsjs.APIError{Code: 500, ErrorCode: 10005}, true},
		{"not found", notFound, false},
		// A "not found" from a server that has not caught up, when the
		// caller knows better (Meta's create path): retried, although
		// it wraps an API error that is not.
		{"stale not found", fmt.Errorf("%w: %w", errStaleAnswer, notFound), true},
		{"only replicas answered", fmt.Errorf("x: %w", ErrLeaderless), true},
		{"timeout", nats.ErrTimeout, true},
		{"deadline", context.DeadlineExceeded, true},
		{"bad request", &natsjs.APIError{Code: 400, ErrorCode: 10003}, false},
		{"other", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retryable(tt.err); got != tt.want {
				t.Errorf("retryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
