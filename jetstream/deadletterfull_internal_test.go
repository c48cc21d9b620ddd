package jetstream

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edgetables/edgetables/manager/port"
)

// syncBuffer is a bytes.Buffer a logger and a test may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDeadLetterStreamNearlyFull: a send that finds the dead-letter
// stream at 90% of its size or more warns that older dead letters are now
// dropped (they were dropped without a word).
func TestDeadLetterStreamNearlyFull(t *testing.T) {
	_, js := testServer(t, &server.Options{JetStream: true, StoreDir: t.TempDir()})
	var logs syncBuffer
	ctx, cancel := context.WithTimeout(WithLogger(context.Background(), slog.New(slog.NewTextHandler(&logs, nil))), 30*time.Second)
	defer cancel()
	d, err := NewDeadLetterQueue(ctx, js, DeadLetterConfig{App: "app", MaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	send := func(seq uint64) {
		t.Helper()
		dl := port.DeadLetter{Agent: "t", Reason: "r", Message: port.SourceMessage{Seq: seq, Subject: "in.x", Data: bytes.Repeat([]byte("x"), 1000)}}
		if err := d.Send(ctx, dl); err != nil {
			t.Fatal(err)
		}
	}
	for seq := range uint64(40) { // 40 KB: not nearly full
		send(seq + 1)
		d.lastFullCheck.Store(0)
	}
	if strings.Contains(logs.String(), "nearly full") {
		t.Fatalf("warned at 40 of 64 KB:\n%s", logs.String())
	}
	for seq := range uint64(40) { // beyond 64 KB: the oldest are dropped
		send(seq + 41)
	}
	if n := strings.Count(logs.String(), "dead-letter stream nearly full"); n != 0 {
		t.Fatalf("warned %d times within a minute of the last look", n)
	}
	d.lastFullCheck.Store(0)
	send(81)
	if !strings.Contains(logs.String(), "dead-letter stream nearly full") {
		t.Fatalf("no warning with the stream full:\n%s", logs.String())
	}
}
