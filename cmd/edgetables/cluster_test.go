package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/status"
)

// clusterProcs runs a cluster of edgetables processes on loopback.
type clusterProcs struct {
	t        testing.TB
	bin, dir string
	nats     []int
	http     []int
	routes   []string
	cluster  []int
	procs    []*proc
	want     map[string]int
	sums     map[string]float64
	// published counts the events published, for their message ids.
	published int
	// flags are the flags of every node beside its name and addresses:
	// defaultFlags unless the test sets its own before starting nodes.
	flags []string
	// logs is the directory of every node's log file, n<i>.log (every
	// incarnation appended), or "" for none: EDGETABLES_CHAOS_LOGS unless
	// the test sets another.
	logs string
	// history holds every incarnation's output of each node, in order.
	history []*lockedBuffer
}

// defaultFlags are the nodes' flags in the cluster tests: a short session
// timeout, 6 partitions, and a count and a sum table over sensors.*.temp.
var defaultFlags = []string{"--session-timeout=2s", "--partitions=6", "--log-level=debug",
	"--table=name=count,source=sensors.*.temp,key=subject:2,agg=count",
	"--table=name=sum,source=sensors.*.temp,key=subject:2,agg=sum,field=value"}

func newClusterProcs(t testing.TB, n int) *clusterProcs {
	c := &clusterProcs{t: t, bin: buildBinary(t), dir: t.TempDir(), procs: make([]*proc, n),
		want: map[string]int{}, sums: map[string]float64{}, flags: defaultFlags,
		logs: os.Getenv("EDGETABLES_CHAOS_LOGS")}
	for i := 0; i < n; i++ {
		c.history = append(c.history, new(lockedBuffer))
		c.nats = append(c.nats, freePort(t))
		c.http = append(c.http, freePort(t))
		c.cluster = append(c.cluster, freePort(t))
		c.routes = append(c.routes, fmt.Sprintf("nats-route://127.0.0.1:%d", c.cluster[i]))
	}
	return c
}

// start starts node i with c.flags and extra flags (it does not wait for
// the node: settle does).
func (c *clusterProcs) start(i int, extra ...string) *proc {
	t := c.t
	p := &proc{http: fmt.Sprintf("127.0.0.1:%d", c.http[i]), nats: fmt.Sprintf("nats://127.0.0.1:%d", c.nats[i]), log: new(lockedBuffer)}
	args := []string{"run", fmt.Sprintf("--name=n%d", i), fmt.Sprintf("--data-dir=%s/n%d", c.dir, i),
		fmt.Sprintf("--nats-listen=127.0.0.1:%d", c.nats[i]), "--http-listen=" + p.http,
		fmt.Sprintf("--cluster-listen=127.0.0.1:%d", c.cluster[i]), "--routes=" + strings.Join(c.routes, ",")}
	args = append(append(args, c.flags...), extra...)
	p.cmd = exec.Command(c.bin, args...)
	w := io.MultiWriter(p.log, c.history[i])
	if c.logs != "" {
		// Every incarnation of node i, appended to one file.
		f, err := os.OpenFile(fmt.Sprintf("%s/n%d.log", c.logs, i), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		w = io.MultiWriter(w, f)
	}
	c.note(i, "=== test: start %s", strings.Join(args, " "))
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	if c.logs != "" {
		// After a failure, a goroutine dump of every live node into its
		// log (Go's SIGQUIT handler), before the kill above.
		t.Cleanup(func() {
			if t.Failed() && p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Signal(syscall.SIGCONT)
				_ = p.cmd.Process.Signal(syscall.SIGQUIT)
				time.Sleep(time.Second)
			}
		})
	}
	c.procs[i] = p
	return p
}

// note writes a line of the test's own into node i's log file, if any
// (the node's output goes there too: the line marks where, for instance,
// the test killed it).
func (c *clusterProcs) note(i int, format string, args ...any) {
	if c.logs == "" {
		return
	}
	f, err := os.OpenFile(fmt.Sprintf("%s/n%d.log", c.logs, i), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", time.Now().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
}

// settle waits until every running node is ready and sees the same
// generation with every partition served by a running node.
func (c *clusterProcs) settle(live ...int) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok := true
		for _, i := range live {
			var st nodeStatus
			if code := c.procs[i].tryGet("/v1/status", &st); code != 200 || !st.Ready || st.Cluster == nil ||
				len(st.Cluster.Members) != len(live) {
				ok = false
				break
			}
			for p, owner := range st.Cluster.Assignment.Actives {
				served := false
				for _, m := range st.Cluster.Members {
					served = served || (m.Node == owner && contains(m.Actives, p))
				}
				ok = ok && served
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for _, i := range live {
				var st nodeStatus
				code := c.procs[i].tryGet("/v1/status", &st)
				var b strings.Builder
				printStatus(&b, st)
				t.Logf("n%d: HTTP %d\n%s\nwarnings and errors:\n%s", i, code, b.String(), problems(c.procs[i].log.String()))
			}
			t.Fatalf("cluster of %v never settled", live)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// publish stores n more events through node via, one at a time. Each
// carries a message id and is published again until it is stored (a
// stream electing its leader after a node died refuses writes for a
// while), so the expected aggregates hold exactly what the source holds.
func (c *clusterProcs) publish(via, n int) {
	t := c.t
	nc, err := nats.Connect(c.procs[via].nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	retried := 0
	for i := 0; i < n; i++ {
		k := c.published + i
		dev := fmt.Sprintf("d%d", k%50)
		v := float64(k % 5)
		msg := &nats.Msg{Subject: "sensors." + dev + ".temp", Data: []byte(fmt.Sprintf(`{"value":%v}`, v)), Header: nats.Header{}}
		msg.Header.Set(nats.MsgIdHdr, fmt.Sprint("ev-", k))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, tries, err := publishStored(ctx, js, msg)
		cancel()
		if err != nil {
			t.Fatalf("event %d not stored after 30 s: %v", k, err)
		}
		retried += tries - 1
		c.want[dev]++
		c.sums[dev] += v
	}
	c.published += n
	if retried > 0 {
		t.Logf("%d publishes of %d events retried", retried, n)
	}
}

// standbyOffsets waits until every standby of the nodes has applied its
// changelog up to where the partition's active owner (any of live) has
// written it, and returns, for each of the nodes, the offset each of its
// standbys applied. A standby that does not catch up with an idle log
// within 30 s fails the test.
func (c *clusterProcs) standbyOffsets(live []int, nodes ...int) map[int]map[int]uint64 {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ends := map[int]uint64{} // partition → the active owner's applied offset
		for _, i := range live {
			var st nodeStatus
			c.procs[i].tryGet("/v1/status", &st)
			for _, p := range st.Partitions {
				if p.State == status.StateActive {
					ends[p.Partition] = p.AppliedOffset
				}
			}
		}
		out := map[int]map[int]uint64{}
		behind := ""
		for _, i := range nodes {
			var st nodeStatus
			if code := c.procs[i].tryGet("/v1/status", &st); code != 200 {
				t.Fatalf("n%d status: HTTP %d", i, code)
			}
			out[i] = map[int]uint64{}
			for _, p := range st.Partitions {
				if p.State != status.StateStandby {
					continue
				}
				out[i][p.Partition] = p.AppliedOffset
				if end, ok := ends[p.Partition]; !ok || p.AppliedOffset < end {
					behind = fmt.Sprintf("n%d's standby of partition %d applied %d, its active wrote up to %d (known: %v)",
						i, p.Partition, p.AppliedOffset, end, ok)
				}
			}
		}
		if behind == "" {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("standbys did not catch up with an idle log in 30 s: %s", behind)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkPromoted checks, from the recovery counters, that every partition a
// node took over since start from its own standby was replayed from the
// standby's position (the tail), not rebuilt, and that there was one.
func (c *clusterProcs) checkPromoted(standby map[int]map[int]uint64, start time.Time) {
	t := c.t
	promoted := 0
	for i, offsets := range standby {
		var st nodeStatus
		c.procs[i].tryGet("/v1/status", &st)
		for _, p := range st.Partitions {
			applied, was := offsets[p.Partition]
			rp := p.Recovery
			if !was || p.State != status.StateActive || rp == nil || rp.Standby || rp.Started.Before(start) {
				continue
			}
			promoted++
			if rp.Rebuilt || rp.From <= applied {
				t.Errorf("n%d partition %d: promoted standby (applied %d) recovered from %d, rebuilt %v (%s)",
					i, p.Partition, applied, rp.From, rp.Rebuilt, rp.Reason)
			}
			t.Logf("n%d partition %d: standby promoted in %s, replayed %d records (from %d to %d; it had applied %d)",
				i, p.Partition, rp.Ended.Sub(rp.Started).Round(time.Millisecond), rp.Records, rp.From, rp.HighWater, applied)
		}
	}
	if promoted == 0 {
		t.Errorf("no standby was promoted after the crash")
	}
}

// publishStored publishes msg until it is stored or ctx ends, and returns
// the stream's acknowledgement and the attempts made. msg carries a
// message id, so that an attempt whose reply was lost is not stored twice
// (the retry's acknowledgement is then a duplicate's, with the sequence of
// the stored message).
func publishStored(ctx context.Context, js natsjs.JetStream, msg *nats.Msg) (*natsjs.PubAck, int, error) {
	for tries := 1; ; tries++ {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ack, err := js.PublishMsg(pctx, msg)
		cancel()
		if err == nil {
			return ack, tries, nil
		}
		select {
		case <-ctx.Done():
			return nil, tries, fmt.Errorf("%w (last attempt: %w)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// keepLogs writes every node's log to $EDGETABLES_TEST_LOGDIR/<test>-n<i>.log
// when the variable is set.
func (c *clusterProcs) keepLogs() {
	dir := os.Getenv("EDGETABLES_TEST_LOGDIR")
	if dir == "" {
		return
	}
	for i, p := range c.procs {
		if p == nil {
			continue
		}
		name := filepath.Join(dir, fmt.Sprintf("%s-n%d.log", strings.ReplaceAll(c.t.Name(), "/", "_"), i))
		if err := os.WriteFile(name, []byte(p.log.String()), 0o644); err != nil {
			c.t.Logf("keep logs: %v", err)
		}
	}
}

// exact waits until node i answers every key with the exact count and sum.
func (c *clusterProcs) exact(i int) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		msg := c.procs[i].checkAll(t, c.want, c.sums)
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			c.keepLogs()
			t.Fatalf("n%d never exact: %s\nlog tail:\n%s", i, msg, tail(c.procs[i].log.String(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClusterCrashAndZombie runs three processes: a node killed with
// SIGKILL loses its partitions to the others within the session timeout; a
// node paused with SIGSTOP past the session timeout loses its partitions,
// and when resumed its pending writes are fenced and it rejoins; every
// count and sum stays exact throughout.
func TestClusterCrashAndZombie(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	c := newClusterProcs(t, 3)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(i) }()
	}
	wg.Wait()
	c.settle(0, 1, 2)
	c.publish(0, 3000)
	c.exact(0)
	c.exact(2)

	// Crash: no leave, no final commit. The crashed node's partitions go
	// to their standbys, which replay only what they had not applied.
	standby := c.standbyOffsets([]int{0, 1, 2}, 0, 2)
	start := time.Now()
	must(t, c.procs[1].cmd.Process.Signal(syscall.SIGKILL))
	_ = c.procs[1].cmd.Wait()
	c.publish(0, 1000)
	c.settle(0, 2)
	t.Logf("kill -9 to every partition active again: %s", time.Since(start).Round(time.Millisecond))
	c.checkPromoted(standby, start)
	c.exact(0)
	c.exact(2)

	// The crashed node restarts with its name and data and gets partitions.
	c.start(1)
	c.settle(0, 1, 2)
	c.publish(1, 1000)
	c.exact(1)

	// Zombie: n2 restarts with commits that wait, takes events, and is
	// paused with them uncommitted until its lease expires.
	must(t, c.procs[2].cmd.Process.Signal(syscall.SIGTERM))
	_ = c.procs[2].cmd.Wait()
	c.start(2, "--commit-interval=1h", "--commit-every=100000000", "--commit-idle=0")
	c.settle(0, 1, 2)
	c.publish(0, 1000)
	time.Sleep(500 * time.Millisecond) // n2 buffers its share
	must(t, c.procs[2].cmd.Process.Signal(syscall.SIGSTOP))
	c.settle(0, 1)
	c.exact(0) // the others processed n2's uncommitted events
	must(t, c.procs[2].cmd.Process.Signal(syscall.SIGCONT))
	c.settle(0, 1, 2)
	// The zombie's buffered writes are refused by the fence, or dropped
	// when its commit fails while the streams it led elect new leaders.
	// Either way none may reach the changelog: the exact counts below are
	// the proof (fencing itself is tested deterministically in jetstream
	// and manager).
	deadline := time.Now().Add(20 * time.Second)
	for {
		l := c.procs[2].log.String()
		if strings.Contains(l, "partition fenced") || strings.Contains(l, "uncommitted writes of revoked partitions are dropped") {
			break
		}
		if time.Now().After(deadline) {
			t.Logf("the resumed zombie logged neither a fence nor dropped writes (it may have got its partitions back)")
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.publish(1, 500)
	must(t, c.procs[2].cmd.Process.Signal(syscall.SIGTERM)) // commits its share now
	_ = c.procs[2].cmd.Wait()
	c.settle(0, 1)
	c.exact(0)
	c.exact(1)
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// problems returns the last 15 warning and error lines of a log.
func problems(log string) string { return lastProblems(log, 15) }

// lastProblems returns the last n warning and error lines of a log.
func lastProblems(log string, n int) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if (strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR")) && !strings.Contains(l, "component=nats") {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, "\n")
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// tryGet is get without failing the test on a connection error.
func (p *proc) tryGet(path string, v any) int {
	resp, err := http.Get("http://" + p.http + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return resp.StatusCode
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return 0
	}
	return resp.StatusCode
}
