package manager_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/edge"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/window"
)

// runExample runs a node with tables and agent until stop is called, and
// returns a JetStream context to publish with.
func runExample(tables []manager.Collection, agent manager.Agent) (natsjs.JetStream, func()) {
	dir, _ := os.MkdirTemp("", "example")
	node, _ := edge.NewNode(edge.Config{Name: "example", DataDir: dir, NATSListen: "127.0.0.1:0", HTTPListen: "off",
		Tables: tables, Agents: []manager.Agent{agent}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- node.Run(ctx) }()
	<-node.Started()
	nc, _ := nats.Connect(node.ClientURL())
	js, _ := natsjs.New(nc)
	return js, func() { nc.Close(); cancel(); <-done; os.RemoveAll(dir) }
}

// Readings per device per minute, with the time taken from the payload's
// "ts" field; each window stays open one minute after its end, then
// OnWindowClose sees its final count.
func Example_windowedTable() {
	now := time.Date(2026, 3, 1, 12, 1, 30, 0, time.UTC)
	perMinute := manager.NewWindowedTable(manager.WindowedTableConfig[string, int64]{
		Name: "readings-per-minute", Keys: codec.String{}, Values: codec.Int64{},
		Windows: window.Tumbling(time.Minute, time.Minute),
		Time:    window.TimeSource{Kind: window.TimeField, Name: "ts"},
		Clock:   func() time.Time { return now }, // a fixed clock, for the example
		OnWindowClose: func(e *manager.Event, device string, w window.Window, n int64) error {
			return nil // e.g. write n to a table of final counts
		},
	})
	agent := manager.Agent{
		Name:     "count-readings",
		Subjects: []string{"readings.*"},
		Key:      func(e *manager.Event) ([]byte, error) { return []byte(e.Token(2)), nil },
		Process: func(e *manager.Event) error {
			return perMinute.Update(e, string(e.Key), func(_ window.Window, n int64, _ bool) (int64, error) {
				return n + 1, nil
			})
		},
	}
	js, stop := runExample([]manager.Collection{perMinute}, agent)
	defer stop()
	ctx := context.Background()
	for _, ts := range []string{"12:00:05", "12:00:50", "12:01:10"} {
		_, _ = js.Publish(ctx, "readings.d1", []byte(`{"ts": "2026-03-01T`+ts+`Z"}`))
	}
	var windows []window.Value[int64]
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if windows, _ = perMinute.LookupAll(ctx, "d1"); len(windows) == 2 && windows[1].Value == 1 {
			break
		}
	}
	for _, w := range windows {
		fmt.Println(w.Window.Start.Format("15:04"), "-", w.Window.End.Format("15:04"), w.Value)
	}
	cur, _, _ := perMinute.LookupNow(ctx, "d1")
	fmt.Println("now:", cur.Value)
	// Output:
	// 12:00 - 12:01 2
	// 12:01 - 12:02 1
	// now: 1
}

// The distinct devices seen per site: a set table.
func Example_setTable() {
	devices := manager.NewSetTable(manager.SetTableConfig[string, string]{
		Name: "devices-per-site", Keys: codec.String{}, Members: codec.String{}})
	agent := manager.Agent{
		Name:     "site-devices",
		Subjects: []string{"sites.*.*"}, // sites.SITE.DEVICE
		Key:      func(e *manager.Event) ([]byte, error) { return []byte(e.Token(2)), nil },
		Process: func(e *manager.Event) error {
			if string(e.Data) == "gone" {
				return devices.Discard(e, string(e.Key), e.Token(3))
			}
			return devices.Add(e, string(e.Key), e.Token(3))
		},
	}
	js, stop := runExample([]manager.Collection{devices}, agent)
	defer stop()
	ctx := context.Background()
	for _, m := range []struct{ subject, data string }{
		{"sites.s1.d2", "up"}, {"sites.s1.d1", "up"}, {"sites.s1.d2", "up"}, {"sites.s1.d3", "up"}, {"sites.s1.d3", "gone"},
	} {
		_, _ = js.Publish(ctx, m.subject, []byte(m.data))
	}
	var members []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if members, _, _ = devices.Lookup(ctx, "s1"); len(members) == 2 {
			break
		}
	}
	fmt.Println(members)
	// Output: [d1 d2]
}
