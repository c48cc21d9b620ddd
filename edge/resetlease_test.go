package edge

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/status"
)

// staleLease leaves a lease of node in app's group that nobody renews: what
// a node that stopped while the cluster had no quorum leaves behind.
func staleLease(t *testing.T, url, app, node string, ttl time.Duration) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := jetstream.NewGroup(ctx, js, jetstream.GroupConfig{App: app, Node: node, SessionTimeout: ttl})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Heartbeat(ctx, status.MemberState{Node: node}); err != nil {
		t.Fatal(err)
	}
}

// TestResetTableLeases: --reset-table is not refused for a lease in the
// group that nobody renews (its node stopped), and is refused, naming the
// node, for one that is renewed (its node runs).
func TestResetTableLeases(t *testing.T) {
	srv, _, _ := jstest.Start(t)
	count := "name=c,source=s.*,key=subject:2,agg=count"
	sum := "name=t,source=s.*,key=subject:2,agg=sum,field=v"
	avg := "name=t,source=s.*,key=subject:2,agg=avg,field=v"
	external := func(cfg *Config) *Config {
		cfg.NATSURLs, cfg.SessionTimeout = []string{srv.ClientURL()}, 2*time.Second
		return cfg
	}
	cfg := testConfig(t, t.TempDir(), count, sum)
	n, stop := runNode(t, *external(&cfg))
	publish(t, n, "s.a", `{"v":5}`)
	waitValue(t, n, "t", "a", "5")
	stop()

	// A renewed lease: refused after one lease, naming the node.
	ctx, cancel := context.WithCancel(context.Background())
	ghostDone := ghostMember(t, ctx, srv.ClientURL(), "edgetables", "ghost")
	cfg = testConfig(t, t.TempDir(), count, avg)
	cfg.ResetTables = []string{"t"}
	err := runRefused(t, *external(&cfg))
	cancel()
	<-ghostDone
	mustMention(t, err.Error(), "--reset-table t", "[ghost]", "are running")

	// A lease nobody renews: the reset goes ahead.
	staleLease(t, srv.ClientURL(), "edgetables", "gone", 3*time.Second)
	cfg = testConfig(t, t.TempDir(), count, avg)
	cfg.ResetTables = []string{"t"}
	log := logTo(external(&cfg))
	n, stop = runNode(t, cfg)
	defer stop()
	mustMention(t, log.String(), "watching whether they renew", "gone", "they are stopped", "table reset")
	publish(t, n, "s.a", `{"v":10}`)
	waitValue(t, n, "t", "a", `{"avg":10,"count":1,"sum":10}`)
	waitValue(t, n, "c", "a", "2")
}
