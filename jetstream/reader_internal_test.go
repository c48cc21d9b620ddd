package jetstream

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestSourceReaderBufferBoundedByWholeSize: events whose payload is empty
// but whose headers are large fill the reader's buffer by their whole size
// (subject, reply, headers and data), not by their count alone: the buffer
// stops short of sourcePull messages once it holds sourcePullBytes, and
// every event is still read, in order.
func TestSourceReaderBufferBoundedByWholeSize(t *testing.T) {
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src, err := NewSource(ctx, js, SourceConfig{App: "bounded", Subjects: []string{"bounded.ev.*"}})
	if err != nil {
		t.Fatal(err)
	}
	const hdr = 4 << 10 // 4 KiB of headers, no payload
	n := 2 * sourcePullBytes / hdr
	if n >= sourcePull {
		t.Fatalf("test needs fewer events (%d) than a pull (%d)", n, sourcePull)
	}
	value := strings.Repeat("h", hdr)
	for i := range n {
		m := &nats.Msg{Subject: "bounded.ev.k", Header: nats.Header{"X-Pad": []string{value}}}
		if _, err := js.PublishMsgAsync(m); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publishes not acknowledged")
	}
	r, err := src.OpenReader(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Let the delivery goroutine fill the buffer until it blocks.
	var held, bytes int
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.bufMu.Lock()
		held, bytes = len(r.msgs), r.bytes
		r.bufMu.Unlock()
		if bytes >= sourcePullBytes {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // nothing more may come in
	r.bufMu.Lock()
	held, bytes = len(r.msgs), r.bytes
	r.bufMu.Unlock()
	if bytes < sourcePullBytes || bytes > sourcePullBytes+2*hdr || held >= n {
		t.Fatalf("buffer holds %d of %d events, %d bytes; want it stopped at about %d bytes", held, n, bytes, sourcePullBytes)
	}
	var last uint64
	for got := 0; got < n; {
		ms, err := r.Next(ctx, 1000, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			t.Fatalf("read %d of %d events, then nothing", got, n)
		}
		for _, m := range ms {
			if m.Seq != last+1 || len(m.Header["X-Pad"]) != 1 {
				t.Fatalf("event %d: seq %d after %d, headers %d", got, m.Seq, last, len(m.Header))
			}
			last = m.Seq
			got++
		}
	}
	r.bufMu.Lock()
	defer r.bufMu.Unlock()
	if r.bytes != 0 || len(r.msgs) != 0 {
		t.Fatalf("after reading everything the buffer counts %d bytes, %d events", r.bytes, len(r.msgs))
	}
}
