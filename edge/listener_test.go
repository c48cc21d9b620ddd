package edge

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager"
)

// listenerCall is one call of a manager.Listener.
type listenerCall struct {
	kind string // started, rebalance, revoked, assigned, actives, standbys, committed, stopped
	gen  uint64
	// revoked: the partitions revoked; assigned: the newly assigned;
	// actives, standbys: the ready partitions.
	parts     []int
	committed manager.Committed
	err       error
	goroutine uint64 // the calling goroutine's id
}

// listenerLog records the calls of one run of a node's listener.
type listenerLog struct {
	mu    sync.Mutex
	calls []listenerCall
}

func (l *listenerLog) add(c listenerCall) {
	c.goroutine = goroutineID()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, c)
}

func (l *listenerLog) snapshot() []listenerCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]listenerCall(nil), l.calls...)
}

func (l *listenerLog) listener() manager.Listener {
	return manager.Listener{
		OnStarted:          func() { l.add(listenerCall{kind: "started"}) },
		OnRebalanceStarted: func(g uint64) { l.add(listenerCall{kind: "rebalance", gen: g}) },
		OnPartitionsRevoked: func(ev manager.PartitionsRevoked) {
			l.add(listenerCall{kind: "revoked", gen: ev.Generation, parts: ev.Partitions})
		},
		OnPartitionsAssigned: func(ev manager.PartitionsAssigned) {
			l.add(listenerCall{kind: "assigned", gen: ev.Generation, parts: ev.NewlyAssigned})
		},
		OnActivesReady: func(ev manager.PartitionsReady) {
			l.add(listenerCall{kind: "actives", gen: ev.Generation, parts: ev.Partitions})
		},
		OnStandbysReady: func(ev manager.PartitionsReady) {
			l.add(listenerCall{kind: "standbys", gen: ev.Generation, parts: ev.Partitions})
		},
		OnCommitted: func(ev manager.Committed) {
			l.add(listenerCall{kind: "committed", gen: ev.Generation, committed: ev})
		},
		OnStopped: func(err error) { l.add(listenerCall{kind: "stopped", err: err}) },
	}
}

// follows says which call may come right before each rebalance call; a
// commit may come anywhere between started and stopped.
var follows = map[string][]string{
	"rebalance": {"started", "assigned", "actives", "standbys"}, // a newer rebalance may cut one short
	"revoked":   {"rebalance"},
	"assigned":  {"revoked"},
	"actives":   {"assigned"},
	"standbys":  {"actives"},
	"stopped":   {"started", "assigned", "actives", "standbys"},
}

// checkListenerOrder checks one run's calls: started first, then
// rebalances of increasing generations, each rebalance started → revoked
// → assigned → actives ready → standbys ready (all of one generation),
// commits with increasing offsets per partition in between, and stopped
// last if stopped is set, all on one goroutine. It returns the rebalances that completed, by
// generation.
func checkListenerOrder(t *testing.T, name string, calls []listenerCall, stopped bool) map[uint64]bool {
	t.Helper()
	if len(calls) == 0 || calls[0].kind != "started" {
		t.Errorf("%s: calls begin %+v, want started", name, calls[:min(1, len(calls))])
		return nil
	}
	for _, c := range calls {
		if c.goroutine != calls[0].goroutine {
			t.Errorf("%s: %s called on goroutine %d, started on %d: want one goroutine per run", name, c.kind, c.goroutine, calls[0].goroutine)
			break
		}
	}
	prev, gen := "started", uint64(0)
	complete := map[uint64]bool{}
	last := map[int]manager.Committed{}
	for i, c := range calls[1:] {
		if prev == "stopped" {
			t.Errorf("%s: call %+v after stopped", name, c)
			break
		}
		if c.kind == "committed" {
			ev := c.committed
			if p, ok := last[ev.Partition]; ok && (ev.SourceSeq <= p.SourceSeq || ev.ChangelogOffset <= p.ChangelogOffset) {
				t.Errorf("%s: partition %d committed %+v after %+v", name, ev.Partition, ev, p)
			}
			last[ev.Partition] = ev
			continue
		}
		ok := false
		for _, k := range follows[c.kind] {
			ok = ok || k == prev
		}
		switch {
		case !ok:
			t.Errorf("%s: call %d %+v follows %s", name, i+1, c, prev)
		case c.kind == "rebalance" && c.gen <= gen:
			t.Errorf("%s: rebalance to generation %d after generation %d", name, c.gen, gen)
		case c.kind != "rebalance" && c.kind != "stopped" && c.gen != gen:
			t.Errorf("%s: %s of generation %d during the rebalance to %d", name, c.kind, c.gen, gen)
		}
		if c.kind == "rebalance" {
			gen = c.gen
		}
		if c.kind == "standbys" {
			complete[gen] = true
		}
		if c.kind == "stopped" && c.err != nil {
			t.Errorf("%s: stopped with %v", name, c.err)
		}
		prev = c.kind
	}
	if stopped && prev != "stopped" {
		t.Errorf("%s: last call %s, want stopped", name, prev)
	}
	return complete
}

// TestListenerOrderThroughMembershipChanges: in a three-node cluster where
// a node leaves and comes back, every node's listener sees each rebalance
// in Faust's order (rebalance started → partitions revoked → partitions
// assigned → actives ready → standbys ready), its commits with increasing
// offsets per partition, and stopped last. The leave makes the others take
// partitions over; the return revokes some of theirs.
func TestListenerOrderThroughMembershipChanges(t *testing.T) {
	var mu sync.Mutex
	runs := map[int][]*listenerLog{}
	c := newConfiguredCluster(t, 3, func(i int, cfg *Config) {
		l := &listenerLog{}
		mu.Lock()
		runs[i] = append(runs[i], l)
		mu.Unlock()
		cfg.Listener = l.listener()
	}, "name=count,source=ev.*,key=subject:2,agg=count")
	want := map[string]int{}
	add := func() {
		batch := map[string]int{}
		for i := range 60 {
			batch[fmt.Sprintf("k%d", i%12)]++
			want[fmt.Sprintf("k%d", i%12)]++
		}
		c.publish(batch, func(k string) string { return "ev." + k })
		c.expect("count", want)
	}
	add()
	c.stop(2)
	c.waitAssigned()
	add()
	c.start(2)
	c.waitAssigned()
	add()

	// Every live node's last rebalance reaches standbys ready.
	lastRun := func(i int) *listenerLog {
		mu.Lock()
		defer mu.Unlock()
		return runs[i][len(runs[i])-1]
	}
	deadline := time.Now().Add(20 * time.Second)
	for i := range 3 {
		for {
			calls := lastRun(i).snapshot()
			var kinds []string
			for _, c := range calls {
				if c.kind != "committed" {
					kinds = append(kinds, c.kind)
				}
			}
			if kinds[len(kinds)-1] == "standbys" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: last calls %v, want standbys ready", i, kinds[max(0, len(kinds)-5):])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	mu.Lock()
	left := runs[2][0]
	mu.Unlock()
	checkListenerOrder(t, "n2 (left)", left.snapshot(), true)
	var tookOver, gaveBack bool
	for i := range 3 {
		calls := lastRun(i).snapshot()
		complete := checkListenerOrder(t, fmt.Sprintf("n%d", i), calls, false)
		t.Logf("n%d: %s", i, summarize(calls))
		if len(complete) == 0 {
			t.Errorf("n%d: no rebalance completed", i)
		}
		if i == 2 {
			continue
		}
		commits := 0
		for _, c := range calls {
			switch {
			case c.kind == "assigned" && c.gen > 1 && len(c.parts) > 0:
				tookOver = true
			case c.kind == "revoked" && len(c.parts) > 0:
				gaveBack = true
			case c.kind == "committed" && c.committed.Records > 0:
				commits++
			}
		}
		if commits == 0 {
			t.Errorf("n%d: no commit with records reported", i)
		}
	}
	if !tookOver || !gaveBack {
		t.Errorf("the nodes that stayed took partitions over: %v, gave some back: %v", tookOver, gaveBack)
	}
}

// summarize lists the calls other than commits, with their generations
// and partitions, and counts the commits.
func summarize(calls []listenerCall) string {
	out, commits := "", 0
	for _, c := range calls {
		switch c.kind {
		case "committed":
			commits++
		case "started", "stopped":
			out += c.kind + " "
		default:
			out += fmt.Sprintf("%s(%d %v) ", c.kind, c.gen, c.parts)
		}
	}
	return fmt.Sprintf("%s+ %d commits", out, commits)
}

// goroutineID returns the calling goroutine's id, from its stack header
// ("goroutine 7 [running]:").
func goroutineID() uint64 {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	f := strings.Fields(string(buf[:n]))
	id, _ := strconv.ParseUint(f[1], 10, 64)
	return id
}
