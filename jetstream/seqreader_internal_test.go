package jetstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// deadPlacement is a JetStream whose first consumer creation is never
// answered, as when the meta leader places the consumer on a server that
// has just died.
type deadPlacement struct {
	natsjs.JetStream
	creations atomic.Int32
	firstDone chan struct{} // closed when the first creation gave up
}

func (d *deadPlacement) CreateConsumer(ctx context.Context, stream string, cfg natsjs.ConsumerConfig) (natsjs.Consumer, error) {
	if d.creations.Add(1) == 1 {
		<-ctx.Done()
		close(d.firstDone)
		return nil, ctx.Err()
	}
	return d.JetStream.CreateConsumer(ctx, stream, cfg)
}

// TestReplayHedgesUnansweredCreation: a replay whose first consumer
// creation goes unanswered sends a second one while it waits, and reads
// the log on that one without waiting for the first to time out; the first
// is collected afterwards, and no consumer is left behind.
func TestReplayHedgesUnansweredCreation(t *testing.T) {
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := NewChangelog(ctx, js, ChangelogConfig{App: "hedge", Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	var recs []port.Record
	for i := range 50 {
		recs = append(recs, port.Record{Table: "t", Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")})
	}
	last, err := cl.Append(ctx, 0, 0, recs, port.CommitMarker{SourceSeq: 1})
	if err != nil {
		t.Fatal(err)
	}
	dead := &deadPlacement{JetStream: js, firstDone: make(chan struct{})}
	cl.js = dead
	n := 0
	if err := cl.Replay(ctx, 0, 1, last, 0, func(es []port.Entry) error { n += len(es); return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dead.firstDone:
		t.Fatal("the replay waited for its unanswered first creation to time out")
	default:
	}
	if n != len(recs)+1 || dead.creations.Load() != 2 {
		t.Fatalf("replayed %d entries with %d creations; want %d with 2", n, dead.creations.Load(), len(recs)+1)
	}
	cl.Close() // waits for the first attempt to be collected
	st, err := js.Stream(ctx, ChangelogStream("hedge", 0))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Consumers != 0 {
		t.Fatalf("consumers left on the changelog: %+v, %v", info.State, err)
	}
}

// muteFirst is a JetStream whose first consumer delivers nothing (it
// filters on a subject no message has), as the consumers some failover
// kills left silent until they were replaced.
type muteFirst struct {
	natsjs.JetStream
	creations atomic.Int32
}

func (m *muteFirst) CreateConsumer(ctx context.Context, stream string, cfg natsjs.ConsumerConfig) (natsjs.Consumer, error) {
	if m.creations.Add(1) == 1 {
		cfg.FilterSubject = "nothing.ever"
	}
	return m.JetStream.CreateConsumer(ctx, stream, cfg)
}

// TestReplayReplacesSilentFirstConsumer: a replay whose new consumer
// delivers nothing replaces it after replayFirstIdle, not replayIdle, and
// reads the log on the next one.
func TestReplayReplacesSilentFirstConsumer(t *testing.T) {
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logged bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logged}, nil))
	cl, err := NewChangelog(ctx, js, ChangelogConfig{App: "mute", Partitions: 1, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	last, err := cl.Append(ctx, 0, 0, []port.Record{{Table: "t", Key: []byte("k"), Value: []byte("v")}}, port.CommitMarker{SourceSeq: 1})
	if err != nil {
		t.Fatal(err)
	}
	mute := &muteFirst{JetStream: js}
	cl.js = mute
	n := 0
	if err := cl.Replay(ctx, 0, 1, last, 0, func(es []port.Entry) error { n += len(es); return nil }); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	log := logged.String()
	mu.Unlock()
	if n != 2 || mute.creations.Load() != 2 {
		t.Fatalf("replayed %d entries with %d consumers; want 2 with 2\n%s", n, mute.creations.Load(), log)
	}
	if want := "no message for 500ms"; !strings.Contains(log, want) { // not replayIdle's 2s
		t.Errorf("log does not say %q:\n%s", want, log)
	}
}

// TestReplayWait: a consumer's first message is waited for replayFirstIdle,
// doubled at each replacement up to replayIdle; later ones replayIdle.
func TestReplayWait(t *testing.T) {
	for _, c := range []struct {
		delivered uint64
		reopens   int
		want      time.Duration
	}{
		{0, 0, replayFirstIdle},
		{0, 1, 2 * replayFirstIdle},
		{0, 2, replayIdle},
		{0, 3, replayIdle},
		{0, 100, replayIdle},
		{1, 0, replayIdle},
		{5, 2, replayIdle},
	} {
		if got := replayWait(c.delivered, c.reopens); got != c.want {
			t.Errorf("replayWait(%d, %d) = %s, want %s", c.delivered, c.reopens, got, c.want)
		}
	}
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// startJetStream starts a single JetStream server for t and connects to it.
func startJetStream(t *testing.T) natsjs.JetStream {
	t.Helper()
	_, js := testServer(t, &server.Options{JetStream: true, StoreDir: t.TempDir()})
	return js
}

// TestGroupWatchHedgesUnansweredCreation: a group watch whose first
// consumer creation goes unanswered sends a second one while it waits, and
// its first view comes without waiting for the first to time out.
func TestGroupWatchHedgesUnansweredCreation(t *testing.T) {
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dead := &deadPlacement{JetStream: js, firstDone: make(chan struct{})}
	g, err := NewGroup(ctx, dead, GroupConfig{App: "hedge", Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Heartbeat(ctx, status.MemberState{Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	views, err := g.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	v := <-views
	select {
	case <-dead.firstDone:
		t.Fatal("the watch waited for its unanswered first creation to time out")
	default:
	}
	if _, ok := v.Members["n1"]; !ok || dead.creations.Load() != 2 {
		t.Fatalf("first view %+v after %d creations; want n1 in it after 2", v, dead.creations.Load())
	}
	stop()
	for range views { // closed once the watch and its collections are done
	}
}
