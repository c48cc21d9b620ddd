package manager_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/edge"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
)

// A Listener observes a node's start, its rebalances and its commits, in
// Faust's order, on the node's processing goroutine: each call must return
// quickly. A node alone assigns itself every partition at start.
func ExampleListener() {
	seen := manager.NewTable(manager.TableConfig[string, int64]{
		Name: "seen", Keys: codec.String{}, Values: codec.Int64{}})
	agent := manager.Agent{
		Name:     "count",
		Subjects: []string{"events"},
		Process: func(e *manager.Event) error {
			n, err := seen.Get(e, "events")
			if err != nil {
				return err
			}
			return seen.Set(e, "events", n+1)
		},
	}
	ready, committed := make(chan struct{}, 1), make(chan struct{}, 1)
	listener := manager.Listener{
		OnStarted:          func() { fmt.Println("started") },
		OnRebalanceStarted: func(gen uint64) { fmt.Println("rebalance to generation", gen) },
		OnPartitionsRevoked: func(ev manager.PartitionsRevoked) {
			fmt.Println("revoked", ev.Partitions)
		},
		OnPartitionsAssigned: func(ev manager.PartitionsAssigned) {
			fmt.Println("assigned actives", ev.Actives, "standbys", ev.Standbys)
		},
		OnActivesReady: func(ev manager.PartitionsReady) {
			fmt.Println("actives ready", ev.Partitions)
			select {
			case ready <- struct{}{}: // never block the node
			default:
			}
		},
		OnStandbysReady: func(ev manager.PartitionsReady) { fmt.Println("standbys ready", ev.Partitions) },
		OnCommitted: func(ev manager.Committed) {
			if ev.Records > 0 { // partitions without writes commit their position too
				fmt.Printf("committed %d record(s) of partition %d up to source seq %d\n", ev.Records, ev.Partition, ev.SourceSeq)
				select {
				case committed <- struct{}{}: // never block the node
				default:
				}
			}
		},
		OnStopped: func(err error) { fmt.Println("stopped:", err) },
	}

	dir, _ := os.MkdirTemp("", "listener")
	defer os.RemoveAll(dir)
	node, _ := edge.NewNode(edge.Config{Name: "example", DataDir: dir, NATSListen: "127.0.0.1:0", HTTPListen: "off",
		Partitions: 2, Tables: []manager.Collection{seen}, Agents: []manager.Agent{agent}, Listener: listener,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- node.Run(ctx) }()
	<-node.Started()
	<-ready // every partition recovered and processed

	nc, _ := nats.Connect(node.ClientURL())
	js, _ := natsjs.New(nc)
	_, _ = js.Publish(ctx, "events", []byte("{}"))
	<-committed
	nc.Close()
	cancel()
	<-done
	// Output:
	// started
	// rebalance to generation 1
	// revoked []
	// assigned actives [0 1] standbys []
	// actives ready [0 1]
	// standbys ready []
	// committed 1 record(s) of partition 0 up to source seq 1
	// stopped: <nil>
}
