package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
)

func serve(t testing.TB, nc *nats.Conn, node string, h func(context.Context, []byte) []byte) func() {
	t.Helper()
	stop, err := jetstream.ServeQueries(nc, app, node, h)
	if err != nil {
		t.Fatalf("ServeQueries(%s): %v", node, err)
	}
	t.Cleanup(stop)
	return stop
}

func TestQueryRoundTrip(t *testing.T) {
	srv, nc, _ := jstest.Start(t)
	client, err := srv.Connect("client")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var deadline atomic.Value
	serve(t, nc, "n1", func(ctx context.Context, req []byte) []byte {
		if dl, ok := ctx.Deadline(); ok {
			deadline.Store(dl)
		}
		return append([]byte("n1 answers "), req...)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := jetstream.Query(ctx, client, app, "n1", []byte(`{"get":"k"}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(resp) != `n1 answers {"get":"k"}` {
		t.Fatalf("answer %q", resp)
	}
	// The handler's context ends when the requester stops waiting.
	want, _ := ctx.Deadline()
	if dl, ok := deadline.Load().(time.Time); !ok || dl.Sub(want).Abs() > 100*time.Millisecond {
		t.Errorf("handler deadline %v, requester's %v", dl, want)
	}

	_, err = jetstream.Query(ctx, client, app, "n2", nil)
	if !errors.Is(err, jetstream.ErrNoResponder) {
		t.Fatalf("query of a node that does not serve: %v, want ErrNoResponder", err)
	}
	for _, node := range []string{"", "a b", "a.>"} {
		if _, err := jetstream.Query(ctx, client, app, node, nil); !errors.Is(err, jetstream.ErrBadName) {
			t.Errorf("Query(node %q): %v, want ErrBadName", node, err)
		}
		if _, err := jetstream.ServeQueries(nc, app, node, nil); !errors.Is(err, jetstream.ErrBadName) {
			t.Errorf("ServeQueries(node %q): %v, want ErrBadName", node, err)
		}
	}
}

// TestQueryStopWaits: stop returns only after the running handlers have
// answered; afterwards nobody answers.
func TestQueryStopWaits(t *testing.T) {
	_, nc, _ := jstest.Start(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	stop := serve(t, nc, "n1", func(context.Context, []byte) []byte {
		close(entered)
		<-release
		return []byte("late")
	})
	answer := make(chan error, 1)
	go func() {
		resp, err := jetstream.Query(testCtx(t), nc, app, "n1", nil)
		if err == nil && string(resp) != "late" {
			err = fmt.Errorf("answer %q", resp)
		}
		answer <- err
	}()
	<-entered
	stopped := make(chan struct{})
	go func() {
		stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("stop returned while a handler runs")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	<-stopped
	if err := <-answer; err != nil {
		t.Fatalf("in-flight query: %v", err)
	}
	stop() // idempotent
	if _, err := jetstream.Query(testCtx(t), nc, app, "n1", nil); !errors.Is(err, jetstream.ErrNoResponder) {
		t.Fatalf("query after stop: %v, want ErrNoResponder", err)
	}
}

// TestQueryConcurrency: at most MaxConcurrentQueries handlers run at once,
// and every query is answered.
func TestQueryConcurrency(t *testing.T) {
	_, nc, _ := jstest.Start(t)
	const n = 2*jetstream.MaxConcurrentQueries + 10
	var running, peak atomic.Int64
	release := make(chan struct{})
	serve(t, nc, "n1", func(_ context.Context, req []byte) []byte {
		r := running.Add(1)
		for p := peak.Load(); r > p && !peak.CompareAndSwap(p, r); p = peak.Load() {
		}
		<-release
		running.Add(-1)
		return req
	})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := []byte(fmt.Sprint(i))
			resp, err := jetstream.Query(testCtx(t), nc, app, "n1", req)
			if err == nil && string(resp) != string(req) {
				err = fmt.Errorf("answer %q to %q", resp, req)
			}
			errs <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for running.Load() < jetstream.MaxConcurrentQueries {
		if time.Now().After(deadline) {
			t.Fatalf("%d handlers running, want %d", running.Load(), jetstream.MaxConcurrentQueries)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if p := peak.Load(); p != jetstream.MaxConcurrentQueries {
		t.Errorf("peak of %d concurrent handlers, want %d", p, jetstream.MaxConcurrentQueries)
	}
}
