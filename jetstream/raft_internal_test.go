package jetstream

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestElectionTimeoutRejected: a timeout below MinElectionTimeout is a
// configuration error, found before anything starts.
func TestElectionTimeoutRejected(t *testing.T) {
	for _, tc := range []struct {
		timeout time.Duration
		ok      bool
	}{
		{0, true},
		{MinElectionTimeout, true},
		{2 * time.Second, true},
		{MinElectionTimeout - time.Millisecond, false},
		{-time.Second, false},
	} {
		err := CheckServerConfig(ServerConfig{StoreDir: t.TempDir(), ElectionTimeout: tc.timeout})
		if (err == nil) != tc.ok || err != nil && !strings.Contains(err.Error(), "election timeout") {
			t.Errorf("ElectionTimeout %s: %v, want ok=%v", tc.timeout, err, tc.ok)
		}
	}
}

// TestElectionTimeoutProcessWide: the servers of a process share the raft
// timers. A server with another timeout than the running ones is refused;
// once they have stopped it starts and sets the timers to its own.
func TestElectionTimeoutProcessWide(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := func(d time.Duration) (*Server, error) {
		return StartServer(ctx, ServerConfig{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), ElectionTimeout: d})
	}
	timers := func() [3]time.Duration {
		raftTimers.Lock()
		defer raftTimers.Unlock()
		return [3]time.Duration{raftMinElectionTimeout, raftMaxElectionTimeout, raftHeartbeat}
	}

	a, err := start(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := timers(), [3]time.Duration{time.Second, 2250 * time.Millisecond, 250 * time.Millisecond}; got != want {
		t.Errorf("timers with a 1s timeout: %v, want %v", got, want)
	}
	if b, err := start(0); !errors.Is(err, ErrElectionTimeoutInUse) {
		if err == nil {
			b.Shutdown()
		}
		t.Fatalf("a second server with the default timeout: %v, want ErrElectionTimeoutInUse", err)
	}
	b, err := start(time.Second)
	if err != nil {
		t.Fatalf("a second server with the same timeout: %v", err)
	}
	a.Shutdown()
	if _, err := start(0); !errors.Is(err, ErrElectionTimeoutInUse) {
		t.Fatalf("the default timeout while one server runs on: %v, want ErrElectionTimeoutInUse", err)
	}
	b.Shutdown()
	b.Shutdown() // idempotent: releases the timers once

	c, err := start(0)
	if err != nil {
		t.Fatalf("the default timeout once the others stopped: %v", err)
	}
	defer c.Shutdown()
	if got, want := timers(), [3]time.Duration{4 * time.Second, 9 * time.Second, time.Second}; got != want {
		t.Errorf("default timers: %v, want nats-server's %v", got, want)
	}
}
