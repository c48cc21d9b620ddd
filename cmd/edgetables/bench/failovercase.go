package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/status"
)

// The kills of one failover case: a cluster started once, killed and
// restarted again and again.

// leaderPlaceWait bounds the wait, before a kill, for the changelog
// streams' leaders to move off the partitions' active owners (the nodes
// check every 5 s): a kill after it is measured anyway, and its note says
// the leaders were not placed.
const leaderPlaceWait = 20 * time.Second

// slowOutputShown is how much of each survivor's output a slow kill logs.
const slowOutputShown = 8 << 10

// failoverCase starts a cluster of three nodes with standbys standbys per
// partition, loads it with one event per key, and kills a node kills
// times, round-robin over the nodes (the next one when a node owns no
// partition). Before each kill the cluster is settled: every node a
// member at one applied generation, every partition committed the load
// and active on its owner, every standby caught up with its active, every
// stream's replicas current, and (for up to leaderPlaceWait) no changelog
// led by its partition's active owner. After each kill every key is read
// back from a survivor, and the killed node is restarted on its data
// directory (it rejoins) unless it was the last kill.
func (e *env) failoverCase(ctx context.Context, exe string, standbys, kills int) (outs []failoverOutcome, err error) {
	table := "name=counts,source=" + failoverApp + ".ev.*,key=subject:3,agg=count"
	c, err := startCluster(ctx, clusterConfig{
		exe: exe, dir: filepath.Join(e.dir, "failover-standbys-"+strconv.Itoa(standbys)), app: failoverApp,
		nodes: failoverNodes, partitions: e.cfg.Partitions, standbys: standbys, session: failoverSession, election: e.cfg.FailoverElectionTimeout,
		tables: []string{table}, logDir: e.cfg.NodeLogDir, logName: "failover-standbys-" + strconv.Itoa(standbys),
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := c.stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the cluster: %w", serr))
		}
	}()
	all := []int{0, 1, 2}
	if _, err := c.waitSettled(ctx, "the cluster to form", all, 0, 50*time.Millisecond, nil, nil); err != nil {
		return nil, err
	}
	e.log.Info("bench: failover: cluster formed", "standbys", standbys)
	last, err := loadKeys(ctx, c.nats[0], e.cfg.Keys)
	if err != nil {
		return nil, err
	}
	// One connection for the streams' state, to any live node.
	nc, err := nats.Connect(strings.Join(c.nats, ","), nats.Name("edgetables-bench-failover-streams"),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("connect to the cluster: %w", err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		return nil, fmt.Errorf("JetStream context: %w", err)
	}

	var gen uint64 // the settled cluster's generation must be past it
	for k := range kills {
		what := "every partition to commit the load"
		if k > 0 {
			what = fmt.Sprintf("the cluster to settle after the restart of %s", outs[k-1].victim)
		}
		t0 := time.Now()
		sts, standbyOf, err := c.waitCaughtUp(ctx, what, all, gen, standbys, last)
		if err != nil {
			return outs, fmt.Errorf("kill %d: %w", k+1, err)
		}
		victim, err := pickVictim(sts, k)
		if err != nil {
			return outs, fmt.Errorf("kill %d: %w", k+1, err)
		}
		t1 := time.Now()
		placedIn, led, err := waitStreams(ctx, js, sts[0].Cluster.Assignment, sts[victim].Node)
		if err != nil {
			return outs, fmt.Errorf("kill %d: %w", k+1, err)
		}
		e.log.Info("bench: failover: settled", "standbys", standbys, "kill", k+1, "partitions_settled_in", t1.Sub(t0).Round(time.Millisecond),
			"streams_settled_in", time.Since(t1).Round(time.Millisecond))
		o, err := e.failoverKill(ctx, c, victim, sts, standbyOf)
		if err != nil {
			return outs, fmt.Errorf("kill %d (%s): %w", k+1, sts[victim].Node, err)
		}
		o.kill, o.standbys, o.placedIn, o.led = k+1, standbys, placedIn, led
		e.log.Info("bench: failover: kill done", "standbys", standbys, "kill", o.kill, "victim", o.victim,
			"partitions", o.moved, "detection", o.detect.Round(time.Millisecond),
			"detection_to_serving", o.serve.Round(time.Millisecond), "kill_to_active", o.active.Round(time.Millisecond),
			"leaders_placed", o.placedIn >= 0, "group_leader", o.ledGroup, "victim_led", strings.Join(o.led, " "))
		outs = append(outs, o)
		if k == kills-1 {
			break
		}
		// The rejoin publishes a new generation only when it changes the
		// assignment (it may not: a member with nothing to take over);
		// every node seeing the three members at the survivors'
		// generation or a later one is settled.
		gen = o.gen - 1
		t2 := time.Now()
		if err := c.restart(ctx, victim); err != nil {
			return outs, fmt.Errorf("restart %s after kill %d: %w", o.victim, k+1, err)
		}
		e.log.Info("bench: failover: restarted", "node", o.victim, "ready_in", time.Since(t2).Round(time.Millisecond))
	}
	return outs, nil
}

// pickVictim returns the node to kill at kill k (from 0): node k mod 3,
// or the next one that owns a partition.
func pickVictim(sts map[int]*nodeStatus, k int) (int, error) {
	asg := sts[0].Cluster.Assignment
	for j := range failoverNodes {
		i := (k + j) % failoverNodes
		if len(asg.ActivesOf(sts[i].Node)) > 0 {
			return i, nil
		}
	}
	return 0, fmt.Errorf("no node owns a partition: %v", asg.Actives)
}

// waitCaughtUp waits until the nodes of live are settled past generation
// minGen in the assignment the group's leader keeps for them (it would
// publish no other), every partition committed source sequence last and, with
// standbys, each of its standbys applied its changelog up to the active's
// position. It returns the statuses and, by partition, the nodes holding
// it as a standby.
func (c *cluster) waitCaughtUp(ctx context.Context, what string, live []int, minGen uint64, standbys int,
	last uint64) (map[int]*nodeStatus, map[int][]string, error) {
	var standbyOf map[int][]string
	sts, err := c.waitSettled(ctx, what, live, minGen, 50*time.Millisecond, nil,
		func(sts map[int]*nodeStatus, asg assign.Assignment) (string, error) {
			// The assignment the group's leader keeps for these members
			// (a rejoined member may not have been given its share yet).
			var members []string
			for _, i := range live {
				members = append(members, sts[i].Node)
			}
			if next := assign.Assign(asg, members, asg.Partitions, standbys); !next.Equal(asg) {
				return fmt.Sprintf("generation %d is not the assignment of the members %v yet", asg.Generation, members), nil
			}
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
					if sb == nil || sb.State != status.StateStandby || sb.AppliedOffset < act.AppliedOffset {
						return fmt.Sprintf("partition %d's standby on %s has not applied offset %d", p, name, act.AppliedOffset), nil
					}
					standbyOf[p] = append(standbyOf[p], name)
				}
			}
			return "", nil
		})
	return sts, standbyOf, err
}

// waitStreams waits until every stream of the app has all its replicas
// current (up to clusterWait: an error after it) and, for up to
// leaderPlaceWait, until no partition's changelog is led by the
// partition's active owner in asg. It returns how long the placement took
// (-1: not reached) and what victim leads then: the streams and consumers
// (without the app's prefix) that must elect a new leader when it dies.
func waitStreams(ctx context.Context, js natsjs.JetStream, asg assign.Assignment, victim string) (time.Duration, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	start := time.Now()
	placedIn := time.Duration(-1)
	why := ""
	err := waitUntil(ctx, "every stream's replicas to be current", 250*time.Millisecond, func() (bool, error) {
		infos, err := listStreams(ctx, js)
		if err != nil {
			why = err.Error()
			return false, nil // the cluster's API may be busy: asked again
		}
		if why = streamsCurrent(infos); why != "" {
			return false, nil
		}
		if placedLeaders(infos, asg) {
			placedIn = time.Since(start)
			return true, nil
		}
		return time.Since(start) >= leaderPlaceWait, nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("%w (last: %s)", err, why)
	}
	// What the victim leads only describes the kill: a cluster API too
	// busy to list it (asked three times) does not fail the scenario.
	var led []string
	for attempt := 0; ; attempt++ {
		if led, err = ledBy(ctx, js, victim); err == nil || ctx.Err() != nil {
			break
		}
		if attempt == 2 {
			led, err = []string{"(unknown: " + err.Error() + ")"}, nil
			break
		}
	}
	return placedIn, led, err
}

// listStreams returns the info of every stream, by name.
func listStreams(ctx context.Context, js natsjs.JetStream) (map[string]*natsjs.StreamInfo, error) {
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	l := js.ListStreams(lctx)
	out := map[string]*natsjs.StreamInfo{}
	for info := range l.Info() {
		out[info.Config.Name] = info
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("list the streams: %w", err)
	}
	return out, nil
}

// streamsCurrent returns why not every replica of every replicated stream
// is current ("": they are).
func streamsCurrent(infos map[string]*natsjs.StreamInfo) string {
	for _, name := range sortedKeys(infos) {
		info := infos[name]
		if info.Config.Replicas <= 1 {
			continue
		}
		cl := info.Cluster
		if cl == nil || cl.Leader == "" {
			return fmt.Sprintf("stream %s has no leader", name)
		}
		if len(cl.Replicas) < info.Config.Replicas-1 {
			return fmt.Sprintf("stream %s has %d replicas besides its leader, want %d", name, len(cl.Replicas), info.Config.Replicas-1)
		}
		for _, r := range cl.Replicas {
			if !r.Current || r.Offline {
				return fmt.Sprintf("stream %s's replica on %s is not current", name, r.Name)
			}
		}
	}
	return ""
}

// placedLeaders reports whether no partition's changelog stream is led by
// the partition's active owner.
func placedLeaders(infos map[string]*natsjs.StreamInfo, asg assign.Assignment) bool {
	for p, owner := range asg.Actives {
		info, ok := infos[jetstream.ChangelogStream(failoverApp, p)]
		if !ok || info.Cluster == nil || info.Cluster.Leader == owner {
			return false
		}
	}
	return true
}

// ledBy returns the replicated streams and consumers led by server,
// without the app's prefix: consumers as stream/consumer.
func ledBy(ctx context.Context, js natsjs.JetStream, server string) ([]string, error) {
	infos, err := listStreams(ctx, js)
	if err != nil {
		return nil, err
	}
	short := func(s string) string {
		return strings.TrimPrefix(strings.TrimPrefix(s, "KV_"), failoverApp+"_")
	}
	var led []string
	for _, name := range sortedKeys(infos) {
		if cl := infos[name].Cluster; cl != nil && cl.Leader == server {
			led = append(led, short(name))
		}
		st, err := js.Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		l := st.ListConsumers(lctx)
		for ci := range l.Info() {
			// A consumer of one replica dies with its server: no election.
			if ci.Cluster != nil && ci.Cluster.Leader == server && len(ci.Cluster.Replicas) > 0 {
				led = append(led, short(name)+"/"+ci.Name)
			}
		}
		err = l.Err()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("consumers of stream %s: %w", name, err)
		}
	}
	return led, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// failoverKill kills node victim of a settled cluster (sts, its
// statuses; standbyOf, the standbys of each partition), waits until the
// survivors serve every partition again, measures the failover, and reads
// every key back from a survivor.
func (e *env) failoverKill(ctx context.Context, c *cluster, victim int, sts map[int]*nodeStatus,
	standbyOf map[int][]string) (out failoverOutcome, err error) {
	cs := sts[0].Cluster
	gen := cs.Generation
	out.victim = sts[victim].Node
	out.ledGroup = cs.Leader == out.victim
	out.moved = cs.Assignment.ActivesOf(out.victim)
	survivors := others(failoverNodes, victim)
	marks := map[int]int64{}
	for _, i := range survivors {
		marks[i] = c.nodes[i].out.mark()
	}

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
	out.gen = asg.Generation
	recs := map[int]*status.RecoveryProgress{}
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
	if out.serve >= failoverTarget {
		for _, i := range survivors {
			o := withoutRouteErrors(c.nodes[i].out.since(marks[i]))
			if len(o) > slowOutputShown {
				o = "…" + o[len(o)-slowOutputShown:]
			}
			e.log.Warn("bench: failover: slow kill; a survivor's output since the kill", "victim", out.victim,
				"detection_to_serving", out.serve.Round(time.Millisecond), "moves", strings.Join(out.moves, "; "),
				"node", c.nodes[i].name, "output", o)
		}
	}

	reader := c.nodes[survivors[0]]
	out.reader = reader.name
	if out.checked, err = readBack(ctx, reader, e.cfg.Keys); err != nil {
		return out, fmt.Errorf("after the failover: %w", err)
	}
	return out, nil
}

// withoutRouteErrors drops from a node's output the lines of its server
// failing to reach the killed node's route (one a second per route).
func withoutRouteErrors(out string) string {
	lines := strings.SplitAfter(out, "\n")
	kept := lines[:0]
	for _, l := range lines {
		if !strings.Contains(l, "Error trying to connect to route") {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "")
}
