package main

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// TestElectionTimeoutAfterKill: with --election-timeout 1s, a replicated
// stream whose leader's node is killed with SIGKILL has a new leader
// within 3 s. With nats-server's own timeout (4 to 9 s of silence, the
// last heartbeat at most 1 s before the kill) that cannot happen before
// 3 s, so the flag must have reached the server's raft timers.
func TestElectionTimeoutAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	c := newClusterProcs(t, 3)
	c.flags = append([]string{"--election-timeout=1s"}, defaultFlags...)
	for i := range 3 {
		c.start(i)
	}
	c.settle(0, 1, 2)

	urls := []string{c.procs[0].nats, c.procs[1].nats, c.procs[2].nats}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	must(t, err)
	defer nc.Close()
	js, err := natsjs.New(nc)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "ELECT", Subjects: []string{"elect.>"}, Replicas: 3})
	must(t, err)
	if _, err := js.Publish(ctx, "elect.x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	must(t, err)
	if info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("stream ELECT has no leader: %+v", info.Cluster)
	}
	victim := info.Cluster.Leader
	n, err := strconv.Atoi(strings.TrimPrefix(victim, "n"))
	if err != nil || n < 0 || n > 2 {
		t.Fatalf("leader %q is not a node of the test", victim)
	}

	killed := time.Now()
	must(t, c.procs[n].cmd.Process.Signal(syscall.SIGKILL))
	_ = c.procs[n].cmd.Wait()
	var leader string
	for leader == "" || leader == victim {
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("no new leader of ELECT 30 s after its leader %s was killed", victim)
		}
		rctx, rcancel := context.WithTimeout(ctx, 250*time.Millisecond)
		if info, err := s.Info(rctx); err == nil && info.Cluster != nil {
			leader = info.Cluster.Leader
		}
		rcancel()
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(killed)
	t.Logf("ELECT's leader %s killed; %s elected after %s", victim, leader, took.Round(time.Millisecond))
	if took >= 3*time.Second {
		t.Errorf("new leader after %s, want under 3 s with --election-timeout 1s", took.Round(time.Millisecond))
	}
}
