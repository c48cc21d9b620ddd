package jetstream

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

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
