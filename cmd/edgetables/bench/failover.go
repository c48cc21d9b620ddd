package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
)

// Failover settings and targets.
const (
	failoverApp     = "benchfo"
	failoverNodes   = 3
	failoverSession = 2 * time.Second
	// failoverTarget bounds detection → serving with a standby, in at
	// least failoverShare of every failoverOf kills; activeTarget bounds
	// the p90 of kill → every moved partition active.
	failoverTarget = time.Second
	failoverShare  = 9
	failoverOf     = 10
	activeTarget   = 3 * time.Second
	// failoverPoll is how often the statuses are read while the cluster
	// fails over; the figures come from the nodes' recovery records, not
	// from the polls.
	failoverPoll = 20 * time.Millisecond
	// readRetry bounds the retries of a read answered 503 (a survivor's
	// view of the owners still moving) after the failover.
	readRetry = 30 * time.Second
)

// failoverOutcome is what one kill measured.
type failoverOutcome struct {
	kill     int // 1 for the first kill of its case
	standbys int
	victim   string
	moved    []int  // the partitions the killed node owned
	gen      uint64 // the survivors' generation once they served them
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
	// placedIn is how long after the cluster settled no changelog was led
	// by its partition's active owner (-1: not within leaderPlaceWait);
	// led lists the streams and consumers the victim led at the kill.
	placedIn time.Duration
	led      []string
	// ledGroup says the victim was the group's leader (it published the
	// assignments): the survivors campaign once its lease expired.
	ledGroup bool
	reader   string // the survivor the keys were read back from
	checked  int    // keys read back over HTTP
}

// failover measures how long the partitions of a killed node take to be
// served again in a cluster of three spawned nodes (the edgetables binary,
// session timeout 2 s, Config.FailoverElectionTimeout, replicas 3, one
// count table), over FailoverKills
// kills with one standby per partition and FailoverBaselineKills (if
// positive) with none (see failoverCase: each case starts one cluster, loads one event
// per key, and kills the nodes round-robin, restarting each killed node
// on its data directory and letting the cluster settle before the next
// kill). For each case it reports the distribution over the kills of:
//
//   - detection → serving: from the detection of the death until the last
//     partition of the killed node serves again on its new owner (the end
//     of its recovery record). The detection is the earlier of the first
//     poll in which a survivor shows a new generation (the leader saw the
//     dead node's lease expire and published a new assignment; the poll
//     sees it up to about 20 ms late) and the first recovery of a moved
//     partition starting. It includes what the new owners do before their
//     recoveries start (applying the assignment, stopping the standby
//     followers). The target, with standbys, is < 1 s in at least 9 of
//     every 10 kills (judged over at least 10 kills).
//   - kill → every moved partition active: from the SIGKILL until the last
//     moved partition serves, the session timeout, the detection and
//     JetStream's elections of new stream leaders included. The target is
//     a p90 < 3 s.
//   - with standbys, the longest recovery of a moved partition, from its
//     start to the partition serving (the promotion, which replays only
//     the standby's lag, unless the assignment gave the partition to
//     another node than its standby), against the same without standbys,
//     whose new owners replay the moved partitions' changelogs from the
//     start. A recovery retried after a failed attempt counts from its
//     last attempt.
//
// After every kill every key is read back over HTTP from a survivor (which
// routes a key it does not own to its owner): every count must be 1, or
// the scenario fails.
//
// The other-CPU column stays empty (the nodes are other processes), and
// --profile-dir gets no profile of it.
func (e *env) failover(ctx context.Context) ([]Result, error) {
	exe, err := e.executable()
	if err != nil {
		return nil, err
	}
	cases := []struct{ standbys, kills int }{{1, e.cfg.FailoverKills}}
	if e.cfg.FailoverBaselineKills > 0 {
		cases = append(cases, struct{ standbys, kills int }{0, e.cfg.FailoverBaselineKills})
	}
	var runs [][]failoverOutcome
	for _, c := range cases {
		e.log.Info("bench: failover: case", "standbys", c.standbys, "kills", c.kills, "exe", exe)
		outs, err := e.failoverCase(ctx, exe, c.standbys, c.kills)
		if err != nil {
			return nil, fmt.Errorf("with %d standbys: %w", c.standbys, err)
		}
		runs = append(runs, outs)
	}
	with := runs[0]
	keys := e.cfg.Keys
	longest := Result{
		Name:         fmt.Sprintf("failover with standby: longest recovery of a moved partition (its start → serving), median of %d kills", len(with)),
		Unit:         "ms",
		Distribution: distribution(inUnit(pick(with, longestOf), time.Millisecond), 0),
		Note: "the new owner's recovery record (Started → Ended) of the slowest moved partition of each kill: a promoted " +
			"standby replays only its lag; neither the time between the detection and the start of the recoveries nor a " +
			"failed attempt of a recovery that was retried is in it (see detection → serving)",
	}
	longest.Value = longest.Distribution.Median
	res := []Result{servingResult(with, keys), activeResult(with, e.cfg.FailoverElectionTimeout), longest}
	if len(runs) == 1 {
		return res, nil
	}
	without := runs[1]
	longest.Baseline = fmt.Sprintf("no standby (same scenario), median of %d kills", len(without))
	longest.BaselineValue = distribution(inUnit(pick(without, longestOf), time.Millisecond), 0).Median
	if longest.Value > 0 {
		longest.Ratio = longest.BaselineValue / longest.Value
	}
	res[2] = longest
	return append(res, servingResult(without, keys), activeResult(without, e.cfg.FailoverElectionTimeout)), nil
}

// servingResult is the distribution of detection → serving over a case's
// kills, with its target when the case has standbys.
func servingResult(outs []failoverOutcome, keys int) Result {
	d := distribution(inUnit(pick(outs, serveOf), time.Millisecond), float64(failoverTarget/time.Millisecond))
	r := Result{
		Name:  fmt.Sprintf("failover %s: detection → serving, p90 of %d kills", label(outs), len(outs)),
		Value: d.P90, Unit: "ms", Distribution: d,
		Note: caseNote(outs, keys, d),
	}
	if outs[0].standbys > 0 {
		r.Target = fmt.Sprintf("< 1 s in ≥ %d of %d kills", failoverShare, failoverOf)
		if met, judged := d.withinShare(failoverShare, failoverOf); judged {
			r.Met = ptr(met)
		} else {
			r.Note += fmt.Sprintf("; not judged: fewer than %d kills", failoverOf)
		}
	}
	return r
}

// activeResult is the distribution of kill → every moved partition active
// over a case's kills, against its target.
func activeResult(outs []failoverOutcome, election time.Duration) Result {
	elect := "nats-server's own election timeout (4 s)"
	if election > 0 {
		elect = "election timeout " + election.String()
	}
	d := distribution(inUnit(pick(outs, activeOf), time.Second), activeTarget.Seconds())
	det := distribution(inUnit(pick(outs, detectOf), time.Second), 0)
	return Result{
		Name:  fmt.Sprintf("failover %s: kill → every moved partition active, p90 of %d kills", label(outs), len(outs)),
		Value: d.P90, Unit: "s", Distribution: d,
		Target: "p90 < 3 s", Met: ptr(d.P90 < activeTarget.Seconds()),
		Note: fmt.Sprintf("each SIGKILL until the last of the victim's partitions served on a survivor, session timeout %s, %s: "+
			"kill → detection min %.2f s, median %.2f s, max %.2f s; the rest is detection → serving (its row)",
			failoverSession, elect, det.Min, det.Median, det.Max),
	}
}

// caseNote describes a case's kills, one by one.
func caseNote(outs []failoverOutcome, keys int, d *Distribution) string {
	var b strings.Builder
	fmt.Fprintf(&b, "3 nodes, %d standby(s) per partition, %s keys (one event each); %d kills round-robin over the nodes, "+
		"each killed node restarted on its data directory and the cluster settled (standbys caught up, every stream's "+
		"replicas current, changelog leaders off the active owners, waited for up to %s) before the next kill; "+
		"min %.0f ms, median %.0f ms, p90 %.0f ms, max %.0f ms; %d of %d kills under 1 s. Per kill: victim [its partitions], "+
		"kill → detection, detection → serving, promoted/moved, rebuilt, records replayed, changelog leaders placed before "+
		"the kill (after the cluster settled), what the victim led (replicated streams and consumers: each elected a new "+
		"leader; JetStream's meta leader is not known to the bench), survivor that read back every key (all exact)",
		outs[0].standbys, count(keys), len(outs), leaderPlaceWait, d.Min, d.Median, d.P90, d.Max, d.Within, d.Samples)
	for _, o := range outs {
		placed := "not placed in " + leaderPlaceWait.String()
		if o.placedIn >= 0 {
			placed = "placed +" + o.placedIn.Round(100*time.Millisecond).String()
		}
		led := strings.Join(o.led, " ")
		if led == "" {
			led = "no stream"
		}
		if o.ledGroup {
			led = "the group (its leader), " + led
		}
		fmt.Fprintf(&b, "; #%d %s %v: %s, %s, %d/%d promoted, %d rebuilt, %s records, leaders %s, led %s, read on %s",
			o.kill, o.victim, o.moved, o.detect.Round(time.Millisecond), o.serve.Round(time.Millisecond),
			o.fromStandby, len(o.moved), o.rebuilt, count(o.records), placed, led, o.reader)
		if o.serve >= failoverTarget {
			fmt.Fprintf(&b, " (moves: %s)", strings.Join(o.moves, ", "))
		}
	}
	return b.String()
}

func label(outs []failoverOutcome) string {
	if outs[0].standbys == 0 {
		return "without standby"
	}
	return "with standby"
}

func pick(outs []failoverOutcome, f func(failoverOutcome) time.Duration) []time.Duration {
	ds := make([]time.Duration, len(outs))
	for i, o := range outs {
		ds[i] = f(o)
	}
	return ds
}

func serveOf(o failoverOutcome) time.Duration   { return o.serve }
func activeOf(o failoverOutcome) time.Duration  { return o.active }
func detectOf(o failoverOutcome) time.Duration  { return o.detect }
func longestOf(o failoverOutcome) time.Duration { return o.longest }

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
