package edge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/manager"
)

// BenchmarkSyncGuarantee measures events/s through a count table over 1,000
// keys for each processing guarantee and fsync policy: from the first
// publish (async, into the node's source stream, which fsyncs too under
// sync=always) until every event is committed.
func BenchmarkSyncGuarantee(b *testing.B) {
	for _, bc := range []struct{ sync, exactly bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		name := fmt.Sprintf("sync=%s/guarantee=%s", map[bool]string{false: "interval", true: "always"}[bc.sync],
			map[bool]string{false: "at-least-once", true: "exactly-once"}[bc.exactly])
		b.Run(name, func(b *testing.B) {
			n := max(b.N, 1000)
			spec, _ := builtin.ParseTableSpec("name=c,source=ev.*,key=subject:2,agg=count")
			table, agent, _ := builtin.Builtin(spec)
			node, err := NewNode(Config{Name: "b", DataDir: b.TempDir(), NATSListen: "127.0.0.1:0", HTTPListen: "off",
				SyncAlways: bc.sync, ExactlyOnce: bc.exactly, Tables: []manager.Collection{table}, Agents: []manager.Agent{agent},
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- node.Run(ctx) }()
			defer func() { cancel(); <-done }()
			<-node.Started()
			for !node.Manager().Ready() {
				time.Sleep(10 * time.Millisecond)
			}
			nc, err := nats.Connect(node.ClientURL())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			js, _ := natsjs.New(nc, natsjs.WithPublishAsyncMaxPending(4096))
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < n; i++ {
				if _, err := js.PublishAsync(fmt.Sprintf("ev.k%d", i%1000), []byte(`{"v":1}`), natsjs.WithStallWait(time.Minute)); err != nil {
					b.Fatal(err)
				}
			}
			<-js.PublishAsyncComplete()
			pub := time.Since(start)
			for {
				all := true
				for _, p := range node.Manager().Status().Partitions {
					all = all && p.SourceSeq >= uint64(n)
				}
				if all {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(n)/el.Seconds(), "events/s")
			b.ReportMetric(float64(n)/pub.Seconds(), "published/s")
		})
	}
}
