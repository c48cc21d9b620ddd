package edge

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/window"
)

// TestWindowCloseOnceAcrossFailover: in a three-node cluster, OnWindowClose
// runs once per window. The windows closed before a node leaves are not
// closed again by the nodes that take its partitions over (the closes are
// in the changelog); the windows that close afterwards are closed by their
// new owners, once. The callbacks' writes, committed with the closes, count
// each window once too.
func TestWindowCloseOnceAcrossFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	const keys = 24
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var clock atomic.Int64 // shared by the nodes: the test moves it
	clock.Store(t0.Add(90 * time.Second).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }

	var (
		mu    sync.Mutex
		calls = map[string][]int{} // "key@HH:MM" → the nodes whose OnWindowClose ran for it
	)
	configure := func(i int, cfg *Config) {
		finals := manager.NewTable(manager.TableConfig[string, int64]{
			Name: "finals", Keys: codec.String{}, Values: codec.Int64{}})
		perMinute := manager.NewWindowedTable(manager.WindowedTableConfig[string, int64]{
			Name: "per-minute", Keys: codec.String{}, Values: codec.Int64{},
			Windows: window.Tumbling(time.Minute, time.Minute),
			Time:    window.TimeSource{Kind: window.TimeField, Name: "ts"},
			Clock:   now,
			OnWindowClose: func(e *manager.Event, k string, w window.Window, n int64) error {
				mu.Lock()
				id := k + "@" + w.Start.Format("15:04")
				calls[id] = append(calls[id], i)
				mu.Unlock()
				closed, err := finals.Get(e, k)
				if err != nil {
					return err
				}
				return finals.Set(e, k, closed+1)
			},
		})
		cfg.Tables = append(cfg.Tables, perMinute, finals)
		cfg.Agents = append(cfg.Agents, manager.Agent{
			Name: "per-minute", Subjects: []string{"ev.*"},
			Key: func(e *manager.Event) ([]byte, error) { return []byte(e.Token(2)), nil },
			Process: func(e *manager.Event) error {
				return perMinute.Update(e, string(e.Key), func(_ window.Window, n int64, _ bool) (int64, error) { return n + 1, nil })
			},
		})
	}
	c := newConfiguredCluster(t, 3, configure)

	// One event per key in the minutes 12:00 and 12:01.
	nc, err := nats.Connect(c.live()[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for k := range keys {
		for _, ts := range []string{"12:00:10", "12:01:10"} {
			msg := fmt.Sprintf(`{"ts": "2026-03-01T%sZ"}`, ts)
			if _, err := js.Publish(ctx, fmt.Sprintf("ev.k%d", k), []byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
	}
	node := func() *Node { return c.live()[0] }
	for k := range keys {
		waitWindow(t, node(), "per-minute", fmt.Sprintf("k%d", k), "2026-03-01T12:01:30Z", "1")
	}

	// The 12:00 windows close (end 12:01 + expires 1m); every key's final
	// count is committed.
	clock.Store(t0.Add(2*time.Minute + 30*time.Second).UnixNano())
	for k := range keys {
		waitValue(t, node(), "finals", fmt.Sprintf("k%d", k), "1")
	}

	// A node leaves; the others take its partitions over. Then the 12:01
	// windows close, on whichever node owns them now.
	c.stop(1)
	c.waitAssigned()
	clock.Store(t0.Add(3*time.Minute + 30*time.Second).UnixNano())
	for k := range keys {
		waitValue(t, node(), "finals", fmt.Sprintf("k%d", k), "2")
	}

	mu.Lock()
	defer mu.Unlock()
	for k := range keys {
		for _, w := range []string{"12:00", "12:01"} {
			id := fmt.Sprintf("k%d@%s", k, w)
			if got := calls[id]; len(got) != 1 {
				t.Errorf("OnWindowClose of %s ran on nodes %v, want once", id, got)
			}
		}
	}
	moved := 0
	for k := range keys {
		if a, b := calls[fmt.Sprintf("k%d@12:00", k)], calls[fmt.Sprintf("k%d@12:01", k)]; len(a) == 1 && len(b) == 1 && a[0] == 1 && b[0] != 1 {
			moved++
		}
	}
	if moved == 0 {
		t.Errorf("no window closed by node 1 before it left was followed by a close elsewhere: the test did not fail over (%v)", calls)
	}
}

// waitWindow polls the window of key holding the time at until its JSON
// value is want.
func waitWindow(t *testing.T, n *Node, table, key, at, want string) {
	t.Helper()
	path := "/v1/tables/" + table + "/keys/" + key + "?window=" + at
	var last string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		code, body, _ := getJSON(t, n.HTTPAddr(), path)
		last = fmt.Sprint(code, " ", body)
		if code == 200 && fmt.Sprint(body["value"]) == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("GET %s = %s, want value %s", path, last, want)
}
