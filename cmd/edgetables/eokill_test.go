package main

import (
	"context"
	"fmt"
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
	// The last incarnation's commits: a commit round writes at most one
	// atomic batch per partition, so more records per round than 8 times
	// the servers' default limit means some batch went beyond it. (A round
	// holds one record per key changed: at most 20,000.)
	var st struct {
		Records uint64 `json:"changelog_records"`
		Commits uint64 `json:"commits"`
	}
	p.get(t, "/v1/status", &st)
	t.Logf("last incarnation: %d changelog records in %d commit rounds of 8 partitions", st.Records, st.Commits)
	if st.Commits == 0 || st.Records/(8*st.Commits) <= jetstream.MaxAtomicBatch {
		t.Errorf("%d records in %d commit rounds: no batch above %d messages was shown", st.Records, st.Commits, jetstream.MaxAtomicBatch)
	}
}
