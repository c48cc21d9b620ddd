package jetstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestTombstonesFromIsBounded: a message get that nobody answers (a
// stream leader that died with the request, an election that lost it)
// ends with an error, however long the caller's context: it used to hang
// a partition's recovery for good (seen in the chaos test: "reading the
// changelog state and opening the store", no progress for 2 minutes).
func TestTombstonesFromIsBounded(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A responder that takes every request and answers none.
	sub, err := nc.Subscribe("$JS.API.STREAM.MSG.GET.log", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	defer func(prev []time.Duration) { tombstoneAttempts = prev }(tombstoneAttempts)
	tombstoneAttempts = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}

	done := make(chan error, 1)
	go func() {
		_, err := tombstonesFrom(context.Background(), nc, "log", time.Hour, 10)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("tombstonesFrom: %v; want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tombstonesFrom did not return: a request nobody answers hangs it")
	}
}
