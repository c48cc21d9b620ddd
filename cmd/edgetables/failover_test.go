package main

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/status"
)

// BenchmarkStandbyFailover measures a failover to standbys in a cluster of
// three processes whose tables hold 100,000 keys (a count and a sum table,
// one standby per partition, session timeout 2 s): one node is killed with
// SIGKILL. It reports the time from the kill until every partition is
// active again (the session timeout and JetStream's leader elections
// included), and the longest promotion: from the start of a promoted
// standby's recovery (the new assignment, which follows the death's
// detection) until its partition serves.
//
//	go test -run x -bench StandbyFailover -benchtime 1x ./cmd/edgetables/
func BenchmarkStandbyFailover(b *testing.B) {
	const keys = 100000
	for i := 0; i < b.N; i++ {
		c := newClusterProcs(b, 3)
		for n := 0; n < 3; n++ {
			c.start(n)
		}
		c.settle(0, 1, 2)
		loadKeys(b, c, keys)
		waitCommitted(b, c, keys, 0, 1, 2)
		standby := c.standbyOffsets([]int{0, 1, 2}, 0, 2)

		b.ResetTimer()
		start := time.Now()
		must(b, c.procs[1].cmd.Process.Signal(syscall.SIGKILL))
		_ = c.procs[1].cmd.Wait()
		c.settle(0, 2)
		active := time.Since(start)
		b.StopTimer()

		var longest time.Duration
		records := 0
		for n, offsets := range standby {
			var st nodeStatus
			c.procs[n].tryGet("/v1/status", &st)
			for _, p := range st.Partitions {
				rp := p.Recovery
				if _, was := offsets[p.Partition]; !was || p.State != status.StateActive || rp == nil || rp.Started.Before(start) {
					continue
				}
				longest = max(longest, rp.Ended.Sub(rp.Started))
				records += rp.Records
			}
		}
		b.ReportMetric(active.Seconds(), "s-kill-to-active")
		b.ReportMetric(float64(longest.Milliseconds()), "ms-promotion")
		b.ReportMetric(float64(records), "records-replayed")
	}
}

// loadKeys publishes one event for each of keys keys through node 0.
func loadKeys(b *testing.B, c *clusterProcs, keys int) {
	nc, err := nats.Connect(c.procs[0].nats)
	must(b, err)
	defer nc.Close()
	js, err := natsjs.New(nc, natsjs.WithPublishAsyncMaxPending(4096))
	must(b, err)
	for k := 0; k < keys; k++ {
		if _, err := js.PublishAsync(fmt.Sprintf("sensors.k%d.temp", k), []byte(`{"value":1}`), natsjs.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		b.Fatal("loading did not complete")
	}
}

// waitCommitted waits until the nodes have committed every partition up to
// source sequence seq.
func waitCommitted(b *testing.B, c *clusterProcs, seq int, nodes ...int) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		done := 0
		for _, n := range nodes {
			var st nodeStatus
			c.procs[n].tryGet("/v1/status", &st)
			for _, p := range st.Partitions {
				if p.State == status.StateActive && p.SourceSeq >= uint64(seq) {
					done++
				}
			}
		}
		if done == 6 { // every partition of the cluster
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of 6 partitions committed source sequence %d", done, seq)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
