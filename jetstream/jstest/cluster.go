package jstest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
)

// ClusterName is the cluster name of StartCluster's nodes.
const ClusterName = "jstest"

// clusterWait bounds the start of a cluster and of a restarted node.
const clusterWait = 60 * time.Second

// Node is one node of a test cluster: its server and a connection to it.
type Node struct {
	// Name is the server name, "n1", "n2", …; it stays across restarts.
	Name string
	// Dir is the node's store directory.
	Dir string
	// Server is the running server (replaced by Restart).
	Server *jetstream.Server
	// Conn is a connection opened on this node's client port. It outlives
	// Stop and Restart: it reconnects to this node when it is back, or
	// meanwhile to another node it learnt of.
	Conn *nats.Conn
	// JS is a JetStream context on Conn with MaxPending.
	JS natsjs.JetStream

	cfg jetstream.ServerConfig
}

// StartCluster starts an n-node JetStream cluster on loopback, in this
// process: nodes n1…nn, each with its own store in t.TempDir(), client and
// route ports picked free, and the same route list. It returns once the
// meta leader exists and sees every node, so R<=n streams can be created at
// once. Cleanup closes the connections and shuts the servers down. Server
// logs are discarded unless EDGETABLES_TEST_LOG is set.
func StartCluster(t testing.TB, n int) []*Node {
	t.Helper()
	SkipUnlessCluster(t)
	if n < 1 {
		t.Fatalf("jstest: StartCluster(%d)", n)
	}
	nodes := make([]*Node, n)
	var routes []string
	for i := range nodes {
		clientPort, routePort := FreePort(t), FreePort(t)
		name := fmt.Sprintf("n%d", i+1)
		nodes[i] = &Node{
			Name: name,
			Dir:  filepath.Join(t.TempDir(), name),
			cfg: jetstream.ServerConfig{
				Name:          name,
				Listen:        fmt.Sprintf("127.0.0.1:%d", clientPort),
				ClusterName:   ClusterName,
				ClusterListen: fmt.Sprintf("127.0.0.1:%d", routePort),
				Logger:        testLogger().With("node", name),
			},
		}
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", routePort))
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	// Start concurrently: a node's StartServer returns only once a
	// majority is up and has elected the meta leader.
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, nd := range nodes {
		nd.cfg.StoreDir = nd.Dir
		nd.cfg.Routes = routes
		wg.Add(1)
		go func() {
			defer wg.Done()
			nd.Server, errs[i] = jetstream.StartServer(ctx, nd.cfg)
		}()
	}
	wg.Wait()
	for _, nd := range nodes {
		t.Cleanup(nd.Stop)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("jstest: start node %s: %v", nodes[i].Name, err)
		}
	}
	metaLeader := time.Since(start)
	for _, nd := range nodes {
		nc, err := nd.Server.Connect(t.Name() + "-" + nd.Name)
		if err != nil {
			t.Fatalf("jstest: %v", err)
		}
		t.Cleanup(nc.Close)
		js, err := natsjs.New(nc, natsjs.WithPublishAsyncMaxPending(MaxPending))
		if err != nil {
			t.Fatalf("jstest: jetstream context: %v", err)
		}
		nd.Conn, nd.JS = nc, js
	}
	WaitForPeers(t, nodes, n)
	t.Logf("jstest: %d-node cluster: meta leader after %v, every node online after %v", n, metaLeader.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return nodes
}

// WaitForPeers waits until the cluster's meta leader counts want nodes
// online (placing an R3 stream needs three), failing t after a minute.
func WaitForPeers(t testing.TB, nodes []*Node, want int) {
	t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		for _, nd := range nodes {
			if nd.Server == nil {
				continue
			}
			if len(nd.Server.NATSServer().JetStreamClusterPeers()) >= want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("jstest: meta leader does not see %d nodes online after %v", want, clusterWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the node's server down and waits until it stopped. The
// connection stays open (reconnecting). Idempotent.
func (nd *Node) Stop() {
	if nd.Server != nil {
		nd.Server.Shutdown()
	}
}

// Restart stops the node if it runs and starts it again with the same
// name, store and ports, returning once the cluster's meta leader answers
// through it.
func (nd *Node) Restart(t testing.TB) {
	t.Helper()
	nd.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	srv, err := jetstream.StartServer(ctx, nd.cfg)
	if err != nil {
		t.Fatalf("jstest: restart node %s: %v", nd.Name, err)
	}
	nd.Server = srv
}

// RouteURLs returns the nodes' route URLs.
func RouteURLs(nodes []*Node) []string { return slices.Clone(nodes[0].cfg.Routes) }

// ClientURLs returns the nodes' client URLs, for a connection that fails
// over between them.
func ClientURLs(nodes []*Node) []string {
	var out []string
	for _, nd := range nodes {
		out = append(out, (&url.URL{Scheme: "nats", Host: nd.cfg.Listen}).String())
	}
	return out
}

// testLogger discards server logs unless EDGETABLES_TEST_LOG is set.
func testLogger() *slog.Logger {
	var out io.Writer = io.Discard
	if os.Getenv("EDGETABLES_TEST_LOG") != "" {
		out = os.Stderr
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// SkipUnlessCluster skips t in a build that cannot run an embedded cluster
// (see jetstream.ErrClusterUnsupported).
func SkipUnlessCluster(t testing.TB) {
	t.Helper()
	if !jetstream.ClusterSupported {
		t.Skip("an embedded JetStream cluster does not run in a 32-bit build (jetstream.ErrClusterUnsupported)")
	}
}
