package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/status"
)

// A cluster of spawned edgetables nodes on loopback, for the failover
// scenario.

// clusterWait bounds each wait of the failover scenario (the cluster to
// form, the load to be committed, the failover to complete): a cluster that
// does not get there in this time is broken, not slow.
const clusterWait = 2 * time.Minute

// outputShown is how much of each node's output a failed wait shows.
const outputShown = 2 << 10

// nodeStatus is the part of a node's /v1/status the failover scenario
// reads.
type nodeStatus struct {
	Node       string                   `json:"node"`
	Ready      bool                     `json:"ready"`
	Partitions []status.PartitionStatus `json:"partitions"`
	Cluster    *status.ClusterStatus    `json:"cluster"`
}

// partition returns the node's status of partition p (nil: not assigned
// to it).
func (s *nodeStatus) partition(p int) *status.PartitionStatus {
	for i := range s.Partitions {
		if s.Partitions[i].Partition == p {
			return &s.Partitions[i]
		}
	}
	return nil
}

// cluster is three (or more) spawned nodes forming one cluster.
type cluster struct {
	nodes []*child
	nats  []string // client URLs, by node
	// exe and args start each node again (see restart).
	exe  string
	args [][]string
	// logDir and logName name the files of the nodes' output (none when
	// logDir is empty); starts counts each node's starts.
	logDir, logName string
	starts          []int
}

// clusterConfig is what differs between the clusters of a run.
type clusterConfig struct {
	exe, dir, app string
	nodes         int
	partitions    int
	standbys      int
	session       time.Duration
	election      time.Duration // --election-timeout (0: not given)
	tables        []string      // --table values
	// logDir, if set, receives each node's output at info level, in
	// files named after logName (see cluster.logPath).
	logDir, logName string
}

// startCluster starts the nodes, each on ports of its own and a data
// directory under cfg.dir, and waits until each is ready. On error the
// nodes started are stopped; otherwise the caller stops them.
func startCluster(ctx context.Context, cfg clusterConfig) (*cluster, error) {
	ports, err := freePorts(3 * cfg.nodes)
	if err != nil {
		return nil, err
	}
	routes := make([]string, cfg.nodes)
	for i := range cfg.nodes {
		routes[i] = "nats-route://127.0.0.1:" + strconv.Itoa(ports[3*i+2])
	}
	c := &cluster{exe: cfg.exe, logDir: cfg.logDir, logName: cfg.logName, starts: make([]int, cfg.nodes)}
	level := "--log-level=warn"
	if cfg.logDir != "" {
		level = "--log-level=info"
	}
	for i := range cfg.nodes {
		name := "n" + strconv.Itoa(i)
		natsAddr := "127.0.0.1:" + strconv.Itoa(ports[3*i])
		httpAddr := "127.0.0.1:" + strconv.Itoa(ports[3*i+1])
		args := []string{"--name=" + name, "--app=" + cfg.app, "--data-dir=" + filepath.Join(cfg.dir, name),
			"--nats-listen=" + natsAddr, "--http-listen=" + httpAddr,
			"--cluster-listen=127.0.0.1:" + strconv.Itoa(ports[3*i+2]), "--routes=" + strings.Join(routes, ","),
			"--session-timeout=" + cfg.session.String(), "--partitions=" + strconv.Itoa(cfg.partitions),
			"--standbys=" + strconv.Itoa(cfg.standbys), level}
		if cfg.election > 0 {
			args = append(args, "--election-timeout="+cfg.election.String())
		}
		for _, t := range cfg.tables {
			args = append(args, "--table="+t)
		}
		ch, err := spawn(name, cfg.exe, httpAddr, args, c.logPath(i, name))
		if err != nil {
			return nil, errors.Join(err, c.stop())
		}
		c.nodes = append(c.nodes, ch)
		c.nats = append(c.nats, "nats://"+natsAddr)
		c.args = append(c.args, args)
	}
	// A node is ready once the cluster's JetStream is up and its
	// partitions recovered: the nodes wait for each other.
	for _, n := range c.nodes {
		if err := n.waitReady(ctx); err != nil {
			return nil, errors.Join(err, c.stop())
		}
	}
	return c, nil
}

// restart starts node i, which was killed, again with the arguments it
// first had (its name, ports and data directory: it rejoins with the data
// it had), and waits until it is ready.
func (c *cluster) restart(ctx context.Context, i int) error {
	old := c.nodes[i]
	if err := old.alive(); err == nil {
		return fmt.Errorf("restart node %s: it is still running", old.name)
	}
	old.client.CloseIdleConnections()
	ch, err := spawn(old.name, c.exe, old.http, c.args[i], c.logPath(i, old.name))
	if err != nil {
		return err
	}
	c.nodes[i] = ch
	return ch.waitReady(ctx)
}

// logPath returns the file for the output of node i's next start, "" when
// the cluster keeps no logs.
func (c *cluster) logPath(i int, name string) string {
	if c.logDir == "" {
		return ""
	}
	c.starts[i]++
	return filepath.Join(c.logDir, fmt.Sprintf("%s-%s-%d.log", c.logName, name, c.starts[i]))
}

// stop ends every node still running and returns an error for each node
// that had exited on its own. The nodes are killed, not stopped: the
// measurement is over and their data directories are thrown away, and a
// graceful leave of the last nodes of a cluster waits out JetStream's
// quorum timeouts (seconds each run).
func (c *cluster) stop() error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		if n.killed {
			continue
		}
		if err := n.alive(); err != nil {
			errs[i] = fmt.Errorf("node %s: %w", n.name, err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.kill()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// status returns the status of every node of live, by node index; a node
// that does not answer is missing from the map. A node that exited is an
// error.
func (c *cluster) status(ctx context.Context, live []int) (map[int]*nodeStatus, error) {
	out := map[int]*nodeStatus{}
	for _, i := range live {
		n := c.nodes[i]
		if err := n.alive(); err != nil {
			return nil, err
		}
		var st nodeStatus
		if err := getJSON(ctx, n.client, "http://"+n.http+"/v1/status", &st); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			continue // busy or starting: asked again
		}
		out[i] = &st
	}
	return out, nil
}

// settled reports whether the nodes of live are the cluster and agree on
// it: each is ready, sees exactly these members and an assignment of a
// generation after minGen that it applied, and the active owner of every
// partition, one of live, serves it (its own status says active). It
// returns the assignment and a reason when not settled.
func settled(sts map[int]*nodeStatus, live []int, minGen uint64) (assign.Assignment, string) {
	var asg assign.Assignment
	names := map[string]int{}
	for _, i := range live {
		st := sts[i]
		switch {
		case st == nil:
			return asg, fmt.Sprintf("n%d does not answer", i)
		case !st.Ready || st.Cluster == nil:
			return asg, fmt.Sprintf("n%d not ready", i)
		case len(st.Cluster.Members) != len(live):
			return asg, fmt.Sprintf("n%d sees %d members", i, len(st.Cluster.Members))
		case st.Cluster.Generation <= minGen || st.Cluster.Applied != st.Cluster.Generation:
			return asg, fmt.Sprintf("n%d at generation %d, applied %d", i, st.Cluster.Generation, st.Cluster.Applied)
		}
		if i == live[0] {
			asg = st.Cluster.Assignment
		} else if st.Cluster.Generation != asg.Generation {
			return asg, fmt.Sprintf("n%d at generation %d, n%d at %d", i, st.Cluster.Generation, live[0], asg.Generation)
		}
		names[st.Node] = i
	}
	if len(asg.Actives) != asg.Partitions || asg.Partitions == 0 {
		return asg, fmt.Sprintf("assignment of %d partitions names %d owners", asg.Partitions, len(asg.Actives))
	}
	for p, owner := range asg.Actives {
		i, ok := names[owner]
		if !ok {
			return asg, fmt.Sprintf("partition %d assigned to %q, not a live node", p, owner)
		}
		if ps := sts[i].partition(p); ps == nil || ps.State != status.StateActive {
			return asg, fmt.Sprintf("partition %d not active on its owner %s yet", p, owner)
		}
	}
	return asg, ""
}

// waitSettled waits until the nodes of live are settled (see settled) and
// cond, if not nil, holds too; it returns their last statuses. watch, if
// not nil, sees the statuses of every poll. On a timeout the error says
// what was missing.
func (c *cluster) waitSettled(ctx context.Context, what string, live []int, minGen uint64, every time.Duration,
	watch func(map[int]*nodeStatus), cond func(map[int]*nodeStatus, assign.Assignment) (string, error)) (map[int]*nodeStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	var sts map[int]*nodeStatus
	why := ""
	err := waitUntil(ctx, what, every, func() (bool, error) {
		got, err := c.status(ctx, live)
		if err != nil {
			return false, err
		}
		sts = got
		if watch != nil {
			watch(sts)
		}
		var asg assign.Assignment
		if asg, why = settled(sts, live, minGen); why != "" || cond == nil {
			return why == "", nil
		}
		why, err = cond(sts, asg)
		return why == "" && err == nil, err
	})
	if err != nil {
		return nil, fmt.Errorf("%w (last: %s; %s)%s", err, why, views(sts, live), c.outputs(live))
	}
	return sts, nil
}

// views says how each node of live saw the cluster in sts, for errors.
func views(sts map[int]*nodeStatus, live []int) string {
	var parts []string
	for _, i := range live {
		st := sts[i]
		switch {
		case st == nil:
			parts = append(parts, fmt.Sprintf("n%d: no status", i))
		case st.Cluster == nil:
			parts = append(parts, fmt.Sprintf("n%d: ready %v, no cluster", i, st.Ready))
		default:
			var members []string
			for _, m := range st.Cluster.Members {
				members = append(members, m.Node)
			}
			cs := st.Cluster
			parts = append(parts, fmt.Sprintf("n%d: ready %v, generation %d applied %d, leader %s, members %v, actives %v, standbys %v",
				i, st.Ready, cs.Generation, cs.Applied, cs.Leader, members, cs.Assignment.Actives, cs.Assignment.Standbys))
		}
	}
	return strings.Join(parts, "; ")
}

// outputs returns the end of the output of the nodes of live, for errors.
func (c *cluster) outputs(live []int) string {
	var b strings.Builder
	for _, i := range live {
		out := c.nodes[i].out.String()
		if len(out) > outputShown {
			out = "…" + out[len(out)-outputShown:]
		}
		fmt.Fprintf(&b, "\nnode %s's output ends with:\n%s", c.nodes[i].name, out)
	}
	return b.String()
}

// index returns the index of the node named name among the statuses.
func index(sts map[int]*nodeStatus, name string) (int, bool) {
	for i, st := range sts {
		if st.Node == name {
			return i, true
		}
	}
	return 0, false
}

// others returns 0..n-1 without x.
func others(n, x int) []int {
	var out []int
	for i := range n {
		if i != x {
			out = append(out, i)
		}
	}
	return slices.Clip(out)
}
