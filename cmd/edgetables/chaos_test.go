package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// The chaos workload: events {"n":N,"i":ID} on ev.k<key>, read by three
// tables keyed by the subject's second token, on nodes with the default
// partitions (8) and session timeout (5 s).
const (
	chaosKeys       = 300
	chaosPartitions = 8 // the default of --partitions, which the nodes do not set
)

// chaosTables are the workload's tables: each key's count, the sum of its
// events' n, and the set of its events' ids (which names the events lost).
var chaosTables = []string{
	"--table=name=counts,source=ev.*,key=subject:2,agg=count",
	"--table=name=totals,source=ev.*,key=subject:2,agg=sum,field=n",
	"--table=name=ids,source=ev.*,key=subject:2,agg=set,field=i",
}

// chaosKey and chaosN are event id's key and value.
func chaosKey(id int) string { return fmt.Sprintf("k%d", id%chaosKeys) }
func chaosN(id int) int      { return id % 7 }

// chaosConfig is TestChaos's environment:
//
//	EDGETABLES_CHAOS=60s       length of the chaos phase (default 15 s)
//	EDGETABLES_CHAOS_SEED=S    the first run's schedule seed (default: random)
//	EDGETABLES_CHAOS_RUNS=N    runs of each subtest, seeds S, S+1, … (default 1)
//	EDGETABLES_CHAOS_HOGS=N    CPU-bound processes beside the cluster in the
//	                           default/ subtests (default 0; hogs/ has 2)
//	EDGETABLES_CHAOS_LOGS=DIR  every node's log, DIR/<subtest>/n<i>.log
//	EDGETABLES_CHAOS_FLAGS=F   more flags of every node, space-separated
//	                           (e.g. "--session-timeout=2s --election-timeout=1s")
type chaosConfig struct {
	duration time.Duration
	seed     uint64 // 0: a random seed for each run
	runs     int
	hogs     int
	logs     string
	only     []string // EDGETABLES_CHAOS_ONLY: the subtests to run (nil: all)
	flags    []string // EDGETABLES_CHAOS_FLAGS
}

func chaosEnv(t *testing.T) chaosConfig {
	cfg := chaosConfig{duration: 15 * time.Second, runs: 1, logs: os.Getenv("EDGETABLES_CHAOS_LOGS"),
		flags: strings.Fields(os.Getenv("EDGETABLES_CHAOS_FLAGS"))}
	if s := os.Getenv("EDGETABLES_CHAOS"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("EDGETABLES_CHAOS=%q: want a positive duration (%v)", s, err)
		}
		cfg.duration = d
	}
	for _, v := range []struct {
		name string
		to   *int
		min  int
	}{{"EDGETABLES_CHAOS_RUNS", &cfg.runs, 1}, {"EDGETABLES_CHAOS_HOGS", &cfg.hogs, 0}} {
		if s := os.Getenv(v.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < v.min {
				t.Fatalf("%s=%q: want a number of at least %d", v.name, s, v.min)
			}
			*v.to = n
		}
	}
	if s := os.Getenv("EDGETABLES_CHAOS_ONLY"); s != "" {
		cfg.only = strings.Split(s, ",")
	}
	if s := os.Getenv("EDGETABLES_CHAOS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil || seed == 0 {
			t.Fatalf("EDGETABLES_CHAOS_SEED=%q: want a positive integer", s)
		}
		cfg.seed = seed
	}
	return cfg
}

// TestChaos runs three processes of the binary (--replicas 3 --standbys 1,
// default partitions and session timeout) while one publisher, connected to
// all three, stores events one at a time, each retried with its message id
// until acknowledged. Every 2–4 s a random node is paused with SIGSTOP for
// 8 s (one time in four) or killed with SIGKILL and started again 0.5–2.5 s
// later. Then every node must become ready and answer every key of every
// table exactly as published (exactly-once), or with nothing lost
// (at-least-once; doubles are reported).
//
// Subtests: default/<guarantee> (EDGETABLES_CHAOS_HOGS hogs, none unless
// set) and hogs/<guarantee> (2 CPU-bound processes beside the cluster during
// the chaos). See chaosConfig for the environment; for instance
//
//	EDGETABLES_CHAOS=60s EDGETABLES_CHAOS_HOGS=2 go test -count=1 -v -timeout 30m \
//	    -run 'TestChaos/default/exactly-once' ./cmd/edgetables/
//
// The schedule (nodes, actions, delays) follows the logged seed;
// EDGETABLES_CHAOS_SEED replays it, though not the cluster's timing.
// EDGETABLES_CHAOS_ONLY=default/exactly-once,hogs/at-least-once runs only
// the subtests named (CI runs these two, for its time budget).
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-process cluster under chaos")
	}
	cfg := chaosEnv(t)
	groups := []struct {
		name string
		hogs int
	}{
		{"default", cfg.hogs},
		{"hogs", 2},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, guarantee := range []string{"exactly-once", "at-least-once"} {
				t.Run(guarantee, func(t *testing.T) {
					if name := g.name + "/" + guarantee; cfg.only != nil && !slices.Contains(cfg.only, name) {
						t.Skipf("not in EDGETABLES_CHAOS_ONLY=%s", strings.Join(cfg.only, ","))
					}
					w := chaosWorkload{guarantee: guarantee, duration: cfg.duration, hogs: g.hogs, logs: cfg.logs, flags: cfg.flags}
					soakChaos(t, w, cfg.seed, cfg.runs)
				})
			}
		})
	}
}

// chaosWorkload is one run's settings.
type chaosWorkload struct {
	guarantee string
	duration  time.Duration
	hogs      int
	logs      string // EDGETABLES_CHAOS_LOGS
	seed      uint64
	flags     []string // EDGETABLES_CHAOS_FLAGS
}

// chaosResult is one run's outcome, for its summary line.
type chaosResult struct {
	seed            uint64
	events          int
	actions         map[string]int
	lost, doubled   int
	passed, checked bool
	took            time.Duration
}

func (r chaosResult) String() string {
	verdict := "FAIL"
	switch {
	case !r.checked:
		verdict = "FAIL (stopped before the check)"
	case r.passed:
		verdict = "pass"
	}
	return fmt.Sprintf("seed %d: %d events, actions %v, %d lost, %d doubled: %s (%s)",
		r.seed, r.events, r.actions, r.lost, r.doubled, verdict, r.took.Round(time.Second))
}

// soakChaos runs w runs times, each with its own seed (seed, seed+1, …, or
// random ones when seed is 0), as subtests run<k> when runs > 1, and logs
// a summary line per run and how many failed.
func soakChaos(t *testing.T, w chaosWorkload, seed uint64, runs int) {
	seedOf := func(k int) uint64 {
		if seed == 0 {
			return rand.Uint64N(1<<31) + 1
		}
		return seed + uint64(k)
	}
	if runs == 1 {
		w.seed = seedOf(0)
		r := chaosResult{seed: w.seed}
		defer func() { t.Logf("summary: %s", r) }()
		runChaos(t, w, &r)
		return
	}
	var summary []string
	failed := 0
	for k := range runs {
		w.seed = seedOf(k)
		r := chaosResult{seed: w.seed}
		if !t.Run(fmt.Sprintf("run%d", k+1), func(t *testing.T) { runChaos(t, w, &r) }) {
			failed++
			r.passed = false
		}
		summary = append(summary, fmt.Sprintf("run%d %s", k+1, r))
		t.Logf("run%d %s", k+1, r)
	}
	t.Logf("%s, %v of chaos, %d hogs: %d of %d runs failed\n%s",
		w.guarantee, w.duration, w.hogs, failed, runs, strings.Join(summary, "\n"))
}

// chaosAction is one step of the schedule, for the failure report.
type chaosAction struct {
	when time.Time
	at   time.Duration // since the chaos began
	seq  uint64        // the last source sequence acknowledged by then
	what string
}

// chaosPublisher stores the workload's events and remembers each one's
// source sequence.
type chaosPublisher struct {
	mu      sync.Mutex
	seqs    []uint64 // event id i's sequence at i-1
	dups    int      // acknowledgements of a retry whose first attempt was stored
	retries int
	stream  string
	longest time.Duration // the longest wait for an acknowledgement
	last    atomic.Uint64 // the last sequence acknowledged
}

// run publishes events 1, 2, … until stop ends, each until acknowledged
// (the one under way when stop ends too), unless abort ends.
func (pub *chaosPublisher) run(stop, abort context.Context, t *testing.T, js natsjs.JetStream) {
	for id := 1; stop.Err() == nil; id++ {
		began := time.Now()
		msg := &nats.Msg{Subject: "ev." + chaosKey(id), Header: nats.Header{},
			Data: fmt.Appendf(nil, `{"n":%d,"i":%d}`, chaosN(id), id)}
		msg.Header.Set(nats.MsgIdHdr, fmt.Sprint("ev-", id))
		ctx, cancel := context.WithTimeout(abort, 2*time.Minute)
		ack, tries, err := publishStored(ctx, js, msg)
		cancel()
		if abort.Err() != nil {
			return
		}
		if err != nil {
			t.Errorf("publisher: event %d not acknowledged after 2 min of retries: %v", id, err)
			return
		}
		pub.mu.Lock()
		pub.seqs = append(pub.seqs, ack.Sequence)
		pub.retries += tries - 1
		pub.longest = max(pub.longest, time.Since(began))
		pub.stream = ack.Stream
		if ack.Duplicate {
			pub.dups++
		}
		pub.mu.Unlock()
		pub.last.Store(ack.Sequence)
	}
}

// runChaos runs the workload once on a new cluster and checks it, filling
// in r as it goes (a fatal failure leaves it partly filled).
func runChaos(t *testing.T, w chaosWorkload, r *chaosResult) {
	r.actions = map[string]int{}
	began := time.Now()
	defer func() { r.took = time.Since(began) }()
	t.Logf("%s, %v of chaos, %d hogs, seed %d (EDGETABLES_CHAOS_SEED=%d replays the schedule)",
		w.guarantee, w.duration, w.hogs, w.seed, w.seed)
	c := newClusterProcs(t, 3)
	c.flags = append([]string{"--replicas=3", "--standbys=1", "--processing-guarantee=" + w.guarantee,
		"--log-level=debug"}, chaosTables...)
	c.flags = append(c.flags, w.flags...)
	if w.logs != "" {
		c.logs = filepath.Join(w.logs, strings.ReplaceAll(t.Name(), "/", "_"))
		must(t, os.MkdirAll(c.logs, 0o755))
		t.Logf("node logs in %s", c.logs)
	}
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(i) }()
	}
	wg.Wait()
	c.settle(0, 1, 2)

	urls := make([]string, 3)
	for i := range urls {
		urls[i] = c.procs[i].nats
	}
	// Short pings move the publisher off a paused node within seconds.
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.PingInterval(time.Second), nats.MaxPingsOutstanding(3))
	must(t, err)
	defer nc.Close()
	js, err := natsjs.New(nc)
	must(t, err)
	pub := &chaosPublisher{}
	stop, stopPublishing := context.WithCancel(context.Background())
	abort, abortPublishing := context.WithCancel(context.Background())
	published := make(chan struct{})
	go func() { defer close(published); pub.run(stop, abort, t, js) }()
	defer func() { stopPublishing(); abortPublishing(); <-published }() // after a fatal failure

	stopHogs := startHogs(t, w.hogs)
	timeline := c.chaos(t, w, pub, r.actions)
	stopHogs()
	stopPublishing()
	<-published
	r.events = len(pub.seqs)

	src := sourceReport(js, pub)
	v := c.converge(w.guarantee, pub, 2*time.Minute)
	r.checked, r.passed, r.lost, r.doubled = true, v.passed, v.lost, v.doubled
	if v.passed {
		t.Logf("%s: %d events over %d keys under %v: every key of every table on every node checked in %v: %d lost, %d doubled; %s",
			w.guarantee, r.events, chaosKeys, r.actions, v.took.Round(time.Millisecond), v.lost, v.doubled, src)
		if v.doubled > 0 {
			t.Logf("doubled events:\n%s", v.report)
		}
		return
	}
	c.dumpNodes(t)
	t.Errorf("%s: %d events under %v (seed %d): %d lost, %d doubled (the worst node's counts)\n%s\n%s\nschedule (time into the chaos, UTC as in the node logs, last source sequence acknowledged):\n%s",
		w.guarantee, r.events, r.actions, w.seed, v.lost, v.doubled, src, v.report, formatTimeline(timeline))
}

// chaos runs the schedule of w.seed for w.duration: every 2–4 s a random
// node is paused for 8 s (one time in four) or killed and started again
// 0.5–2.5 s later. One action ends before the next begins. It counts the
// actions in counts and returns the timeline.
func (c *clusterProcs) chaos(t *testing.T, w chaosWorkload, pub *chaosPublisher, counts map[string]int) []chaosAction {
	rng := rand.New(rand.NewPCG(w.seed, 0x9e3779b97f4a7c15))
	var timeline []chaosAction
	start := time.Now()
	act := func(format string, args ...any) {
		a := chaosAction{when: time.Now(), at: time.Since(start), seq: pub.last.Load(), what: fmt.Sprintf(format, args...)}
		timeline = append(timeline, a)
		t.Logf("chaos %6.1fs (%s UTC, source seq %d): %s", a.at.Seconds(), a.when.UTC().Format("15:04:05.000"), a.seq, a.what)
	}
	for {
		// Every draw is made whatever the action, so the seed alone
		// fixes the schedule.
		wait := time.Duration(2000+rng.IntN(2001)) * time.Millisecond
		i, pause, down := rng.IntN(3), rng.IntN(4) == 0, time.Duration(500+rng.IntN(2001))*time.Millisecond
		if time.Since(start)+wait >= w.duration {
			for i := range c.procs {
				c.checkAlive(t, i, act)
			}
			return timeline
		}
		time.Sleep(wait)
		c.checkAlive(t, i, act)
		p := c.procs[i]
		if pause {
			counts["pause"]++
			act("SIGSTOP n%d for 8s", i)
			c.note(i, "=== test: SIGSTOP for 8s")
			must(t, p.cmd.Process.Signal(syscall.SIGSTOP))
			time.Sleep(8 * time.Second)
			must(t, p.cmd.Process.Signal(syscall.SIGCONT))
			c.note(i, "=== test: SIGCONT")
			continue
		}
		counts["kill -9"]++
		act("kill -9 n%d, start again after %v", i, down)
		c.note(i, "=== test: SIGKILL")
		must(t, p.cmd.Process.Signal(syscall.SIGKILL))
		_ = p.cmd.Wait()
		time.Sleep(down)
		c.start(i)
	}
}

// checkAlive fails the test if node i has exited by itself (a zombie
// waiting to be reaped), and starts it again.
func (c *clusterProcs) checkAlive(t *testing.T, i int, act func(string, ...any)) {
	p := c.procs[i]
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil || !strings.Contains(string(stat), ") Z ") {
		return
	}
	err = p.cmd.Wait()
	act("n%d had exited by itself (%v): start it again", i, err)
	t.Errorf("n%d exited by itself: %v; its log's tail:\n%s", i, err, tail(p.log.String(), 4000))
	c.start(i)
}

// startHogs starts n CPU-bound processes and returns the function that
// stops them (also called at cleanup).
func startHogs(t *testing.T, n int) (stop func()) {
	var hogs []*exec.Cmd
	for range n {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		must(t, cmd.Start())
		hogs = append(hogs, cmd)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			for _, h := range hogs {
				_ = h.Process.Kill()
				_ = h.Wait()
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func formatTimeline(tl []chaosAction) string {
	var b strings.Builder
	for _, a := range tl {
		fmt.Fprintf(&b, "  %6.1fs  %s  seq %-7d %s\n", a.at.Seconds(), a.when.UTC().Format("15:04:05.000"), a.seq, a.what)
	}
	return b.String()
}
