package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
)

// TestKill9ExactlyOnceLargeCommits: a standalone exactly-once node commits
// more than 1,000 changelog messages per atomic batch (its embedded
// server's larger limit; 20,000 keys over 8 partitions, commits every
// 2 s), and is killed with SIGKILL three times while events keep
// coming, each published until stored, with its message id. Every count
// must then be exact: no event lost, none counted twice, whatever commit
// the kills cut short.
func TestKill9ExactlyOnceLargeCommits(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const (
		devices = 20000
		events  = 4 * devices
		kills   = 3
	)
	bin := buildBinary(t)
	dataDir := t.TempDir()
	natsPort, httpPort := freePort(t), freePort(t)
	flags := []string{"--processing-guarantee=exactly-once", "--commit-interval=2s", "--commit-every=1000000"}
	var mu sync.Mutex // guards p
	p := startProc(t, bin, dataDir, natsPort, httpPort, flags...)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	nc, err := nats.Connect(p.nats, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	must(t, err)
	defer nc.Close()
	js, err := natsjs.New(nc)
	must(t, err)

	// Four publishers, each its share of the events in order.
	var published atomic.Int64
	var pubErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < events; i += 4 {
				msg := &nats.Msg{Subject: fmt.Sprintf("sensors.d%d.temp", i%devices), Data: []byte(`{"value":1}`), Header: nats.Header{}}
				msg.Header.Set(nats.MsgIdHdr, fmt.Sprintf("e%d", i))
				if _, _, err := publishStored(ctx, js, msg); err != nil {
					errOnce.Do(func() { pubErr = err })
					return
				}
				published.Add(1)
			}
		}()
	}

	for k := range kills {
		// Kill once a share of the events is in, while commits of more
		// than 1,000 messages are under way.
		for published.Load() < int64((k+1)*events/(kills+2)) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(300+k*170) * time.Millisecond)
		mu.Lock()
		must(t, p.cmd.Process.Signal(syscall.SIGKILL))
		_ = p.cmd.Wait()
		t.Logf("kill %d after %d events published", k+1, published.Load())
		time.Sleep(300 * time.Millisecond)
		if k == kills-1 {
			// The last incarnation, whose commits are counted below,
			// commits every 10 s: on a loaded machine 2 s rounds can
			// hold fewer than 8,000 records.
			flags = []string{"--processing-guarantee=exactly-once", "--commit-interval=10s", "--commit-every=1000000"}
		}
		p = startProc(t, bin, dataDir, natsPort, httpPort, flags...)
		mu.Unlock()
	}
	// The last incarnation's commits, sampled: a commit round writes at
	// most one atomic batch per partition, and the records counter may
	// run one round ahead of the commits counter, so more records per
	// round than twice 8 times the servers' default limit, between two
	// samples, means some batch went beyond it. (Sampled: its idle rounds
	// at the end would dilute an average over the whole incarnation.)
	var perRound atomic.Uint64 // the most records per round between samples
	sampled := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampled)
		var last statusCounts
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(200 * time.Millisecond):
			}
			cur, ok := readStatusCounts("http://" + p.http + "/v1/status")
			if !ok {
				continue
			}
			if cur.Commits > last.Commits && last.Commits > 0 {
				if r := (cur.Records - last.Records) / (cur.Commits - last.Commits); r > perRound.Load() {
					perRound.Store(r)
				}
			}
			last = cur
		}
	}()
	wg.Wait()
	if pubErr != nil {
		t.Fatalf("publish: %v", pubErr)
	}

	want := events / devices
	deadline := time.Now().Add(60 * time.Second)
	var bad string
	for {
		bad = ""
		for d := 0; d < devices && bad == ""; d++ {
			var v struct{ Value int }
			if code := p.get(t, fmt.Sprintf("/v1/tables/count/keys/d%d", d), &v); code != 200 || v.Value != want {
				bad = fmt.Sprintf("count of d%d = %d (HTTP %d), want %d", d, v.Value, code, want)
			}
		}
		if bad == "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if bad != "" {
		t.Fatalf("after %d kills: %s\nlog:\n%s", kills, bad, tail(p.log.String(), 4000))
	}
	close(stopSampling)
	<-sampled
	t.Logf("last incarnation: up to %d changelog records per commit round of 8 partitions", perRound.Load())
	if perRound.Load() <= 2*8*jetstream.MaxAtomicBatch {
		t.Errorf("up to %d records per commit round: no batch above %d messages was shown", perRound.Load(), jetstream.MaxAtomicBatch)
	}
}

// statusCounts are the commit counters of GET /v1/status.
type statusCounts struct {
	Records uint64 `json:"changelog_records"`
	Commits uint64 `json:"commits"`
}

// readStatusCounts reads url's commit counters; ok is false when it could
// not.
func readStatusCounts(url string) (statusCounts, bool) {
	resp, err := http.Get(url)
	if err != nil {
		return statusCounts{}, false
	}
	defer resp.Body.Close()
	var st statusCounts
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return statusCounts{}, false
	}
	return st, true
}
