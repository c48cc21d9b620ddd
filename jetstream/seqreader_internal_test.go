package jetstream

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/port"
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
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir()})
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
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
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
