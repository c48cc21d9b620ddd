package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
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
	flags := []string{"--processing-guarantee=exactly-once", "--commit-interval=2s", "--commit-every=1000000", "--commit-idle=0"}
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
		must(t, p.cmd.Process.Signal(syscall.SIGKILL))
		_ = p.cmd.Wait()
		t.Logf("kill %d after %d events published", k+1, published.Load())
		time.Sleep(300 * time.Millisecond)
		if k == kills-1 {
			// The last incarnation commits every 10 s: on a loaded
			// machine 2 s rounds can hold fewer than 1,000 records
			// per partition.
			flags = []string{"--processing-guarantee=exactly-once", "--commit-interval=10s", "--commit-every=1000000", "--commit-idle=0"}
		}
		p = startProc(t, bin, dataDir, natsPort, httpPort, flags...)
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
	// The batches' sizes are read from the stored records themselves:
	// every record keeps the Nats-Batch-Sequence header of its atomic
	// batch, and a batch that was cut short by a kill stored nothing.
	most := largestBatchSequence(t, ctx, js)
	t.Logf("largest stored atomic batch sequence: %d", most)
	if most <= jetstream.MaxAtomicBatch {
		t.Errorf("largest stored batch sequence %d: no batch above %d messages was committed", most, jetstream.MaxAtomicBatch)
	}
}

// largestBatchSequence reads every record of the node's changelog streams
// and returns the largest Nats-Batch-Sequence header among them.
func largestBatchSequence(t *testing.T, ctx context.Context, js natsjs.JetStream) int {
	t.Helper()
	most := 0
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		if !strings.Contains(name, "_changelog_") {
			continue
		}
		s, err := js.Stream(ctx, name)
		must(t, err)
		info, err := s.Info(ctx)
		must(t, err)
		c, err := s.OrderedConsumer(ctx, natsjs.OrderedConsumerConfig{})
		must(t, err)
		for n := uint64(0); n < info.State.Msgs; n++ {
			m, err := c.Next(natsjs.FetchMaxWait(10 * time.Second))
			if err != nil {
				t.Fatalf("read %s after %d of %d records: %v", name, n, info.State.Msgs, err)
			}
			if seq, err := strconv.Atoi(m.Headers().Get("Nats-Batch-Sequence")); err == nil && seq > most {
				most = seq
			}
		}
	}
	must(t, names.Err())
	return most
}
