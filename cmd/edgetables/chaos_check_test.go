package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager"
)

// chaosWant is what the publisher stored.
type chaosWant struct {
	ids    map[string][]int // by key, ascending
	totals map[string]float64
	seqs   []uint64      // event id i's source sequence at i-1
	byPart map[int][]int // each partition's ids in source sequence order
}

func (pub *chaosPublisher) want() chaosWant {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	w := chaosWant{ids: map[string][]int{}, totals: map[string]float64{}, seqs: slices.Clone(pub.seqs), byPart: map[int][]int{}}
	for k := range chaosKeys {
		w.ids[chaosKey(k)] = nil // every key is read, events or not
	}
	for id := 1; id <= len(w.seqs); id++ {
		k := chaosKey(id)
		w.ids[k] = append(w.ids[k], id)
		w.totals[k] += float64(chaosN(id))
		p := manager.PartitionOf([]byte(k), chaosPartitions)
		w.byPart[p] = append(w.byPart[p], id)
	}
	for _, ids := range w.byPart {
		slices.SortFunc(ids, func(a, b int) int { return cmp.Compare(w.seqs[a-1], w.seqs[b-1]) })
	}
	return w
}

// chaosView is what one node answered for every key of the three tables.
type chaosView struct {
	mu             sync.Mutex
	counts, totals map[string]float64
	ids            map[string][]int
	failed         map[string]string // key → its first failed read
}

// readView reads every key of the three tables through node p (routed to
// the partitions' owners). A key not found is empty.
func readView(client *http.Client, p *proc) *chaosView {
	v := &chaosView{counts: map[string]float64{}, totals: map[string]float64{}, ids: map[string][]int{}, failed: map[string]string{}}
	keys := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				var cnt, tot float64
				var ids []int
				fail := ""
				for _, r := range []struct {
					table string
					into  any
				}{{"counts", &cnt}, {"totals", &tot}, {"ids", &ids}} {
					if code := getValue(client, p.http, r.table, k, r.into); code != 200 && code != 404 && fail == "" {
						fail = fmt.Sprintf("%s: HTTP %d", r.table, code)
					}
				}
				v.mu.Lock()
				v.counts[k], v.totals[k], v.ids[k] = cnt, tot, ids
				if fail != "" {
					v.failed[k] = fail
				}
				v.mu.Unlock()
			}
		}()
	}
	for k := range chaosKeys {
		keys <- chaosKey(k)
	}
	close(keys)
	wg.Wait()
	return v
}

// getValue decodes the value of a table's key into v and returns the HTTP
// status (0: no answer).
func getValue(client *http.Client, addr, table, key string, v any) int {
	resp, err := client.Get("http://" + addr + "/v1/tables/" + table + "/keys/" + key)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return resp.StatusCode
	}
	var e struct{ Value json.RawMessage }
	if json.NewDecoder(resp.Body).Decode(&e) != nil || json.Unmarshal(e.Value, v) != nil {
		return 0
	}
	return 200
}

// keyDiff is how a node's answer for a key differs from what was published.
type keyDiff struct {
	key                  string
	missing, unexpected  []int // ids
	count, wantCount     int
	total, wantTotal     float64
	lost, doubled        int
	countShort, totalOff bool // beyond what the missing ids explain
}

// nodeCheck is one node's answers compared with what was published.
type nodeCheck struct {
	node                      int
	ready                     bool
	failed                    map[string]string
	diffs                     []keyDiff
	lost, doubled, unexpected int
}

// compareView compares a node's answers with w.
func compareView(node int, ready bool, v *chaosView, w chaosWant) nodeCheck {
	nc := nodeCheck{node: node, ready: ready, failed: v.failed}
	for k := range chaosKeys {
		key := chaosKey(k)
		if _, unread := v.failed[key]; unread {
			continue // reported as unread
		}
		want := w.ids[key]
		d := keyDiff{key: key, count: int(v.counts[key]), wantCount: len(want), total: v.totals[key], wantTotal: w.totals[key]}
		have := map[int]bool{}
		for _, id := range v.ids[key] {
			have[id] = true
			// The publisher's last event may be stored unacknowledged if
			// it gave up on it.
			if id < 1 || id > len(w.seqs)+1 || chaosKey(id) != key {
				d.unexpected = append(d.unexpected, id)
			}
		}
		present := d.wantTotal
		for _, id := range want {
			if !have[id] {
				d.missing = append(d.missing, id)
				present -= float64(chaosN(id))
			}
		}
		d.lost = max(len(d.missing), d.wantCount-d.count)
		d.doubled = max(0, d.count-(d.wantCount-len(d.missing)))
		d.countShort = d.wantCount-d.count > len(d.missing)
		d.totalOff = math.Abs(d.total-present) > 1e-9
		if d.total < present-1e-9 {
			d.lost = max(d.lost, 1) // the totals table lost an event the others have
		}
		if d.lost == 0 && d.doubled == 0 && len(d.unexpected) == 0 && !d.totalOff {
			continue
		}
		nc.diffs = append(nc.diffs, d)
		nc.lost += d.lost
		nc.doubled += d.doubled
		nc.unexpected += len(d.unexpected)
	}
	return nc
}

// passed reports whether the node's answers meet the guarantee: exact with
// exactly-once, nothing lost with at-least-once.
func (nc nodeCheck) passed(guarantee string) bool {
	if !nc.ready || len(nc.failed) > 0 || nc.lost > 0 || nc.unexpected > 0 {
		return false
	}
	return guarantee == "at-least-once" || len(nc.diffs) == 0
}

// chaosVerdict is the outcome of the check of a run.
type chaosVerdict struct {
	passed        bool
	lost, doubled int // the worst node's
	report        string
	took          time.Duration
}

// converge waits up to limit until every node is ready and answers every
// key as the guarantee requires, and returns the last comparison.
func (c *clusterProcs) converge(guarantee string, pub *chaosPublisher, limit time.Duration) chaosVerdict {
	w := pub.want()
	client := &http.Client{Timeout: 10 * time.Second}
	start := time.Now()
	for round := 0; ; round++ {
		ready := make([]bool, len(c.procs))
		all := true
		for i, p := range c.procs {
			var body any
			ready[i] = getJSON(client, p.http, "/readyz", &body) == 200
			all = all && ready[i]
		}
		last := time.Since(start) > limit
		if all || last {
			checks := make([]nodeCheck, len(c.procs))
			var wg sync.WaitGroup
			for i, p := range c.procs {
				wg.Add(1)
				go func() { defer wg.Done(); checks[i] = compareView(i, ready[i], readView(client, p), w) }()
			}
			wg.Wait()
			v := chaosVerdict{passed: true, took: time.Since(start)}
			for _, nc := range checks {
				v.passed = v.passed && nc.passed(guarantee)
				v.lost, v.doubled = max(v.lost, nc.lost), max(v.doubled, nc.doubled)
			}
			if v.passed || last {
				v.report = reportChecks(checks, w)
				if !v.passed {
					v.report = fmt.Sprintf("not converged %v after the chaos (%d rounds):\n%s", limit, round+1, v.report)
				}
				return v
			}
		}
		time.Sleep(time.Second)
	}
}

// reportChecks describes every node's differences, by partition, with the
// lost events' source sequences; nodes with the same differences share
// one description.
func reportChecks(checks []nodeCheck, w chaosWant) string {
	var b strings.Builder
	var prev []string
	for _, nc := range checks {
		detail := describe(nc, w)
		fmt.Fprintf(&b, "n%d: ready %v, %d keys unread, %d events lost, %d doubled over %d keys wrong",
			nc.node, nc.ready, len(nc.failed), nc.lost, nc.doubled, len(nc.diffs))
		if j := slices.Index(prev, detail); j >= 0 {
			fmt.Fprintf(&b, ": the same as n%d's\n", j)
		} else {
			fmt.Fprintf(&b, "\n%s", detail)
		}
		prev = append(prev, detail)
	}
	return b.String()
}

// describe lists a node's differences by partition.
func describe(nc nodeCheck, w chaosWant) string {
	var b strings.Builder
	if len(nc.failed) > 0 {
		keys := sortedKeys(nc.failed)
		fmt.Fprintf(&b, "  unread keys (%d):", len(keys))
		for _, k := range keys[:min(len(keys), 8)] {
			fmt.Fprintf(&b, " %s (%s)", k, nc.failed[k])
		}
		b.WriteString("\n")
	}
	byPart := map[int][]keyDiff{}
	for _, d := range nc.diffs {
		p := manager.PartitionOf([]byte(d.key), chaosPartitions)
		byPart[p] = append(byPart[p], d)
	}
	for p := range chaosPartitions {
		diffs := byPart[p]
		if len(diffs) == 0 {
			continue
		}
		missing := map[int]bool{}
		var other []string
		for _, d := range diffs {
			for _, id := range d.missing {
				missing[id] = true
			}
			var what []string
			if d.doubled > 0 {
				what = append(what, fmt.Sprintf("+%d doubled", d.doubled))
			}
			if d.countShort {
				what = append(what, fmt.Sprintf("count %d short of %d with %d ids missing", d.count, d.wantCount, len(d.missing)))
			}
			if d.totalOff {
				what = append(what, fmt.Sprintf("total %v, want %v", d.total, d.wantTotal))
			}
			if len(d.unexpected) > 0 {
				what = append(what, fmt.Sprintf("ids never published for it: %v", d.unexpected[:min(len(d.unexpected), 5)]))
			}
			if len(what) > 0 {
				other = append(other, d.key+" "+strings.Join(what, ", "))
			}
		}
		fmt.Fprintf(&b, "  partition %d: %d keys wrong, %d of its %d events missing from ids\n", p, len(diffs), len(missing), len(w.byPart[p]))
		if len(missing) > 0 {
			fmt.Fprintf(&b, "    missing, by the partition's runs in source order: %s\n", lostRanges(w.byPart[p], missing, w.seqs))
		}
		if len(other) > 0 {
			fmt.Fprintf(&b, "    %s\n", strings.Join(other[:min(len(other), 12)], "; "))
			if len(other) > 12 {
				fmt.Fprintf(&b, "    … and %d more keys\n", len(other)-12)
			}
		}
	}
	return b.String()
}

// lostRanges compresses the missing ids among a partition's ids (in source
// order) into runs of consecutive missing events: "seq A-B (ids X-Y, N)".
func lostRanges(ids []int, missing map[int]bool, seqs []uint64) string {
	var runs []string
	for i := 0; i < len(ids); {
		if !missing[ids[i]] {
			i++
			continue
		}
		j := i
		for j+1 < len(ids) && missing[ids[j+1]] {
			j++
		}
		first, last := ids[i], ids[j]
		if i == j {
			runs = append(runs, fmt.Sprintf("seq %d (id %d)", seqs[first-1], first))
		} else {
			runs = append(runs, fmt.Sprintf("seq %d-%d (ids %d-%d, %d events)", seqs[first-1], seqs[last-1], first, last, j-i+1))
		}
		i = j + 1
	}
	if len(runs) > 15 {
		runs = append(runs[:15], fmt.Sprintf("… and %d more runs", len(runs)-15))
	}
	return strings.Join(runs, ", ")
}

// sourceReport compares the source sequences acknowledged to the
// publisher with the source stream's last sequence: a sequence never
// acknowledged is a stored event the publisher does not know of (a retry
// stored twice), which would count as a double.
func sourceReport(js natsjs.JetStream, pub *chaosPublisher) string {
	w := pub.want()
	if len(w.seqs) == 0 {
		return "source: no event published"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, pub.stream)
	if err != nil {
		return fmt.Sprintf("source: stream %s: %v", pub.stream, err)
	}
	last := s.CachedInfo().State.LastSeq
	seen := make([]bool, last+1)
	twice, beyond := 0, 0
	for _, seq := range w.seqs {
		switch {
		case seq > last:
			beyond++
		case seen[seq]:
			twice++
		default:
			seen[seq] = true
		}
	}
	var unacked []string
	n := 0
	for seq := uint64(1); seq <= last; seq++ {
		if !seen[seq] {
			n++
			if len(unacked) < 10 {
				unacked = append(unacked, fmt.Sprint(seq))
			}
		}
	}
	out := fmt.Sprintf("source stream %s: %d events acknowledged (%d publishes retried, %d acknowledged as duplicates, longest wait %v), last sequence %d",
		pub.stream, len(w.seqs), pub.retries, pub.dups, pub.longest.Round(time.Millisecond), last)
	if n > 0 {
		out += fmt.Sprintf("; %d sequences stored but never acknowledged (events stored twice?): %s", n, strings.Join(unacked, " "))
	}
	if twice+beyond > 0 {
		out += fmt.Sprintf("; %d sequences acknowledged for two events, %d beyond the last", twice, beyond)
	}
	return out
}

// dumpNodes logs every node's status and its last warnings and errors
// across its incarnations.
func (c *clusterProcs) dumpNodes(t *testing.T) {
	client := &http.Client{Timeout: 10 * time.Second}
	for i, p := range c.procs {
		var st nodeStatus
		code := getJSON(client, p.http, "/v1/status", &st)
		var b strings.Builder
		printStatus(&b, st)
		t.Logf("n%d /v1/status (HTTP %d):\n%s\nlast warnings and errors of every incarnation:\n%s",
			i, code, b.String(), lastProblems(c.history[i].String(), 25))
	}
}

// getJSON decodes the answer to a GET of path into v and returns the HTTP
// status (0: no answer).
func getJSON(client *http.Client, addr, path string, v any) int {
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(v)
	return resp.StatusCode
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestChaosCheck checks the chaos test's own comparison and report on
// made-up answers of a node.
func TestChaosCheck(t *testing.T) {
	pub := &chaosPublisher{}
	for id := 1; id <= 3*chaosKeys; id++ {
		pub.seqs = append(pub.seqs, uint64(id+10)) // the source held 10 other events first
	}
	w := pub.want()
	k1 := w.ids["k1"] // ids 1, 301, 601
	// Two events in a row of k1's partition, of whatever keys.
	run := w.byPart[manager.PartitionOf([]byte("k1"), chaosPartitions)][5:7]
	lose := func(v *chaosView) {
		for _, id := range run {
			k := chaosKey(id)
			v.ids[k] = slices.DeleteFunc(v.ids[k], func(x int) bool { return x == id })
			v.counts[k]--
			v.totals[k] -= float64(chaosN(id))
		}
	}
	cases := []struct {
		name      string
		edit      func(v *chaosView)
		exactly   bool // passes exactly-once
		atLeast   bool // passes at-least-once
		lost, dbl int
		mention   string
	}{
		{"exact", func(v *chaosView) {}, true, true, 0, 0, ""},
		{"lost", lose, false, false, 2, 0, fmt.Sprintf("seq %d-%d (ids %d-%d, 2 events)", run[0]+10, run[1]+10, run[0], run[1])},
		{"lost apart", func(v *chaosView) { v.ids["k1"] = k1[:1]; v.counts["k1"] = 1; v.totals["k1"] = 1 }, false, false, 2,
			0, "seq 311 (id 301), seq 611 (id 601)"},
		{"doubled", func(v *chaosView) { v.counts["k1"]++; v.totals["k1"] += 1 }, false, true, 0, 1, "k1 +1 doubled"},
		{"count short, ids whole", func(v *chaosView) { v.counts["k1"]-- }, false, false, 1, 0, "count 2 short of 3"},
		{"unread", func(v *chaosView) { v.failed["k7"] = "counts: HTTP 503" }, false, false, 0, 0, "k7 (counts: HTTP 503)"},
		{"stranger", func(v *chaosView) { v.ids["k1"] = append(slices.Clone(k1), 2) }, false, false, 0, 0, "never published for it: [2]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := &chaosView{counts: map[string]float64{}, totals: map[string]float64{}, ids: map[string][]int{}, failed: map[string]string{}}
			for k, ids := range w.ids {
				v.ids[k], v.counts[k], v.totals[k] = slices.Clone(ids), float64(len(ids)), w.totals[k]
			}
			tc.edit(v)
			nc := compareView(0, true, v, w)
			report := reportChecks([]nodeCheck{nc, nc}, w)
			if nc.passed("exactly-once") != tc.exactly || nc.passed("at-least-once") != tc.atLeast ||
				nc.lost != tc.lost || nc.doubled != tc.dbl || !strings.Contains(report, tc.mention) {
				t.Errorf("passes %v/%v, %d lost, %d doubled; want %v/%v, %d, %d, mentioning %q:\n%s",
					nc.passed("exactly-once"), nc.passed("at-least-once"), nc.lost, nc.doubled,
					tc.exactly, tc.atLeast, tc.lost, tc.dbl, tc.mention, report)
			}
		})
	}
}
