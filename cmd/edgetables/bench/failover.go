package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/assign"
)

// Failover settings and target.
const (
	failoverApp     = "benchfo"
	failoverNodes   = 3
	failoverSession = 2 * time.Second
	failoverTarget  = time.Second
	// failoverPoll is how often the statuses are read while the cluster
	// fails over; the figures come from the nodes' recovery records, not
	// from the polls.
	failoverPoll = 20 * time.Millisecond
	// readRetry bounds the retries of a read answered 503 (a survivor's
	// view of the owners still moving) after the failover.
	readRetry = 30 * time.Second
)

// failoverOutcome is what one failover run measured.
type failoverOutcome struct {
	standbys int
	victim   string
	moved    []int // the partitions the killed node owned
	// detect is from the kill until the survivors knew of the death: the
	// earlier of a survivor's status first showing a new generation (the
	// leader saw the lease expire and published a new assignment; polled)
	// and the first recovery of a moved partition on a new owner
	// starting. active is from the kill until the last moved partition
	// served on its new owner, serve from the detection until then.
	// longest is the longest single recovery of a moved partition (start
	// → serving), and records what they replayed in all.
	detect, active, serve, longest time.Duration
	records                        int
	// fromStandby counts the moved partitions whose new owner held them
	// as a standby before the kill; rebuilt those whose store was
	// rebuilt.
	fromStandby, rebuilt int
	// moves says, for each moved partition, where it went and where its
	// standbys were.
	moves []string
	// observed is when the polls saw the survivors settled.
	observed time.Duration
	checked  int // keys read back over HTTP
}

// failover measures how long the partitions of a killed node take to be
// served again in a cluster of three spawned nodes (the edgetables binary,
// session timeout 2 s, replicas 3, one count table), once with one standby
// per partition and once with none.
//
// Each run starts three nodes on fresh data directories, waits until they
// agree on an assignment, publishes one event for each of Keys keys
// through node 0's NATS URL (JetStream async publishes, every ack checked)
// and waits until every partition committed them and, with standbys, every
// standby applied its partition's changelog up to the active's position.
// Then the active owner of the lowest partition not owned by node 0 is
// killed with SIGKILL, and the run waits until the two survivors agree on
// a new assignment in which every partition is active on its owner, polling
// their statuses every 20 ms. It reports:
//
//   - detection → serving: from the detection of the death until the last
//     partition of the killed node serves again on its new owner (the end
//     of its recovery record). The detection is the earlier of the first
//     poll in which a survivor shows a new generation (the leader saw the
//     dead node's lease expire and published a new assignment; the poll
//     sees it up to about 20 ms late) and the first recovery of a moved
//     partition starting. It includes what the new owners do before their
//     recoveries start (applying the assignment, stopping the standby
//     followers). The target, with standbys, is < 1 s.
//   - the longest recovery of a moved partition, from its start to the
//     partition serving (with a standby: the promotion, which replays only
//     the standby's lag, unless the assignment gave the partition to
//     another node than its standby). A recovery retried after a failed
//     attempt (a replay that stalled while its changelog stream elected a
//     new leader) counts from its last attempt.
//   - kill → active: from the SIGKILL until the last moved partition
//     serves, the session timeout, the detection and JetStream's elections
//     of new stream leaders included.
//
// Every key is then read back over HTTP from node 0 (which routes a key it
// does not own to its owner): every count must be 1, or the scenario
// fails. The run without standbys is the baseline of the longest
// recovery: its new owners replay the moved partitions' changelogs from
// the start.
//
// The other-CPU column stays empty (the nodes are other processes), and
// --profile-dir gets no profile of it.
func (e *env) failover(ctx context.Context) ([]Result, error) {
	exe, err := e.executable()
	if err != nil {
		return nil, err
	}
	var outs []failoverOutcome
	for _, standbys := range []int{1, 0} {
		e.log.Info("bench: failover: run", "standbys", standbys, "exe", exe)
		o, err := e.failoverRun(ctx, exe, standbys)
		if err != nil {
			return nil, fmt.Errorf("with %d standbys: %w", standbys, err)
		}
		e.log.Info("bench: failover: done", "standbys", standbys, "kill_to_active", o.active.Round(time.Millisecond),
			"detection_to_serving", o.serve.Round(time.Millisecond), "records", o.records)
		outs = append(outs, o)
	}
	with, without := outs[0], outs[1]
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	serving := func(o failoverOutcome) string {
		return fmt.Sprintf("failover %s: detection → serving, %d moved partition(s)", o.label(), len(o.moved))
	}
	active := func(o failoverOutcome) Result {
		return Result{
			Name:  fmt.Sprintf("failover %s: kill → every moved partition active", o.label()),
			Value: o.active.Seconds(), Unit: "s",
			Note: fmt.Sprintf("SIGKILL of %s until the last of its partitions served on a survivor: %s to the detection, "+
				"%s from there; session timeout %s; survivors seen settled by the polls after %s",
				o.victim, o.detect.Round(time.Millisecond), o.serve.Round(time.Millisecond), failoverSession,
				o.observed.Round(time.Millisecond)),
		}
	}
	// Detection → serving has no baseline: what it waits for besides the
	// recoveries (JetStream electing leaders for the streams the dead node
	// led) varies from run to run far more than the recoveries differ, so
	// a ratio against the run without standbys would say nothing about
	// standbys. The longest recovery shows what a standby saves.
	promo := Result{
		Name: serving(with), Value: ms(with.serve), Unit: "ms",
		Target: "< 1 s", Met: ptr(with.serve < failoverTarget),
		Note: with.note(e.cfg.Keys),
	}
	longest := Result{
		Name:  "failover with standby: longest recovery of a moved partition (its start → serving)",
		Value: ms(with.longest), Unit: "ms",
		Baseline:      "no standby (same scenario)",
		BaselineValue: ms(without.longest),
		Note: "the new owner's recovery record (Started → Ended): a promoted standby replays only its lag; " +
			"neither the time between the detection and the start of the recoveries nor a failed attempt of a " +
			"recovery that was retried is in it (see detection → serving)",
	}
	if longest.Value > 0 {
		longest.Ratio = longest.BaselineValue / longest.Value
	}
	return []Result{promo, longest, active(with),
		{Name: serving(without), Value: ms(without.serve), Unit: "ms", Note: without.note(e.cfg.Keys)},
		active(without)}, nil
}

func (o failoverOutcome) label() string {
	if o.standbys == 0 {
		return "without standby"
	}
	return "with standby"
}

func (o failoverOutcome) note(keys int) string {
	return fmt.Sprintf("3 nodes, %d standby(s) per partition, %s keys (one event each); %s killed, owning partition(s) %v; "+
		"detected %s after the kill; partition → new owner: %s; longest single recovery %s; %s records replayed in all, "+
		"%d of %d moved partition(s) promoted from a standby, %d rebuilt; %s keys read back over HTTP from n0, all exact",
		o.standbys, count(keys), o.victim, o.moved, o.detect.Round(time.Millisecond), strings.Join(o.moves, ", "),
		o.longest.Round(time.Millisecond), count(o.records), o.fromStandby, len(o.moved), o.rebuilt, count(o.checked))
}

// failoverRun runs one failover with standbys standbys per partition.
func (e *env) failoverRun(ctx context.Context, exe string, standbys int) (out failoverOutcome, err error) {
	out.standbys = standbys
	table := "name=counts,source=" + failoverApp + ".ev.*,key=subject:3,agg=count"
	c, err := startCluster(ctx, clusterConfig{
		exe: exe, dir: filepath.Join(e.dir, "failover-standbys-"+strconv.Itoa(standbys)), app: failoverApp,
		nodes: failoverNodes, partitions: e.cfg.Partitions, standbys: standbys, session: failoverSession,
		tables: []string{table},
	})
	if err != nil {
		return out, err
	}
	defer func() {
		if serr := c.stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the cluster: %w", serr))
		}
	}()
	all := []int{0, 1, 2}
	if _, err := c.waitSettled(ctx, "the cluster to form", all, 0, 50*time.Millisecond, nil, nil); err != nil {
		return out, err
	}

	keys := e.cfg.Keys
	last, err := loadKeys(ctx, c.nats[0], keys)
	if err != nil {
		return out, err
	}
	// Committed everywhere, and every standby caught up: the failover
	// starts from a quiet, warm cluster.
	var standbyOf map[int][]string // partition → the nodes holding it as standby
	sts, err := c.waitSettled(ctx, "every partition to commit the load", all, 0, 50*time.Millisecond, nil,
		func(sts map[int]*nodeStatus, asg assign.Assignment) (string, error) {
			standbyOf = map[int][]string{}
			for p, owner := range asg.Actives {
				i, _ := index(sts, owner)
				act := sts[i].partition(p)
				if act.SourceSeq < last {
					return fmt.Sprintf("partition %d committed source sequence %d of %d", p, act.SourceSeq, last), nil
				}
				if standbys == 0 {
					continue
				}
				if p >= len(asg.Standbys) || len(asg.Standbys[p]) < standbys {
					return fmt.Sprintf("partition %d has no standby assigned", p), nil
				}
				for _, name := range asg.Standbys[p] {
					j, ok := index(sts, name)
					if !ok {
						return fmt.Sprintf("partition %d's standby %q is not a node", p, name), nil
					}
					sb := sts[j].partition(p)
					if sb == nil || sb.State != manager.StateStandby || sb.AppliedOffset < act.AppliedOffset {
						return fmt.Sprintf("partition %d's standby on %s has not applied offset %d", p, name, act.AppliedOffset), nil
					}
					standbyOf[p] = append(standbyOf[p], name)
				}
			}
			return "", nil
		})
	if err != nil {
		return out, err
	}

	// The victim: the owner of the lowest partition node 0 does not own
	// (node 0 takes the reads afterwards).
	cs := sts[0].Cluster
	gen := cs.Generation
	victim := -1
	for p, owner := range cs.Assignment.Actives {
		if owner == sts[0].Node {
			continue
		}
		if victim < 0 {
			i, ok := index(sts, owner)
			if !ok {
				return out, fmt.Errorf("partition %d's owner %q is not a node", p, owner)
			}
			victim, out.victim = i, owner
		}
		if owner == out.victim {
			out.moved = append(out.moved, p)
		}
	}
	if victim < 0 {
		return out, fmt.Errorf("node 0 owns every partition: %v", cs.Assignment.Actives)
	}
	survivors := others(failoverNodes, victim)
	e.log.Info("bench: failover: killing a node", "node", out.victim, "partitions", out.moved, "generation", gen)

	killed := time.Now()
	if err := c.nodes[victim].kill(); err != nil {
		return out, err
	}
	var genSeen time.Time // a survivor's first status with a new generation
	sts, err = c.waitSettled(ctx, "the survivors to serve every partition", survivors, gen, failoverPoll,
		func(sts map[int]*nodeStatus) {
			for _, st := range sts {
				if genSeen.IsZero() && st.Cluster != nil && st.Cluster.Generation > gen {
					genSeen = time.Now()
				}
			}
		},
		func(sts map[int]*nodeStatus, asg assign.Assignment) (string, error) {
			for _, p := range out.moved {
				i, _ := index(sts, asg.Actives[p])
				if rp := sts[i].partition(p).Recovery; rp == nil || rp.Standby || rp.Ended.IsZero() || rp.Started.Before(killed) {
					return fmt.Sprintf("partition %d on %s: no recovery since the kill", p, asg.Actives[p]), nil
				}
			}
			return "", nil
		})
	if err != nil {
		return out, err
	}
	out.observed = time.Since(killed)
	asg := sts[survivors[0]].Cluster.Assignment
	recs := map[int]*manager.RecoveryProgress{}
	detected := genSeen
	for _, p := range out.moved {
		i, _ := index(sts, asg.Actives[p])
		rp := sts[i].partition(p).Recovery
		recs[p] = rp
		if detected.IsZero() || rp.Started.Before(detected) {
			detected = rp.Started
		}
	}
	out.detect = detected.Sub(killed)
	for _, p := range out.moved {
		rp := recs[p]
		out.longest = max(out.longest, rp.Ended.Sub(rp.Started))
		out.active = max(out.active, rp.Ended.Sub(killed))
		out.records += rp.Records
		if slices.Contains(standbyOf[p], asg.Actives[p]) {
			out.fromStandby++
		}
		if rp.Rebuilt {
			out.rebuilt++
		}
		out.moves = append(out.moves, fmt.Sprintf("%d → %s (standbys %v; recovery from detection +%s to +%s, %s records)",
			p, asg.Actives[p], standbyOf[p], rp.Started.Sub(detected).Round(time.Millisecond),
			rp.Ended.Sub(detected).Round(time.Millisecond), count(rp.Records)))
	}
	out.serve = out.active - out.detect

	if out.checked, err = readBack(ctx, c.nodes[0], keys); err != nil {
		return out, fmt.Errorf("after the failover: %w", err)
	}
	return out, nil
}

// loadKeys publishes one event for each of keys keys into the cluster
// through url with JetStream async publishes, checks every ack, and
// returns the source stream's last sequence.
func loadKeys(ctx context.Context, url string, keys int) (uint64, error) {
	nc, err := nats.Connect(url, nats.Name("edgetables-bench-failover"))
	if err != nil {
		return 0, fmt.Errorf("connect to %s: %w", url, err)
	}
	defer nc.Close()
	var errs errCount
	js, err := natsjs.New(nc, natsjs.WithPublishAsyncMaxPending(productWindow),
		natsjs.WithPublishAsyncErrHandler(func(_ natsjs.JetStream, _ *nats.Msg, err error) { errs.add(err) }))
	if err != nil {
		return 0, fmt.Errorf("JetStream context: %w", err)
	}
	for k := range keys {
		if _, err := js.PublishAsync(failoverApp+".ev."+keyName(k), payload(k), natsjs.WithStallWait(time.Minute)); err != nil {
			return 0, fmt.Errorf("publish event %d: %w", k, err)
		}
	}
	if err := waitPublished(ctx, js); err != nil {
		return 0, err
	}
	if err := errs.err(); err != nil {
		return 0, fmt.Errorf("publish acks: %w", err)
	}
	st, err := js.Stream(ctx, jetstream.SourceStream(failoverApp))
	if err != nil {
		return 0, fmt.Errorf("the source stream: %w", err)
	}
	if last := st.CachedInfo().State.LastSeq; last != uint64(keys) {
		return 0, fmt.Errorf("the source stream's last sequence is %d after %d events", last, keys)
	}
	return uint64(keys), nil
}

// readBackWorkers is how many reads readBack keeps in flight.
const readBackWorkers = 8

// readBack reads every key of the count table from node n over HTTP
// (a key of another node's partition is routed to its owner),
// readBackWorkers at a time, and returns how many it read: each must
// count 1. A read answered 503 (the node's view of the owners still
// moving) is retried for up to readRetry.
func readBack(ctx context.Context, n *child, keys int) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadline := time.Now().Add(readRetry)
	var (
		read atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		werr error
	)
	for w := range readBackWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := w; k < keys; k += readBackWorkers {
				if err := readKey(ctx, n, k, deadline); err != nil {
					mu.Lock()
					if werr == nil {
						werr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				read.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(read.Load()), werr
}

// readKey reads key k from node n and checks that it counts 1, retrying a
// 503 until deadline.
func readKey(ctx context.Context, n *child, k int, deadline time.Time) error {
	key := keyName(k)
	for {
		var got struct {
			Key       string          `json:"key"`
			Value     json.RawMessage `json:"value"`
			Partition int             `json:"partition"`
		}
		code, err := getStatus(ctx, n.client, "http://"+n.http+"/v1/tables/counts/keys/"+key, &got)
		switch {
		case err != nil:
			return err
		case code == http.StatusServiceUnavailable && time.Now().Before(deadline):
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			continue
		case code != http.StatusOK:
			return fmt.Errorf("GET key %s from %s: HTTP %d", key, n.name, code)
		case got.Key != key || string(got.Value) != "1":
			return fmt.Errorf("key %s read from %s: %s = %s, want 1 (partition %d)", key, n.name, got.Key, got.Value, got.Partition)
		}
		return nil
	}
}

// getStatus is getJSON that returns the status code instead of an error
// for answers other than 200 (their body is not decoded).
func getStatus(ctx context.Context, client *http.Client, u string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body) // keep the connection
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return 0, fmt.Errorf("GET %s: %w", u, err)
	}
	return resp.StatusCode, nil
}
