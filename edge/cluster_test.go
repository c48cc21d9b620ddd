package edge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/status"
)

// testCluster is a cluster of nodes in this process, on loopback.
type testCluster struct {
	t      *testing.T
	dir    string
	routes []string
	listen []string
	specs  []string
	// configure, if set, adjusts node i's configuration at every start.
	configure func(i int, cfg *Config)
	nodes     []*Node
	stops     []func()
	// logs keeps each node's last log lines, shown when the test fails.
	logs []*logTail
	mu   sync.Mutex
}

// logTailLines is how many of a node's last log lines a failed cluster
// test shows.
const logTailLines = 80

// logTail keeps the last logTailLines lines written to it.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(p))
	if len(l.lines) > logTailLines {
		l.lines = l.lines[len(l.lines)-logTailLines:]
	}
	return len(p), nil
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, line := range l.lines {
		b.WriteString(line)
	}
	return b.String()
}

func newTestCluster(t *testing.T, n int, specs ...string) *testCluster {
	return newConfiguredCluster(t, n, nil, specs...)
}

// newConfiguredCluster is newTestCluster with configure called on each
// node's configuration before it starts.
func newConfiguredCluster(t *testing.T, n int, configure func(i int, cfg *Config), specs ...string) *testCluster {
	jstest.SkipUnlessCluster(t)
	c := &testCluster{t: t, dir: t.TempDir(), specs: specs, configure: configure, nodes: make([]*Node, n), stops: make([]func(), n)}
	for i := 0; i < n; i++ {
		c.logs = append(c.logs, &logTail{})
		a := jstest.FreeAddr(t)
		c.listen = append(c.listen, a)
		c.routes = append(c.routes, "nats-route://"+a)
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(i) }()
	}
	wg.Wait()
	// Stop every node at once: stopped one by one, the last ones would
	// lose their replicated streams' quorum and wait out timeouts.
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, stop := range c.stops {
			if stop != nil {
				wg.Add(1)
				go func() { defer wg.Done(); stop() }()
			}
		}
		wg.Wait()
	})
	// Cleanups run last first: this one, before the nodes stop.
	t.Cleanup(func() {
		if t.Failed() {
			c.mu.Lock()
			logs := slices.Clone(c.logs)
			c.mu.Unlock()
			for i, l := range logs {
				if l.String() != "" {
					t.Logf("node %d's last %d log lines:\n%s", i, logTailLines, l)
				}
			}
		}
	})
	for i, n := range c.nodes {
		if n == nil {
			t.Fatalf("node %d did not start", i)
		}
	}
	c.waitAssigned()
	return c
}

// logger returns node i's logger; a node beyond the cluster's (a test's
// intruder) gets a log tail of its own, shown with the others.
func (c *testCluster) logger(i int) *slog.Logger {
	c.mu.Lock()
	for len(c.logs) <= i {
		c.logs = append(c.logs, &logTail{})
	}
	tail := c.logs[i]
	c.mu.Unlock()
	var w io.Writer = tail
	if os.Getenv("EDGETABLES_TEST_LOG") != "" {
		w = io.MultiWriter(os.Stderr, tail)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test_node", i)
}

// start runs node i (again).
func (c *testCluster) start(i int) {
	t := c.t
	cfg := Config{Name: fmt.Sprintf("n%d", i), DataDir: filepath.Join(c.dir, fmt.Sprint(i)), NATSListen: "127.0.0.1:0",
		HTTPListen: "127.0.0.1:0", Partitions: 6, ClusterName: "test", ClusterListen: c.listen[i], Routes: c.routes,
		SessionTimeout: 2 * time.Second, Logger: c.logger(i)}
	for _, s := range c.specs {
		spec, err := builtin.ParseTableSpec(s)
		if err != nil {
			t.Error(err)
			return
		}
		table, agent, _ := builtin.Builtin(spec)
		cfg.Tables = append(cfg.Tables, table)
		cfg.Agents = append(cfg.Agents, agent)
	}
	if c.configure != nil {
		c.configure(i, &cfg)
	}
	n, err := NewNode(cfg)
	if err != nil {
		t.Error(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	select {
	case <-n.Started():
	case err := <-done:
		t.Errorf("node %d stopped: %v", i, err)
		cancel()
		return
	case <-time.After(60 * time.Second):
		t.Errorf("node %d did not start", i)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("node %d: %v", i, err)
			}
		})
	}
	c.mu.Lock()
	c.nodes[i], c.stops[i] = n, stop
	c.mu.Unlock()
}

// stop stops node i gracefully (it commits, releases and leaves).
func (c *testCluster) stop(i int) {
	c.stops[i]()
	c.mu.Lock()
	c.nodes[i] = nil
	c.mu.Unlock()
}

func (c *testCluster) live() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, n := range c.nodes {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

// waitAssigned waits until the live nodes agree on an assignment that
// gives every partition to a live node, and every node is ready.
func (c *testCluster) waitAssigned() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		live := map[string]bool{}
		for _, n := range c.live() {
			live[n.cfg.Name] = true
		}
		for _, n := range c.live() {
			m := n.Manager()
			if m == nil {
				c.t.Fatalf("node %s has no table manager: it did not start", n.cfg.Name)
			}
			cs := m.Cluster()
			if cs == nil || !m.Ready() || len(cs.Members) != len(live) || cs.Applied != cs.Generation {
				ok = false
				break
			}
			for p := 0; p < m.Partitions(); p++ {
				if owner, serving := m.Owner(p); !serving || !live[owner] {
					ok = false
				}
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			for _, n := range c.live() {
				c.t.Logf("%s: ready=%v cluster=%+v", n.cfg.Name, n.Manager().Ready(), n.Manager().Cluster())
			}
			c.t.Fatal("cluster never settled")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *testCluster) publish(events map[string]int, subject func(k string) string) {
	c.t.Helper()
	nc, err := nats.Connect(c.live()[0].ClientURL())
	if err != nil {
		c.t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	for k, n := range events {
		for j := 0; j < n; j++ {
			if _, err := js.PublishAsync(subject(k), []byte(`{"v":1}`)); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(20 * time.Second):
		c.t.Fatal("publish timed out")
	}
}

// expect waits until every live node answers every key with its count.
func (c *testCluster) expect(table string, want map[string]int) {
	c.t.Helper()
	for _, n := range c.live() {
		for k, v := range want {
			waitValue(c.t, n, table, k, fmt.Sprint(v))
		}
	}
}

func TestClusterExactAggregatesThroughMembershipChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	c := newTestCluster(t, 3, "name=count,source=ev.*,key=subject:2,agg=count")
	want := map[string]int{}
	add := func(n int) {
		batch := map[string]int{}
		for i := 0; i < n; i++ {
			k := fmt.Sprintf("k%d", i%40)
			batch[k]++
			want[k]++
		}
		c.publish(batch, func(k string) string { return "ev." + k })
	}
	add(2000)
	c.expect("count", want) // reads from every node, routed to the owners

	// Graceful leave: the partitions move, nothing is lost or doubled.
	start := time.Now()
	c.stop(2)
	c.waitAssigned()
	t.Logf("handover after graceful leave: %s", time.Since(start).Round(time.Millisecond))
	add(1000)
	c.expect("count", want)

	// The node comes back with its name and data and gets partitions again.
	c.start(2)
	c.waitAssigned()
	add(1000)
	c.expect("count", want)
	if got := len(c.nodes[2].Manager().Status().Partitions); got == 0 {
		t.Error("rejoined node holds no partitions")
	}

	code, body, _ := getJSON(t, c.nodes[0].HTTPAddr(), "/v1/tables/count/keys?limit=100")
	if entries, _ := body["entries"].([]any); code != 200 || len(entries) != 40 {
		t.Errorf("list over the cluster = %d, %v", code, body)
	}
	checkStandbyMetrics(t, c)
}

// checkStandbyMetrics: every node's /metrics reports its standbys, each
// with a lag that reaches 0 once it follows its changelog, and the
// generation it applied. The node's status and its metrics are read at
// different moments, and standbys may still be created after a rejoin, so
// they are compared again until they agree or 20 s have passed.
func checkStandbyMetrics(t *testing.T, c *testCluster) {
	t.Helper()
	standbys := 0
	for i, n := range c.nodes {
		deadline := time.Now().Add(20 * time.Second)
		for {
			var mine []int
			for _, p := range n.Manager().Status().Partitions {
				if p.State == status.StateStandby {
					mine = append(mine, p.Partition)
				}
			}
			fams := scrape(t, n)
			problem := ""
			for _, p := range mine {
				lag, ok := lookup(fams, "edgetables_standby_lag_records", "partition", fmt.Sprint(p))
				switch {
				case !ok:
					problem = fmt.Sprintf("no edgetables_standby_lag_records series for standby partition %d", p)
				case lag > 0:
					problem = fmt.Sprintf("standby of partition %d lags by %v records", p, lag)
				}
				if problem != "" {
					break
				}
			}
			if got := value(t, fams, "edgetables_partitions", "state", "standby"); problem == "" && got != float64(len(mine)) {
				problem = fmt.Sprintf("standby partitions metric %v, status has %d", got, len(mine))
			}
			if problem == "" {
				if g := value(t, fams, "edgetables_assignment_generation"); g < 2 {
					t.Errorf("node %d: generation %v after membership changes", i, g)
				}
				standbys += len(mine)
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("node %d: %s", i, problem)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if standbys == 0 {
		t.Error("no standby in a three-node cluster with one standby per partition")
	}
}
