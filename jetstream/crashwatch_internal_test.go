package jetstream

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/status"
)

func TestProbeAddr(t *testing.T) {
	for _, tc := range []struct {
		probe, routeIP, want string
		ok                   bool
	}{
		{"127.0.0.1:6222", "10.0.0.5", "127.0.0.1:6222", true},
		{"0.0.0.0:6222", "10.0.0.5", "10.0.0.5:6222", true},
		{"[::]:6222", "fd00::5", "[fd00::5]:6222", true},
		{":6222", "10.0.0.5", "10.0.0.5:6222", true},
		{"0.0.0.0:6222", "", "", false},
		{"node-a:6222", "10.0.0.5", "node-a:6222", true},
		{"no port", "10.0.0.5", "", false},
	} {
		got, ok := probeAddr(tc.probe, tc.routeIP)
		if got != tc.want || ok != tc.ok {
			t.Errorf("probeAddr(%q, %q) = %q, %v; want %q, %v", tc.probe, tc.routeIP, got, ok, tc.want, tc.ok)
		}
	}
}

// TestProbeAndEvict: a member whose probe address listens is alive; once
// nothing listens there it is gone, and evicting it removes its member
// and leader leases, but never a lease written after the probe.
func TestProbeAndEvict(t *testing.T) {
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accepts and drops, as a route port would answer
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	crashing, err := NewGroup(ctx, js, GroupConfig{App: "crash", Node: "n2", SessionTimeout: 30 * time.Second, Probe: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	watcher, err := NewGroup(ctx, js, GroupConfig{App: "crash", Node: "n1", SessionTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := crashing.Heartbeat(ctx, status.MemberState{}); err != nil {
		t.Fatal(err)
	}
	if ok, err := crashing.Campaign(ctx); !ok || err != nil {
		t.Fatalf("campaign: %v, %v", ok, err)
	}
	if _, verdict, err := watcher.probeMember(ctx, "n2", "", time.Second); verdict != memberAlive || err != nil {
		t.Fatalf("listening: verdict %d, %v; want alive", verdict, err)
	}
	if _, verdict, err := watcher.probeMember(ctx, "n3", "", time.Second); verdict != memberAbsent || err != nil {
		t.Fatalf("no such member: verdict %d, %v; want absent", verdict, err)
	}
	ln.Close()
	rev, verdict, err := watcher.probeMember(ctx, "n2", "", time.Second)
	if verdict != memberGone || err != nil {
		t.Fatalf("closed: verdict %d, %v; want gone", verdict, err)
	}

	// A new instance's heartbeat after the probe (a quick restart): its
	// leases stay, the leader lease too (it may have taken it back).
	if err := crashing.Heartbeat(ctx, status.MemberState{Generation: 2}); err != nil {
		t.Fatal(err)
	}
	if removed, err := watcher.evict(ctx, "n2", rev); removed || err != nil {
		t.Fatalf("evict after a new heartbeat: %v, %v; want false, nil", removed, err)
	}
	if _, err := watcher.kv.Get(ctx, groupMemberPrefix+"n2"); err != nil {
		t.Fatalf("a lease written after the probe was removed: %v", err)
	}
	if e, err := watcher.kv.Get(ctx, groupLeaderKey); err != nil || string(e.Value()) != "n2" {
		t.Fatalf("the leader lease of a member that came back was removed: %v", err)
	}

	// Probed again: gone, and evicted, the leader lease too.
	rev, verdict, err = watcher.probeMember(ctx, "n2", "", time.Second)
	if verdict != memberGone || err != nil {
		t.Fatalf("closed: verdict %d, %v; want gone", verdict, err)
	}
	if removed, err := watcher.evict(ctx, "n2", rev); !removed || err != nil {
		t.Fatalf("evict: %v, %v; want true, nil", removed, err)
	}
	if _, err := watcher.kv.Get(ctx, groupMemberPrefix+"n2"); !errors.Is(err, natsjs.ErrKeyNotFound) {
		t.Fatalf("member lease of a gone member: %v", err)
	}
	if _, err := watcher.kv.Get(ctx, groupLeaderKey); !errors.Is(err, natsjs.ErrKeyNotFound) {
		t.Fatalf("leader lease of a gone member: %v", err)
	}
	if ok, err := watcher.Campaign(ctx); !ok || err != nil {
		t.Fatalf("campaign after the eviction: %v, %v", ok, err)
	}
	// Evicting again (another peer's watch, a retry) is harmless and
	// leaves the new leader alone.
	if removed, err := watcher.evict(ctx, "n2", rev); !removed || err != nil {
		t.Fatalf("evict again: %v, %v; want true, nil", removed, err)
	}
	if e, err := watcher.kv.Get(ctx, groupLeaderKey); err != nil || string(e.Value()) != "n1" {
		t.Fatalf("leader lease after a second eviction: %v", err)
	}
}

// TestRefused: an accepted connection is not a refusal, a closed port is.
func TestRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx := context.Background()
	if refused(ctx, addr, time.Second) {
		t.Fatal("a listening address counted as refused")
	}
	ln.Close()
	if !refused(ctx, addr, time.Second) {
		t.Fatal("a closed address not counted as refused")
	}
}

func TestPeerNews(t *testing.T) {
	var news peerNews
	before := time.Now()
	ch := news.changed()
	select {
	case <-ch:
		t.Fatal("changed before any announcement")
	default:
	}
	if news.since("n2", before) {
		t.Fatal("n2 gone before any announcement")
	}
	time.Sleep(time.Millisecond)
	news.announce("n2")
	select {
	case <-ch:
	default:
		t.Fatal("not woken by an announcement")
	}
	if !news.since("n2", before) || news.since("n3", before) {
		t.Fatal("since: want n2 gone, n3 not")
	}
	if news.since("n2", time.Now()) {
		t.Fatal("n2 gone after the announcement: a watch opened since must not start over")
	}
	select {
	case <-news.changed():
		t.Fatal("a new wait is woken by an old announcement")
	default:
	}
}
