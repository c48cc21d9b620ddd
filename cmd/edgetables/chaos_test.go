package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager"
)

// chaosDuration is how long the chaos phase runs: EDGETABLES_CHAOS, a Go
// duration (10m for a soak), or 8 s per guarantee by default (CI).
func chaosDuration(t *testing.T) time.Duration {
	s := os.Getenv("EDGETABLES_CHAOS")
	if s == "" {
		return 8 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("EDGETABLES_CHAOS=%q: %v", s, err)
	}
	return d
}

// TestChaos publishes a known multiset of events to a count and a sum table
// over 1,000 keys while nodes of a three-process cluster are killed with
// SIGKILL and restarted, paused past their session timeout and resumed, and
// stopped and restarted (forced rebalances). Then it checks every key:
// with exactly-once, count and sum equal what was published; with
// at-least-once nothing is lost (doubles are allowed and counted).
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-process cluster under chaos")
	}
	for _, guarantee := range []string{"exactly-once", "at-least-once"} {
		t.Run(guarantee, func(t *testing.T) { runChaos(t, guarantee, chaosDuration(t)) })
	}
}

func runChaos(t *testing.T, guarantee string, d time.Duration) {
	c := newClusterProcs(t, 3)
	flags := []string{"--processing-guarantee=" + guarantee, "--commit-interval=50ms"}
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(i, flags...) }()
	}
	wg.Wait()
	c.settle(0, 1, 2)

	// The publisher retries each event with its id until it is stored once
	// (the source stream deduplicates by Nats-Msg-Id).
	urls := make([]string, 3)
	for i := range urls {
		urls[i] = c.procs[i].nats
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	must(t, err)
	defer nc.Close()
	js, _ := natsjs.New(nc)
	ctx, stopPublishing := context.WithCancel(context.Background())
	published := make(chan int, 1)
	go func() {
		n := 0
		defer func() { published <- n }()
		for ; ctx.Err() == nil; n++ {
			key, v := fmt.Sprintf("k%d", n%1000), n%7
			msg := &nats.Msg{Subject: "sensors." + key + ".temp", Data: []byte(fmt.Sprintf(`{"value":%d}`, v)), Header: nats.Header{}}
			msg.Header.Set(nats.MsgIdHdr, fmt.Sprint("ev-", n))
			if _, _, err := publishStored(js, msg, time.Now().Add(time.Hour)); err != nil {
				return
			}
			c.want[key]++
			c.sums[key] += float64(v)
			if n%20 == 0 {
				time.Sleep(2 * time.Millisecond) // about 5,000 events/s at most
			}
		}
	}()

	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	actions := map[string]int{}
	for end := time.Now().Add(d); time.Now().Before(end); {
		i := rng.IntN(3)
		switch rng.IntN(3) {
		case 0: // crash and restart
			actions["kill -9"]++
			must(t, c.procs[i].cmd.Process.Signal(syscall.SIGKILL))
			_ = c.procs[i].cmd.Wait()
			time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
			c.start(i, flags...)
		case 1: // pause past the session timeout: a zombie
			actions["pause"]++
			must(t, c.procs[i].cmd.Process.Signal(syscall.SIGSTOP))
			time.Sleep(3 * time.Second)
			must(t, c.procs[i].cmd.Process.Signal(syscall.SIGCONT))
		case 2: // graceful stop and restart: two rebalances
			actions["restart"]++
			must(t, c.procs[i].cmd.Process.Signal(syscall.SIGTERM))
			_ = c.procs[i].cmd.Wait()
			c.start(i, flags...)
		}
		time.Sleep(time.Duration(500+rng.IntN(1000)) * time.Millisecond)
	}
	stopPublishing()
	n := <-published
	c.settle(0, 1, 2)

	// Every key, read through node 0 (routed to the owners).
	deadline := time.Now().Add(60 * time.Second)
	for {
		lost, doubled, msg := c.compare()
		exact := lost == 0 && doubled == 0
		if exact || (guarantee == "at-least-once" && lost == 0) {
			t.Logf("%s: %d events over 1000 keys under %v: every key checked, %d lost, %d doubled events",
				guarantee, n, actions, lost, doubled)
			return
		}
		if time.Now().After(deadline) {
			for i, p := range c.procs {
				var st nodeStatus
				p.tryGet("/v1/status", &st)
				var b strings.Builder
				printStatus(&b, st)
				t.Logf("n%d:\n%s\nwarnings and errors:\n%s", i, b.String(), problems(p.log.String()))
			}
			t.Fatalf("%s: %d events under %v: %d keys short, %d events doubled; first: %s", guarantee, n, actions, lost, doubled, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// compare reads every key's count and sum from node 0 and returns the
// number of keys that lack events, the number of doubled events, and the
// first difference with the wrong keys by partition.
func (c *clusterProcs) compare() (lost, doubled int, first string) {
	wrong := map[int]int{} // partition (of 6) → keys
	defer func() {
		if first != "" {
			first += fmt.Sprintf("; wrong keys by partition: %v", wrong)
		}
	}()
	for k, n := range c.want {
		var cnt, sum struct{ Value float64 }
		code := c.procs[0].tryGet("/v1/tables/count/keys/"+k, &cnt)
		c.procs[0].tryGet("/v1/tables/sum/keys/"+k, &sum)
		got := int(cnt.Value)
		// Values are never negative, so a sum below what was published
		// means a lost event and one above it a doubled one, as for counts.
		switch {
		case code != 200 || got < n || sum.Value < c.sums[k]:
			lost++
		case got > n || sum.Value > c.sums[k]:
			doubled += max(got-n, 1)
		default:
			continue
		}
		wrong[manager.PartitionOf([]byte(k), 6)]++
		if first == "" {
			first = fmt.Sprintf("%s: count %d (HTTP %d), sum %v; want %d, %v", k, got, code, sum.Value, n, c.sums[k])
		}
	}
	return lost, doubled, first
}
